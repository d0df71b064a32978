"""Optax optimizer: AdamW or LAMB, warmup then decay, global-norm clipping.

Weight decay skips LayerNorm parameters and biases, as BERT does.
"""

import jax
import optax

# How a run continues when train.steps changes after it started (train.extend): 'decay'
# falls from the rate it reached to optimizer.end_learning_rate at the new end; 'rewarm'
# warms up again to optimizer.learning_rate, then decays (a second cycle).
EXTENSIONS = ('decay', 'rewarm')


def schedule(optim, total_steps, extensions=()):
  """Linear warmup (optimizer.warmup_steps, or warmup_fraction of the run), then decay.

  `extensions` are (from_step, to_step, how) in order: from `from_step` on, the rate
  continues from the value the schedule so far reached there, as `how` says (EXTENSIONS).
  """
  lr = _cycle(optim, total_steps, 0.0)
  for start, end, how in extensions:
    reached = float(lr(start))
    steps = max(end - start, 1)
    tail = _decay(optim, reached, steps) if how == 'decay' else _cycle(optim, steps, reached)
    lr = optax.join_schedules([lr, tail], [start])
  return lr


def from_segments(segments) -> tuple[int, list[tuple]]:
  """(total_steps, extensions) of `schedule` from a run's saved segments, [[0, steps, ''],
  [from_step, to_step, how], ...] (`loop.Run.schedule`)."""
  return segments[0][1], [tuple(s) for s in segments[1:]]


def _cycle(optim, total_steps, start_value):
  """Warmup from `start_value` to optimizer.learning_rate, then decay over the rest."""
  steps = (round(optim.warmup_fraction * total_steps) if optim.warmup_fraction
           else optim.warmup_steps)
  warmup = min(steps, max(total_steps - 1, 0))
  decay = _decay(optim, optim.learning_rate, max(total_steps - warmup, 1))
  if not warmup:
    return decay
  warm = optax.linear_schedule(start_value, optim.learning_rate, warmup)
  return optax.join_schedules([warm, decay], [warmup])


def _decay(optim, peak, steps):
  """optimizer.decay's shape from `peak` to optimizer.end_learning_rate over `steps`."""
  if optim.decay == 'cosine' and peak > 0:
    return optax.cosine_decay_schedule(peak, steps, alpha=optim.end_learning_rate / peak)
  if optim.decay == 'constant':
    return optax.constant_schedule(peak)
  return optax.linear_schedule(peak, optim.end_learning_rate, steps)


def decay_mask(params):
  """True for kernels and embeddings; False for LayerNorm scales and biases.

  Decided by name, not by rank: under scan_layers a LayerNorm scale is 2-D.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) in ('kernel', 'embedding'), params)


def build(optim, total_steps, extensions=()) -> optax.GradientTransformation:
  lr = schedule(optim, total_steps, extensions)
  if optim.name == 'lamb':
    main = optax.lamb(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay,
                      mask=decay_mask)
  else:
    main = optax.adamw(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay,
                       mask=decay_mask)
  parts = [optax.clip_by_global_norm(optim.clip_norm)] if optim.clip_norm > 0 else []
  return optax.chain(*parts, main)
