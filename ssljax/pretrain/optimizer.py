"""Optax optimizer: AdamW or LAMB, warmup then decay, global-norm clipping.

Weight decay skips LayerNorm parameters and biases, as BERT does.
"""

import jax
import optax


def schedule(cfg, total_steps):
  """Linear warmup (optimizer.warmup_steps, or warmup_fraction of the run), then decay."""
  steps = round(cfg.warmup_fraction * total_steps) if cfg.warmup_fraction else cfg.warmup_steps
  warmup = min(steps, max(total_steps - 1, 0))
  decay_steps = max(total_steps - warmup, 1)
  if cfg.decay == 'cosine':
    decay = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps,
                                        alpha=cfg.end_learning_rate / cfg.learning_rate)
  elif cfg.decay == 'linear':
    decay = optax.linear_schedule(cfg.learning_rate, cfg.end_learning_rate, decay_steps)
  else:
    decay = optax.constant_schedule(cfg.learning_rate)
  if not warmup:
    return decay
  warm = optax.linear_schedule(0.0, cfg.learning_rate, warmup)
  return optax.join_schedules([warm, decay], [warmup])


def decay_mask(params):
  """True for kernels and embeddings; False for LayerNorm scales and biases.

  Decided by name, not by rank: under scan_layers a LayerNorm scale is 2-D.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) in ('kernel', 'embedding'), params)


def build(cfg, total_steps) -> optax.GradientTransformation:
  lr = schedule(cfg, total_steps)
  if cfg.name == 'lamb':
    main = optax.lamb(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                      mask=decay_mask)
  else:
    main = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                       mask=decay_mask)
  parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
  return optax.chain(*parts, main)
