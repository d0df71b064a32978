"""A command whose optional dependency is missing says which extra adds it, in one line.

Each case hides one module (None in sys.modules: `import` raises ModuleNotFoundError, as
when it is not installed) in a fresh process and runs the command that needs it.
"""

import json
import pathlib
import subprocess
import sys

import pytest

from ssljax import errors

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / 'configs' / 'bert_tiny.py')


def _run_hiding(module: str, args: list[str], cwd) -> subprocess.CompletedProcess:
  code = (f'import sys; sys.modules[{module!r}] = None; from ssljax.cli import main; '
          f'sys.exit(main({args!r}))')
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=cwd,
                        timeout=300)


@pytest.mark.slow  # a process per extra
@pytest.mark.parametrize('module, extra, args', [
    ('safetensors', 'hf', ['export-hf', 'run', '--out', 'hf']),
    ('safetensors', 'hf', ['import-hf', 'hf', '--out', 'run']),
    ('libtpu', 'tpu', ['compile', '--config', CONFIG, '--topology', 'v5e:2x2']),
    ('jax_cuda12_plugin', 'gpu-compile', ['compile', '--config', CONFIG, '--topology', 'h100:8']),
    ('apache_beam', 'prepare', ['prepare', '--config', CONFIG, '--out', 'prepared']),
    ('pyarrow', 'prepare', ['pretrain', '--config', CONFIG, '--workdir', 'run', '--set',
                            'data.source=parquet', '--set', 'data.path=corpus.parquet']),
    ('lm_eval', 'eval', ['lm-eval', '--model', 'ssljax', '--tasks', 'task.yaml']),
    ('gcsfs', 'gcs', ['pretrain', '--config', CONFIG, '--workdir', 'gs://bucket/run']),
    ('s3fs', 's3', ['pretrain', '--config', CONFIG, '--workdir', 's3://bucket/run']),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, module, extra, args):
  (tmp_path / 'corpus.parquet').write_bytes(b'')
  result = _run_hiding(module, args, tmp_path)
  assert result.returncode == 2, result.stderr
  assert len(result.stderr.splitlines()) == 1, result.stderr
  assert result.stderr.startswith('ssljax: error: ')
  assert result.stderr.rstrip().endswith(
      f"needs {module}, from the '{extra}' extra: pip install -e '{ROOT}[{extra}]'")


def test_every_extra_named_exists_in_pyproject():
  import tomllib
  with open(ROOT / 'pyproject.toml', 'rb') as f:
    extras = tomllib.load(f)['project']['optional-dependencies']
  for module, extra in errors.EXTRAS.items():
    assert module.replace('_', '-') in ' '.join(extras[extra]), (module, extra)


class _Dist:
  def __init__(self, direct_url):
    self.direct_url = direct_url

  def read_text(self, name):
    assert name == 'direct_url.json'
    return None if self.direct_url is None else json.dumps(self.direct_url)


@pytest.mark.parametrize('direct_url, line', [
    ({'url': 'file:///home/me/ssljax', 'dir_info': {'editable': True}},
     "pip install -e '/home/me/ssljax[hf]'"),
    ({'url': 'file:///tmp/dist/ssljax-0.1.0-py3-none-any.whl', 'archive_info': {}},
     "pip install 'ssljax[hf] @ file:///tmp/dist/ssljax-0.1.0-py3-none-any.whl'"),
    ({'url': 'https://github.com/org/ssljax.git',
      'vcs_info': {'vcs': 'git', 'commit_id': 'abc123'}},
     "pip install 'ssljax[hf] @ git+https://github.com/org/ssljax.git@abc123'"),
    (None, "pip install -e '.[hf]' in a clone of ssljax"),
])
def test_the_install_line_names_where_ssljax_came_from(monkeypatch, direct_url, line):
  import importlib.metadata
  monkeypatch.setattr(importlib.metadata, 'distribution', lambda name: _Dist(direct_url))
  assert errors.install_line('hf') == line


def test_every_extra_lives_in_one_environment():
  """The test extra holds every other extra's packages; pip check finds no broken pin (Beam's
  protobuf < 7 against sentencepiece 0.2.3's generated code needed a second pip command)."""
  result = subprocess.run([sys.executable, '-m', 'pip', 'check'], capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr
