"""A full disk inside Orbax's writer threads is one line: the steps committed before stay,
and once there is space the same command continues (pretrain) or starts again (import-hf)."""

import errno
import os
import shutil
import subprocess
import sys

import orbax.checkpoint as ocp
import pytest

from ssljax import checksums, paths
from ssljax.errors import UserError
from ssljax.interop import huggingface as hf
from ssljax.pretrain import loop as train

from conftest import pretrained_run_config as _config, tiny_overrides


def _steps(workdir):
  return sorted(p.name for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


@pytest.fixture
def full_at_step_9(monkeypatch):
  """Orbax's JSON writer of step 9 fails as a full disk makes it (errno 28, raised in
  Orbax's background save thread)."""
  real = ocp.JsonCheckpointHandler._save_fn  # pylint: disable=protected-access

  async def save_fn(self, x, directory):
    if '/9.orbax-checkpoint-tmp' in os.fspath(directory):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return await real(self, x, directory)

  monkeypatch.setattr(ocp.JsonCheckpointHandler, '_save_fn', save_fn)
  return monkeypatch


def test_a_full_disk_while_pretraining_saves_keeps_the_run(run_copy, corpus_file,
                                                           tokenizer_file, full_at_step_9):
  config = _config(corpus_file, tokenizer_file, **{'train.steps': 9, 'train.extend': 'decay'})
  with pytest.raises(UserError) as raised:
    train.pretrain(config, run_copy)
  message = str(raised.value)
  assert '\n' not in message and message.startswith(f'{run_copy}/checkpoints: no space left')
  assert 'while saving checkpoint 9; the steps saved before (3, 6) are intact' in message
  assert _steps(run_copy) == ['3', '6']
  full_at_step_9.undo()  # space freed: the same command continues
  train.pretrain(config, run_copy)
  assert _steps(run_copy) == ['3', '6', '9']
  checksums.verify(run_copy / 'checkpoints' / '9')


@pytest.fixture
def small_disk(tmp_path):
  """A real 200 KiB file system (tmpfs), where this test may mount one (root on Linux)."""
  folder = tmp_path / 'disk'
  folder.mkdir()
  if os.geteuid() != 0 or not shutil.which('mount') or subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', 'size=200k', 'tmpfs', str(folder)],
      capture_output=True).returncode:
    pytest.skip('mounting a small tmpfs needs root')
  yield folder
  subprocess.run(['umount', str(folder)], check=True)


def test_import_hf_on_a_full_disk_is_one_line_and_can_be_rerun(small_disk, tmp_path):
  torch = pytest.importorskip('torch')
  import test_interop_huggingface as hf_tests
  source = tmp_path / 'bert'
  source.mkdir()
  torch.manual_seed(1)
  hf_tests._bert(source).save_pretrained(source)  # pylint: disable=protected-access
  with pytest.raises(UserError) as raised:
    hf.import_folder(source, small_disk / 'imported')
  message = str(raised.value)
  assert '\n' not in message and 'no space left on the device while saving checkpoint 0' in message
  assert not (small_disk / 'imported' / 'checkpoints').exists()  # nothing blocks the rerun
  subprocess.run(['mount', '-o', 'remount,size=20m', str(small_disk)], check=True)
  hf.import_folder(source, small_disk / 'imported')
  assert _steps(small_disk / 'imported') == ['0']


INJECT = '''
import errno, os, sys
import orbax.checkpoint as ocp
real = ocp.JsonCheckpointHandler._save_fn
async def save_fn(self, x, directory):
  if '/9.orbax-checkpoint-tmp' in os.fspath(directory):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  return await real(self, x, directory)
ocp.JsonCheckpointHandler._save_fn = save_fn
from ssljax.cli import main
sys.exit(main(sys.argv[1:]))
'''


def test_the_command_says_one_line_not_orbax_threads_tracebacks(run_copy, corpus_file,
                                                                 tokenizer_file):
  """Orbax logs each writer thread the full disk stopped, with its traceback, through absl:
  the command's stderr is its start-up line and the error, nothing else."""
  sets = [f'--set={s}' for s in tiny_overrides(corpus_file, **{
      'tokenizer.path': tokenizer_file, 'mesh.data': 8, 'train.steps': 9,
      'train.extend': 'decay'})]
  done = subprocess.run([sys.executable, '-c', INJECT, 'pretrain', '--workdir', str(run_copy),
                         *sets], capture_output=True, text=True, cwd=os.path.dirname(__file__))
  lines = done.stderr.splitlines()
  assert done.returncode == 2 and len(lines) == 2, done.stderr
  assert 'continuing from step 6' in lines[0] and 'no space left' in lines[1]
  assert _steps(run_copy) == ['3', '6']


def test_a_full_disk_is_told_by_errno_or_free_space_never_by_message_text(tmp_path,
                                                                          monkeypatch):
  """TensorStore's full-disk ValueError has no errno: the free space decides, not its words."""
  from ssljax import checkpoint
  worded = ValueError('Error writing: No space left on device')
  assert not checkpoint._disk_full(worded, tmp_path / 'checkpoints')  # pylint: disable=protected-access
  assert checkpoint._disk_full(OSError(errno.ENOSPC, 'full'), 'gs://bucket/run')  # pylint: disable=protected-access
  assert not checkpoint._disk_full(ValueError('full'), 'gs://bucket/run')  # pylint: disable=protected-access
  monkeypatch.setattr(paths.shutil, 'disk_usage', lambda _: shutil._ntuple_diskusage(10, 10, 0))  # pylint: disable=protected-access
  assert checkpoint._disk_full(ValueError('any words'), tmp_path / 'checkpoints' / '9')  # pylint: disable=protected-access
