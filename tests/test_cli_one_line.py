"""The rest of the bad inputs a careful user tries: one line (exit 2) each, and Ctrl-C
outside the training loop is one line and exit 130 at once."""

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types

import pytest

from ssljax import cli, paths
from ssljax.pretrain import metrics

from conftest import tiny_overrides


def _one_line(capsys, *argv):
  code = cli.main(list(argv))
  err = capsys.readouterr().err
  assert code == 2 and err.count('\n') == 1 and err.startswith('ssljax: error: '), err
  return err


@pytest.mark.parametrize('name, text, message', [
    ('syntax.py', 'def get_config(:\n', r'syntax.py, line 1: invalid syntax'),
    ('imports.py', 'import no_such_module\n', "fails to run: ModuleNotFoundError: No module"),
    ('dict.py', 'def get_config():\n  return {"train": {}}\n', 'returned a dict'),
    ('config.yaml', 'train:\n  steps: 3\n', 'is not a .py file'),
])
def test_config_files(tmp_path, capsys, name, text, message):
  (tmp_path / name).write_text(text)
  err = _one_line(capsys, 'pretrain', '--config', str(tmp_path / name), '--workdir',
                  str(tmp_path / 'run'))
  assert message in err.replace('\\', '')


def test_a_workdir_that_is_a_file(tmp_path, capsys):
  (tmp_path / 'run').write_text('')
  err = _one_line(capsys, 'pretrain', '--workdir', str(tmp_path / 'run'))
  assert 'is a file where a folder goes' in err


def _rows(workdir):
  (workdir / 'metrics.jsonl').write_text('{"step": 1, "loss": 2.0}\n')


def test_an_output_that_is_a_folder_or_in_a_missing_folder(tmp_path, capsys):
  _rows(tmp_path)
  (tmp_path / 'out.png').mkdir()
  assert 'is a folder; pass a file path' in _one_line(
      capsys, 'plot', str(tmp_path), '--out', str(tmp_path / 'out.png'))
  assert f'the folder {tmp_path}/no does not exist' in _one_line(
      capsys, 'plot', str(tmp_path), '--out', str(tmp_path / 'no' / 'loss.png'))


@pytest.mark.parametrize('code, message', [
    (errno.ENOSPC, 'no space left on the device'),
    (errno.EROFS, 'the file system is read-only'),
])
def test_a_full_disk_and_a_read_only_file_system(tmp_path, capsys, monkeypatch, code, message):
  _rows(tmp_path)

  def fail(fig, out, dpi=100):
    raise OSError(code, os.strerror(code), str(out))

  monkeypatch.setattr(paths, 'save_figure', fail)
  assert message in _one_line(capsys, 'plot', str(tmp_path))
  assert metrics.read(tmp_path) == [{'step': 1, 'loss': 2.0}]


@pytest.mark.slow
def test_ctrl_c_in_setup_exits_130_even_inside_a_gc_callback(tmp_path):
  """JAX runs Python from garbage-collection callbacks, where a KeyboardInterrupt is printed
  and dropped: the run used to go on training."""
  script = textwrap.dedent('''
      import gc, os, signal, sys, time
      from ssljax.cli.main import main
      from ssljax.pretrain import loop

      def setup(config, workdir, init=None):
        def callback(phase, info):
          if phase == 'start' and callback in gc.callbacks:
            gc.callbacks.remove(callback)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        gc.callbacks.append(callback)
        gc.collect()
        time.sleep(2)
        raise SystemExit('the interrupt was swallowed')

      loop.setup = setup
      sys.exit(main(['pretrain', '--workdir', sys.argv[1]]))
  ''')
  done = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'run')],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 130, done.stderr
  assert done.stderr.strip().splitlines()[-1] == 'ssljax: interrupted'


def test_sigterm_in_setup_is_one_line_and_the_rerun_takes_the_lock(tmp_path):
  """SIGTERM before the loop (which saves on it) holds it: one line, exit 143, and the lock
  left behind names a process that is gone."""
  script = textwrap.dedent('''
      import os, signal, sys, time
      from ssljax.cli.main import main
      from ssljax.pretrain import loop

      def setup(config, workdir, init=None):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise SystemExit('SIGTERM was not handled')

      loop.setup = setup
      sys.exit(main(['pretrain', '--workdir', sys.argv[1]]))
  ''')
  done = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'run')],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 143, done.stderr
  assert done.stderr.strip().splitlines() == [
      'ssljax: terminated (SIGTERM); rerun the same command to continue']
  from ssljax.pretrain import lock
  with lock.held(tmp_path / 'run'):  # taken over: its process is gone
    pass


