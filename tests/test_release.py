"""What a release needs: `python -m build` gives a wheel and an sdist that hold every module,
and the wheel, installed on its own, runs a pretraining step from outside the clone.

ssljax is not on PyPI; this wheel is what the TPU launcher copies to every worker and what
Dataflow gets with --extra_packages.
"""

import os
import pathlib
import subprocess
import sys
import tarfile
import zipfile

import pytest

import ssljax

from conftest import tiny_overrides

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # a build (about 10 s) and a process that trains


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
  out = tmp_path_factory.mktemp('dist')
  subprocess.run([sys.executable, '-m', 'build', '--outdir', str(out), str(ROOT)], check=True,
                 capture_output=True, timeout=600)
  return out


def _modules() -> set[str]:
  """Every module, and the data that ships beside them (XLA's GPU target configs)."""
  return {p.relative_to(ROOT).as_posix() for pattern in ('*.py', '*.txtpb')
          for p in (ROOT / 'ssljax').rglob(pattern)}


def test_the_wheel_and_the_sdist_hold_every_module(dist):
  version = ssljax.__version__
  wheel = dist / f'ssljax-{version}-py3-none-any.whl'
  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
  assert _modules() <= names
  assert f'ssljax-{version}.dist-info/entry_points.txt' in names
  with tarfile.open(dist / f'ssljax-{version}.tar.gz') as t:
    names = {n.partition('/')[2] for n in t.getnames()}
  assert _modules() | {'pyproject.toml', 'README.md'} <= names


def test_the_installed_wheel_trains_outside_the_clone(dist, tmp_path, corpus_file,
                                                      tokenizer_file):
  """Installed without its dependencies (this environment has them) into a folder of its
  own, run from elsewhere: the code that runs is the wheel's, not the clone's."""
  target = tmp_path / 'site'
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--target', str(target),
                  str(dist / f'ssljax-{ssljax.__version__}-py3-none-any.whl')], check=True,
                 capture_output=True, timeout=300)
  env = {**os.environ, 'PYTHONPATH': str(target)}
  where = subprocess.run([sys.executable, '-c', 'import ssljax; print(ssljax.__file__)'],
                         capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
  assert where.stdout.startswith(str(target))
  sets = tiny_overrides(corpus_file, **{'tokenizer.path': tokenizer_file, 'train.steps': 2})
  run = subprocess.run(
      [sys.executable, '-m', 'ssljax.cli', 'pretrain', '--workdir', str(tmp_path / 'run')]
      + [a for s in sets for a in ('--set', s)], capture_output=True, text=True, cwd=tmp_path,
      env=env, timeout=300)
  assert run.returncode == 0, run.stderr
  assert run.stdout.startswith(f'done: {tmp_path / "run"}')
  version = subprocess.run([sys.executable, '-m', 'ssljax.cli', '--version'],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
  assert version.stdout.strip() == f'ssljax {ssljax.__version__}'
