"""A time budget: `train.time_budget` minutes size the run's step count, once.

The first run in a workdir measures the step rate on a few throwaway steps, fixes
`train.steps` so that the schedule (warmup, decay, a triangle) spans the budget, and writes
it to `WORKDIR/budget.json`. Every later run, a resume included, reads that number back, so
an interrupted run computes exactly what an uninterrupted one would. The loop then stops
with a checkpoint when an invocation has spent the budget; rerunning continues.
"""

import json
import logging
import time

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from ssljax import paths
from ssljax.errors import UserError

log = logging.getLogger(__name__)

FILE = 'budget.json'
_TIMED_STEPS = 5
_SAFETY = 0.9  # evaluation, checkpoints and the second compile take time too


def sized_config(config, workdir, setup, started: float) -> ml_collections.ConfigDict:
  """`config` with train.steps fixed by the budget (measured now, or read from the workdir).

  `setup(config, workdir)` builds a run (see `loop.setup`); `started` is when the command
  began (time.perf_counter), so tokenizer training and compilation count against the budget.
  """
  path = paths.path(workdir) / FILE
  config = ml_collections.ConfigDict(config.to_dict())
  if path.is_file():
    config.train.steps = _recorded_steps(path)
    return config
  budget_s = config.train.time_budget * 60
  run = setup(config, workdir)
  try:
    state = run.strategy.init(config.train.seed)
    batch = run.strategy.put_batch(next(run.batches))
    state, metrics = run.strategy.step(state, batch)  # compiles
    jax.block_until_ready(metrics)
    overhead = time.perf_counter() - started
    begin = time.perf_counter()
    for _ in range(_TIMED_STEPS):
      state, metrics = run.strategy.step(state, batch)
    jax.block_until_ready(metrics)
    per_step = (time.perf_counter() - begin) / _TIMED_STEPS
  finally:
    run.manager.close()
  # The real run repeats the set-up and the compilation: count the overhead twice.
  steps = max(1, int(_SAFETY * (budget_s - 2 * overhead) / per_step))
  steps = int(multihost_utils.broadcast_one_to_all(np.int64(steps)))
  log.info('time budget %.1f min: %.3f s/step, set-up %.0f s -> train.steps=%d',
           config.train.time_budget, per_step, overhead, steps)
  if jax.process_index() == 0:  # whole or absent: every later run reads it
    paths.write_whole(path, json.dumps({'steps': steps, 'seconds_per_step': per_step,
                                        'overhead_seconds': overhead,
                                        'time_budget_minutes': config.train.time_budget}))
  config.train.steps = steps
  return config


def _recorded_steps(path) -> int:
  """The step count in WORKDIR/budget.json, or one line saying how to mend the file."""
  try:
    steps = json.loads(path.read_bytes())['steps']
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
      raise TypeError(f'steps={steps!r}')
  except (ValueError, KeyError, TypeError) as e:
    why = str(e) if isinstance(e, TypeError) else f'{type(e).__name__}: {e}'
    raise UserError(f'{path} holds no step count ({why[:100]}); it records the train.steps '
                    'that train.time_budget fixed for this run: write {"steps": N} back, or '
                    'delete it to measure the step rate again (a run with checkpoints then '
                    'asks for train.extend if the count changes)') from None
  return steps


def spent(started: float, minutes: float) -> bool:
  """True once `minutes` have passed since `started`, as process 0 sees it (all processes
  must stop at the same step)."""
  over = minutes > 0 and time.perf_counter() - started > minutes * 60
  if jax.process_count() > 1:
    over = bool(multihost_utils.broadcast_one_to_all(np.bool_(over)))
  return over
