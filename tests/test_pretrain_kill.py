"""`kill -9` at any moment loses nothing: rerunning the same command ends where an
uninterrupted run ends, and every checkpoint directory left behind can be used.

Orbax writes each step into a temporary directory and renames it when complete, so a kill
mid-save leaves the previous step as the latest. The kills land at several steps and once
while an async save is in flight.
"""

import os
import signal
import time

import numpy as np
import pytest

from ssljax import checkpoint
from ssljax.pretrain import loop as train

import process_helpers as ph
from conftest import tiny_config

pytestmark = pytest.mark.slow  # five processes, each compiling the run


def _saving(workdir) -> bool:
  folder = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(folder) and any('tmp' in name for name in os.listdir(folder))


def test_kill_9_at_several_moments_and_during_a_save_then_rerun(corpus_file, tokenizer_file,
                                                               tmp_path):
  steps = 40
  extra = {'tokenizer.path': tokenizer_file, 'train.steps': steps, 'mesh.data': -1,
           'train.checkpoint_every': 4}
  workdir = tmp_path / 'run'
  latest = []
  for kill_at in (6, 17, 29):
    procs = ph.start(workdir, corpus_file, extra)
    ph.wait_for_step(workdir, kill_at, procs)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    latest.append(checkpoint.manager(workdir, 3).latest_step())
  assert latest[-1] and latest == sorted(latest, key=lambda s: s or 0), latest  # progress

  procs = ph.start(workdir, corpus_file, extra)  # a kill while a save is being written
  deadline = time.monotonic() + 240
  while not _saving(workdir) and procs[0].poll() is None and time.monotonic() < deadline:
    time.sleep(0.005)
  procs[0].send_signal(signal.SIGKILL)
  procs[0].wait()
  assert procs[0].returncode == -signal.SIGKILL, 'the run ended before a save could be cut'

  ph.finish(ph.start(workdir, corpus_file, extra))
  assert checkpoint.manager(workdir, 3).latest_step() == steps
  # A listed step that failed to restore would have been set aside as unreadable-STEP.
  assert not [n for n in os.listdir(workdir / 'checkpoints') if n.startswith('unreadable')]
  train.pretrain(tiny_config(corpus_file, **extra), tmp_path / 'reference')
  for a, b in zip(ph.params(workdir), ph.params(tmp_path / 'reference'), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  resumed, reference = ph.losses(workdir), ph.losses(tmp_path / 'reference')
  assert sorted(reference) == list(range(1, steps + 1))
  np.testing.assert_allclose([resumed[s] for s in reference], list(reference.values()),
                             rtol=1e-5)