def test_a_run_whose_steps_are_cut_short_ends_in_one_line(pretrained_run, corpus_file,
                                                         tokenizer_file, tmp_path):
  """Every step misses its array data: each is set aside with a warning and the run stops
  with one line. No traceback or "Event loop is closed" from Orbax's stranded reads follows."""
  shutil.copytree(pretrained_run, tmp_path / 'run')
  for chunk in (tmp_path / 'run' / 'checkpoints').glob('*/state/**/d/*'):
    chunk.unlink()
  command = [sys.executable, '-m', 'ssljax.cli', 'pretrain', '--workdir', str(tmp_path / 'run')]
  command += [a for o in tiny_overrides(corpus_file, **{'tokenizer.path': tokenizer_file,
                                                        'mesh.data': 8, 'train.steps': 9,
                                                        'train.extend': 'decay'})
              for a in ('--set', o)]
  done = subprocess.run(command, capture_output=True, text=True, timeout=300)
  lines = done.stderr.splitlines()
  assert done.returncode == 2 and len(lines) == 3, done.stderr
  assert all(line.startswith('WARNING ssljax.checkpoint: checkpoint ') and
             'kept as' in line for line in lines[:2]), done.stderr
  assert lines[2].startswith('ssljax: error: ') and 'holds unreadable-3, unreadable-6' in lines[2]


def test_a_bucket_that_cannot_be_reached(capsys, monkeypatch):
  """Offline: the storage endpoint is a closed port; gcsfs retries without its waits."""
  retry = pytest.importorskip('gcsfs.retry')

  async def no_wait(seconds):
    del seconds

  with socket.socket() as s:  # a port nothing listens on
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  monkeypatch.setenv('STORAGE_EMULATOR_HOST', f'http://127.0.0.1:{port}')
  monkeypatch.setenv('NO_GCE_CHECK', 'true')
  monkeypatch.setattr(retry, 'asyncio', types.SimpleNamespace(sleep=no_wait))
  err = _one_line(capsys, 'pretrain', '--config', 'configs/bert_tiny.py', '--workdir',
                  'gs://no-such-bucket/run')
  assert err.startswith('ssljax: error: gs://no-such-bucket/run cannot be reached (Cannot '
                        f'connect to host 127.0.0.1:{port}'), err
  assert 'check the network, the bucket name and the credentials' in err


@pytest.mark.slow  # torch, transformers and an import: ~20 s on 2 loaded cores
def test_pretraining_in_an_import_hf_folder(tmp_path, capsys, corpus_file):
  pytest.importorskip('torch')
  from test_inference_generation import tiny_gpt2  # pylint: disable=g-import-not-at-top
  tiny_gpt2(tmp_path / 'gpt2')
  assert cli.main(['import-hf', str(tmp_path / 'gpt2'), '--out', str(tmp_path / 'imported')]) == 0
  before = sorted(p.name for p in (tmp_path / 'imported').rglob('*'))
  capsys.readouterr()
  overrides = tiny_overrides(corpus_file, **{'objective': 'clm', 'model.arch': 'gpt'})
  err = _one_line(capsys, 'pretrain', '--workdir', str(tmp_path / 'imported'),
                  *[a for o in overrides for a in ('--set', o)])
  assert f'{tmp_path}/imported/checkpoints/0 is a model import-hf wrote, of another config' in err
  assert f'--set train.init_from={tmp_path}/imported' in err
  assert sorted(p.name for p in (tmp_path / 'imported').rglob('*')) == before


def test_a_folder_given_for_a_file_says_so(tmp_path, capsys):
  """Not "does not exist": the path exists, it is a folder."""
  err = _one_line(capsys, 'pretrain', '--config', str(tmp_path), '--workdir',
                  str(tmp_path / 'run'))
  assert f'config file {tmp_path} is a folder, not a file' in err
  err = _one_line(capsys, 'encode', '--checkpoint', str(tmp_path), '--input', str(tmp_path),
                  '--output', str(tmp_path / 'out.npy'))
  assert f'--input {tmp_path} is a folder; pass a text file' in err


def test_ctrl_c_while_xla_compiles_exits_at_once():
  """compile runs XLA in a worker thread (cli.compile.in_thread): XLA's compiler holds the
  thread that calls it (here for tens of seconds: 8,000 unrolled ops) and Python runs its
  signal handler only in the main thread, so Ctrl-C waited for the compile; now it is one
  line and exit 130 at once."""
  script = textwrap.dedent('''
      import signal
      import jax, jax.numpy as jnp
      from ssljax.cli import compile as c
      from ssljax.cli.main import _interrupted

      def f(x):
        for i in range(8000):
          x = jnp.sin(x) * 1.0001 + jnp.cos(x * i)
        return x

      lowered = jax.jit(f).lower(jnp.ones((64, 64)))
      signal.signal(signal.SIGINT, _interrupted)
      print('compiling', flush=True)
      c.in_thread(lowered.compile)
      print('compiled', flush=True)
      ''')
  proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          env=os.environ | {'JAX_PLATFORMS': 'cpu'})
  try:
    assert proc.stdout.readline() == 'compiling\n'
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
  finally:
    proc.kill()
  assert proc.returncode == 130 and 'compiled' not in out
  assert err.endswith('ssljax: interrupted\n')
