"""The pure training and evaluation steps, shared by the jit (mesh) and pmap strategies.

A step is a function of (state, batch) only: masks and dropout come from keys derived from
(seed, step, global row), so a resumed, re-sharded or pmapped run computes the same thing
(dropout aside where each device draws its own: under pmap and `shard_axis`).
Loss = sum over heads of (loss sum / global count); with `axis_name` (pmap, or a shard_map
over the mesh's data axis) the sums and gradients are psum'd, which equals the
single-device mean-loss gradient exactly.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from ssljax import sharding
from ssljax.pretrain import masking, objectives, series_objectives
from ssljax.pretrain.state import TrainState


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Everything a step closes over that is not an array of the state or the batch."""
  graphdef: Any
  tx: Any
  objective: str
  mlm: Any  # the mlm config section
  vocab: dict  # special_ids, normal_ids, mask_id (numpy)
  num_predictions: int
  seed: int
  grad_accum: int = 1
  patch_len: int = 0  # series objectives: time steps per patch
  dropout_rng: str = 'threefry2x32'  # a jax.random key implementation
  axis_name: str | None = None
  # jit with micro-batches: each shard of this mesh axis sums its own gradient over them (a
  # shard_map, as under pmap) and the psum over the axis runs once per step; left to itself
  # the compiler all-reduces every micro-batch's gradient inside the loop.
  shard_axis: str | None = None


def vocab_ids(tokenizer) -> dict:
  return {'special_ids': tokenizer.special_ids, 'normal_ids': tokenizer.normal_ids,
          'mask_id': tokenizer.mask_id}


def fixed_vocab_ids(vocab_size: int) -> dict:
  """The ids of an ssljax sentencepiece tokenizer of `vocab_size` pieces ([PAD] [UNK] [CLS]
  [SEP] [MASK] at 0-4): enough to compile a step without training one."""
  return {'special_ids': np.arange(5, dtype=np.int32),
          'normal_ids': np.arange(5, vocab_size, dtype=np.int32), 'mask_id': 4}


def build_spec(config, graphdef, tx, vocab: dict) -> StepSpec:
  """The StepSpec of a config: one builder for `pretrain` and `ssljax compile`."""
  return StepSpec(
      graphdef=graphdef, tx=tx, objective=config.objective, mlm=config.mlm, vocab=vocab,
      num_predictions=masking.num_predictions(config.data.seq_len, config.mlm.rate),
      seed=config.train.seed, grad_accum=config.train.grad_accum,
      dropout_rng=config.train.dropout_rng, patch_len=config.model.patch_len)


def _row_indices(batch_size, axis_name):
  """Global row index of each example of this (per-device) batch."""
  rows_B = jnp.arange(batch_size)
  if axis_name is not None:
    rows_B += jax.lax.axis_index(axis_name) * batch_size
  return rows_B


def _psum(tree, axis_name):
  return tree if axis_name is None else jax.lax.psum(tree, axis_name)


def prepare(spec: StepSpec, batch, key):
  """Masks the batch (MLM objectives); returns (model inputs, masks, global counts)."""
  if spec.objective in series_objectives.OBJECTIVES:
    rows_B = _row_indices(batch['values'].shape[0], spec.axis_name)
    inputs, masks, counts = series_objectives.prepare(spec.objective, batch, key, rows_B,
                                                      spec.patch_len, spec.mlm)
    return inputs, masks, _psum(counts, spec.axis_name)
  masks = {}
  inputs = batch
  if spec.objective != 'clm':
    rows_B = _row_indices(batch['input_ids'].shape[0], spec.axis_name)
    masks = masking.mask_batch(key, rows_B, batch, spec.vocab, spec.mlm, spec.num_predictions)
    inputs = dict(batch, input_ids=masks['masked_ids'])
  counts = _psum(objectives.head_counts(batch, masks, spec.objective), spec.axis_name)
  return inputs, masks, counts


def _loss(spec, params, batch, inputs, masks, counts, dropout_key):
  model = nnx.merge(spec.graphdef, params)
  hidden_BxLxH = model(inputs, key=dropout_key)
  if spec.objective in series_objectives.OBJECTIVES:
    sums = series_objectives.head_sums(model, hidden_BxLxH, batch, masks, spec.objective,
                                       spec.mlm, spec.axis_name)
  else:
    sums = objectives.head_sums(model, hidden_BxLxH, batch, masks, spec.objective,
                                spec.mlm.masked_positions_only)
  loss = sum(sums[h]['loss'] / counts[h] for h in sums)
  return loss, sums


def _split_micro(tree, n):
  """n micro-batches; micro-batch i holds rows i, i + n, ...: rows of every device's shard,
  so each micro-batch runs on all devices and accumulation saves memory."""
  split = lambda x: x.reshape((x.shape[0] // n, n) + x.shape[1:]).swapaxes(0, 1)
  return jax.tree.map(lambda x: sharding.constrain_rows(split(x), axis=1), tree)


def _gradients(spec: StepSpec, params, batch, step):
  """(gradients, loss sums, counts) of one step's batch; with `axis_name` each device's
  gradient over its rows and micro-batches is psum'd once, after the last."""
  key = jax.random.fold_in(jax.random.key(spec.seed), step)
  mask_key, dropout_key = jax.random.split(key)
  if spec.dropout_rng != 'threefry2x32':
    dropout_key = jax.random.fold_in(jax.random.key(spec.seed, impl=spec.dropout_rng), step)
  if spec.axis_name is not None:
    dropout_key = jax.random.fold_in(dropout_key, jax.lax.axis_index(spec.axis_name))
  inputs, masks, counts = prepare(spec, batch, mask_key)
  grad_fn = jax.grad(lambda p, *a: _loss(spec, p, *a), has_aux=True)
  if spec.grad_accum == 1:
    grads, sums = grad_fn(params, batch, inputs, masks, counts, dropout_key)
  else:
    micro = _split_micro((batch, inputs, masks), spec.grad_accum)

    def body(carry, xs):
      i, (b, x, m) = xs
      g, s = grad_fn(params, b, x, m, counts, jax.random.fold_in(dropout_key, i))
      return jax.tree.map(jnp.add, carry, (g, s)), None

    zeros = jax.eval_shape(grad_fn, params, batch, inputs, masks, counts, dropout_key)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
    (grads, sums), _ = jax.lax.scan(body, zeros, (jnp.arange(spec.grad_accum), micro))
  grads, sums = _psum((grads, sums), spec.axis_name)
  return grads, sums, counts


def train_step(spec: StepSpec, state: TrainState, batch) -> tuple[TrainState, dict]:
  """One optimizer update; returns (new state, metrics of this step)."""
  grads_of = functools.partial(_gradients, spec)
  if spec.shard_axis is not None:
    # Without check_vma: it would psum each micro-batch's gradient of the replicated params.
    local = dataclasses.replace(spec, axis_name=spec.shard_axis, shard_axis=None)
    grads_of = jax.shard_map(functools.partial(_gradients, local),
                             in_specs=(P(), P(spec.shard_axis), P()), out_specs=P(),
                             axis_names={spec.shard_axis}, check_vma=False)
  grads, sums, counts = grads_of(state.params, batch, state.step)
  updates, opt_state = spec.tx.update(grads, state.opt_state, state.params)
  params = jax.tree.map(jnp.add, state.params, updates)
  metrics = summarize(sums, counts)
  metrics['grad_norm'] = jnp.sqrt(sum(jnp.sum(g.astype(jnp.float32) ** 2)
                                      for g in jax.tree.leaves(grads)))
  return TrainState(params, opt_state, state.step + 1), metrics


def eval_step(spec: StepSpec, params, batch, index):
  """Held-out loss sums of one batch; masks from a fixed key so every eval sees the same."""
  key = jax.random.fold_in(jax.random.key(spec.seed + 1), index)
  inputs, masks, counts = prepare(spec, batch, key)
  _, sums = _loss(spec, params, batch, inputs, masks, counts, None)
  return _psum(sums, spec.axis_name)


def summarize(sums, counts=None):
  """Per-head loss and accuracy (heads that classify), total loss, and CLM perplexity."""
  metrics = {}
  total = 0.0
  for head, s in sums.items():
    count = counts[head] if counts is not None else jnp.maximum(s['count'], 1.0)
    metrics[f'{head}_loss'] = s['loss'] / count
    if 'correct' in s:
      metrics[f'{head}_accuracy'] = s['correct'] / count
    total += metrics[f'{head}_loss']
  metrics['loss'] = total
  if 'clm' in sums:
    metrics['clm_perplexity'] = jnp.exp(metrics['clm_loss'])
  return metrics
