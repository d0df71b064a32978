"""Two processes on localhost with jax.distributed (gloo) follow the one-process run.

This is the code path of a TPU pod slice: each process reads its own rows of every global
batch, `make_array_from_process_local_data` assembles the global batch, and Orbax writes one
checkpoint from both. Preemption reaches hosts at different moments: JAX's preemption sync
point makes both save the same step, and checkpoints move between process counts.
"""

import signal
import time

import numpy as np
import pytest

from ssljax import checkpoint
from ssljax.pretrain import loop as train, metrics

import process_helpers as ph
from conftest import tiny_config

pytestmark = pytest.mark.slow  # several processes, each compiling the run


def test_two_processes_follow_one(corpus_file, tokenizer_file, tmp_path):
  extra = {'tokenizer.path': tokenizer_file, 'train.steps': 5, 'mesh.data': -1}
  ph.finish(ph.start(tmp_path / 'multi', corpus_file, extra, processes=2))
  config = tiny_config(corpus_file, **extra | {'mesh.data': 1})
  train.pretrain(config, tmp_path / 'single')
  loss = lambda w: [r['loss'] for r in metrics.read(w) if 'loss' in r]
  assert len(loss(tmp_path / 'multi')) == 5
  np.testing.assert_allclose(loss(tmp_path / 'multi'), loss(tmp_path / 'single'), rtol=2e-5)
  assert checkpoint.manager(tmp_path / 'multi', 3).latest_step() == 5


def test_sigterm_at_different_moments_then_resume_across_process_counts(
    corpus_file, tokenizer_file, tmp_path):
  """2 processes, SIGTERM to one and later to the other: both save one agreed step and exit.
  That checkpoint resumes in 1 process, whose checkpoint resumes in 2 again; the losses and
  final parameters equal an uninterrupted one-process run."""
  steps = 60
  extra = {'tokenizer.path': tokenizer_file, 'train.steps': steps, 'mesh.data': -1,
           'train.checkpoint_every': 25}
  workdir = tmp_path / 'run'
  procs = ph.start(workdir, corpus_file, extra, processes=2)
  ph.wait_for_step(workdir, 5, procs)
  procs[1].send_signal(signal.SIGTERM)
  time.sleep(0.3)
  procs[0].send_signal(signal.SIGTERM)
  outs = ph.finish(procs)
  stopped = checkpoint.manager(workdir, 3).latest_step()
  assert 5 <= stopped < steps, outs
  assert max(ph.logged_steps(workdir)) == stopped
  assert f'SIGTERM at step {stopped}: checkpoint saved' in outs[0], outs[0]

  single = tiny_config(corpus_file, **extra)
  train.pretrain(single, workdir, stop_after=stopped + 7)  # 2 processes' checkpoint -> 1
  assert checkpoint.manager(workdir, 3).latest_step() == stopped + 7
  ph.finish(ph.start(workdir, corpus_file, extra, processes=2))  # 1 process's -> 2

  train.pretrain(single, tmp_path / 'reference')
  resumed, reference = ph.losses(workdir), ph.losses(tmp_path / 'reference')
  assert sorted(resumed) == list(range(1, steps + 1))
  np.testing.assert_allclose([resumed[s] for s in range(1, steps + 1)],
                             [reference[s] for s in range(1, steps + 1)], rtol=1e-4)
  for a, b in zip(ph.params(workdir), ph.params(tmp_path / 'reference'), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
