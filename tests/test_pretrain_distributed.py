"""Two processes on localhost with jax.distributed (gloo) follow the one-process run.

This is the code path of a TPU pod slice: each process reads its own rows of every global
batch, `make_array_from_process_local_data` assembles the global batch, and Orbax writes one
checkpoint from both.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_config, tiny_overrides
from ssljax.pretrain import checkpoint, metrics, loop as train

pytestmark = pytest.mark.slow  # three processes, each compiling the run


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_follow_one(corpus_file, tokenizer_file, tmp_path):
  extra = {'tokenizer.path': tokenizer_file, 'train.steps': 5, 'mesh.data': -1}
  port = free_port()
  procs = []
  for pid in range(2):
    overrides = tiny_overrides(corpus_file, **extra, **{
        'distributed.coordinator_address': f'127.0.0.1:{port}',
        'distributed.num_processes': 2, 'distributed.process_id': pid})
    command = [sys.executable, '-m', 'ssljax.cli', 'pretrain', '--workdir', str(tmp_path / 'multi')]
    command += [a for o in overrides for a in ('--set', o)]
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
    procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  config = tiny_config(corpus_file, **extra | {'mesh.data': 1})
  train.pretrain(config, tmp_path / 'single')
  loss = lambda w: [r['loss'] for r in metrics.read(w) if 'loss' in r]
  assert len(loss(tmp_path / 'multi')) == 5
  np.testing.assert_allclose(loss(tmp_path / 'multi'), loss(tmp_path / 'single'), rtol=2e-5)
  assert checkpoint.manager(tmp_path / 'multi', 3).latest_step() == 5
