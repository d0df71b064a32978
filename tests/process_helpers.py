"""`ssljax pretrain` in child processes, as on hosts of a pod slice: start, watch, signal.

Shared by the multi-process and kill tests.
"""

import json
import os
import socket
import subprocess
import sys
import time

from conftest import tiny_overrides


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start(workdir, corpus_file, extra: dict, processes: int = 1,
          devices: int = 1) -> list[subprocess.Popen]:
  """`processes` ssljax processes (jax.distributed over gloo when more than one), each
  with `devices` CPU devices, running one pretraining command in `workdir`."""
  port = free_port()
  procs = []
  for pid in range(processes):
    more = dict(extra)
    if processes > 1:
      more |= {'distributed.coordinator_address': f'127.0.0.1:{port}',
               'distributed.num_processes': processes, 'distributed.process_id': pid}
    command = [sys.executable, '-m', 'ssljax.cli', 'pretrain', '--workdir', str(workdir)]
    command += [a for o in tiny_overrides(corpus_file, **more) for a in ('--set', o)]
    env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
    procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  return procs


def finish(procs, timeout=300) -> list[str]:
  """Waits for every process; asserts each exited cleanly; returns their outputs."""
  outs = [p.communicate(timeout=timeout)[0] for p in procs]
  assert [p.returncode for p in procs] == [0] * len(procs), '\n\n'.join(outs)
  return outs


def logged_steps(workdir) -> list[int]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line)['step'] for line in f if line.strip().endswith('}')]


def wait_for_step(workdir, step: int, procs, timeout=240):
  """Returns once metrics.jsonl has a row at `step` or later; fails if the run ends first."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if any(s >= step for s in logged_steps(workdir)):
      return
    if any(p.poll() is not None for p in procs):
      output = '\n'.join(p.communicate()[0] for p in procs)
      raise AssertionError(f'run ended before step {step}:\n{output}')
    time.sleep(0.05)
  raise AssertionError(f'no step {step} within {timeout} s')


def losses(workdir) -> dict[int, float]:
  """step -> loss of every logged training step (a resumed run continues the same file)."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {r['step']: r['loss'] for r in rows if 'loss' in r}


def params(workdir) -> list:
  """The latest checkpoint's parameters, as host arrays in tree order."""
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from ssljax.inference import loading  # pylint: disable=g-import-not-at-top
  model = loading.load(workdir).model
  return jax.tree.leaves(jax.device_get(nnx.to_pure_dict(nnx.state(model))))
