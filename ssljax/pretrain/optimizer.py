"""Optax optimizer: AdamW or LAMB, warmup then decay, global-norm clipping.

Weight decay skips LayerNorm parameters and biases, as BERT does.
"""

import jax
import optax

# How a run continues when train.steps changes after it started (train.extend): 'decay'
# falls from the rate it reached to optimizer.end_learning_rate at the new end; 'rewarm'
# warms up again to optimizer.learning_rate, then decays (a second cycle).
EXTENSIONS = ('decay', 'rewarm')


def schedule(cfg, total_steps, extensions=()):
  """Linear warmup (optimizer.warmup_steps, or warmup_fraction of the run), then decay.

  `extensions` are (from_step, to_step, how) in order: from `from_step` on, the rate
  continues from the value the schedule so far reached there, as `how` says (EXTENSIONS).
  """
  lr = _cycle(cfg, total_steps, 0.0)
  for start, end, how in extensions:
    reached = float(lr(start))
    steps = max(end - start, 1)
    tail = _decay(cfg, reached, steps) if how == 'decay' else _cycle(cfg, steps, reached)
    lr = optax.join_schedules([lr, tail], [start])
  return lr


def from_segments(segments) -> tuple[int, list[tuple]]:
  """(total_steps, extensions) of `schedule` from a run's saved segments, [[0, steps, ''],
  [from_step, to_step, how], ...] (`loop.Run.schedule`)."""
  return segments[0][1], [tuple(s) for s in segments[1:]]


def _cycle(cfg, total_steps, start_value):
  """Warmup from `start_value` to optimizer.learning_rate, then decay over the rest."""
  steps = round(cfg.warmup_fraction * total_steps) if cfg.warmup_fraction else cfg.warmup_steps
  warmup = min(steps, max(total_steps - 1, 0))
  decay = _decay(cfg, cfg.learning_rate, max(total_steps - warmup, 1))
  if not warmup:
    return decay
  warm = optax.linear_schedule(start_value, cfg.learning_rate, warmup)
  return optax.join_schedules([warm, decay], [warmup])


def _decay(cfg, peak, steps):
  """optimizer.decay's shape from `peak` to optimizer.end_learning_rate over `steps`."""
  if cfg.decay == 'cosine' and peak > 0:
    return optax.cosine_decay_schedule(peak, steps, alpha=cfg.end_learning_rate / peak)
  if cfg.decay == 'constant':
    return optax.constant_schedule(peak)
  return optax.linear_schedule(peak, cfg.end_learning_rate, steps)


def decay_mask(params):
  """True for kernels and embeddings; False for LayerNorm scales and biases.

  Decided by name, not by rank: under scan_layers a LayerNorm scale is 2-D.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) in ('kernel', 'embedding'), params)


def build(cfg, total_steps, extensions=()) -> optax.GradientTransformation:
  lr = schedule(cfg, total_steps, extensions)
  if cfg.name == 'lamb':
    main = optax.lamb(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                      mask=decay_mask)
  else:
    main = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                       mask=decay_mask)
  parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
  return optax.chain(*parts, main)
