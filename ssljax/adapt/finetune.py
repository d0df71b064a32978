"""Fine-tuning: the whole model and a task head, from pretrained or from random weights.

The recipe is BERT's: AdamW without decay on LayerNorm parameters and biases, linear
warmup then linear decay to zero, gradient clipping at 1, and optionally layer-wise
learning-rate decay, which scales each update by llrd ** (blocks between it and the head)
so that the embeddings move least. After every epoch the model is scored on a validation
split carved from train and the best epoch's parameters are kept: the evaluation split is
only ever scored, never used to choose.
"""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from ssljax import models, tokenizers
from ssljax.adapt import features, heads, probe, rows as rows_lib, tasks
from ssljax.pretrain import optimizer
from ssljax.errors import UserError


class Tuned(nnx.Module):
  """An encoder (or decoder) with a task head on its pooled output or on every position."""

  def __init__(self, model, spec, pooling, *, rngs):
    kind = heads.KINDS[spec.kind]
    if not kind.per_position:
      features.check_pooling(model, pooling)
    self.model = model
    self.head = heads.linear(model.cfg.hidden_size, kind.outputs(spec), rngs)
    self.pooling = pooling
    self.per_position = kind.per_position

  def __call__(self, batch, key=None):
    inputs = {k: batch[k] for k in rows_lib.INPUTS}
    hidden_BxLxH = self.model(inputs, key=key)
    if not self.per_position:
      hidden_BxLxH = features.pool(self.model, hidden_BxLxH, inputs['doc_ids'], self.pooling)
    return self.head(hidden_BxLxH).astype(jnp.float32)


def layer_scales(params, num_layers: int, decay: float):
  """llrd ** (num_layers + 1 - depth) per parameter: the embeddings have depth 0, block i
  depth i + 1 (ALBERT's shared block the top one's), everything above num_layers + 1."""

  def scale(path, leaf):
    keys = [getattr(k, 'key', None) for k in path]
    if 'scanned' in keys:  # stacked blocks: one scale per layer along the leading axis
      per_layer = decay ** (num_layers - np.arange(num_layers))
      return jnp.asarray(per_layer.reshape((-1,) + (1,) * (leaf.ndim - 1)), jnp.float32)
    if 'embeddings' in keys:
      depth = 0
    elif 'layers' in keys:
      depth = keys[keys.index('layers') + 1] + 1
    elif 'shared' in keys:
      depth = num_layers
    else:
      depth = num_layers + 1
    return decay ** (num_layers + 1 - depth)

  return jax.tree_util.tree_map_with_path(scale, params)


def make_optimizer(cfg, total_steps: int, params, num_layers: int):
  """The optimizer of `ssljax pretrain` with the fine-tuning recipe's settings."""
  recipe = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=cfg.lr, warmup_steps=int(round(cfg.warmup * total_steps)),
      decay='linear', end_learning_rate=0.0, weight_decay=cfg.weight_decay, b1=0.9,
      b2=0.999, eps=1e-6, clip_norm=1.0))
  tx = optimizer.build(recipe, total_steps)
  if cfg.llrd == 1.0:
    return tx
  scales = layer_scales(params, num_layers, cfg.llrd)
  return optax.chain(tx, optax.stateless(
      lambda updates, _: jax.tree.map(jnp.multiply, updates, scales)))


def _train_step(graphdef, tx, loss_fn, params, opt_state, batch, key):

  def loss(p):
    total, count = loss_fn(nnx.merge(graphdef, p)(batch, key=key), batch)
    return total / jnp.maximum(count, 1)

  value, grads = jax.value_and_grad(loss)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, value


def outputs(graphdef, params, batch):
  """The head's outputs for a batch: jit it with the graphdef bound."""
  return nnx.merge(graphdef, params)(batch)


def finetune(model, tokenizer, spec, train_examples, evals: dict, cfg, seed: int) -> dict:
  """Trains a copy of `model` and a new head on `train_examples`; scores the best epoch
  on each of `evals` ({name: examples})."""
  if cfg.epochs < 1:
    raise UserError(f'epochs={cfg.epochs}: fine-tuning needs at least one epoch')
  kind = heads.KINDS[spec.kind]
  fit_index, val_index = probe.carve(len(train_examples), cfg.val_fraction, seed)
  rows_of = functools.partial(rows_lib.build, tokenizer, spec,
                              max_len=rows_lib.max_length(model.cfg, cfg.max_len),
                              doc_stride=cfg.doc_stride)
  fit_rows = rows_of([train_examples[i] for i in fit_index])
  val_examples = [train_examples[i] for i in val_index]
  val_rows = rows_of(val_examples)
  graphdef, state = nnx.split(Tuned(model, spec, cfg.pooling, rngs=nnx.Rngs(seed)))
  params = jax.tree.map(jnp.copy, nnx.to_pure_dict(state))  # the step donates its input
  order = rows_lib.epoch_order(len(fit_rows), min(cfg.batch_size, len(fit_rows)), cfg.epochs,
                             seed)
  tx = make_optimizer(cfg, len(order), params, model.cfg.num_layers)
  opt_state = tx.init(params)
  step = jax.jit(functools.partial(_train_step, graphdef, tx, kind.loss), donate_argnums=(0, 1))
  forward = jax.jit(functools.partial(outputs, graphdef))

  def evaluate(params, rows, examples):
    outputs = heads.collect(lambda batch: forward(params, batch), rows, cfg.batch_size, spec)
    return heads.score(spec, examples, kind.decode(spec, rows, outputs, examples))

  main = spec.metrics[0]
  best = None
  curve = [{'epoch': 0, 'step': 0,
            f'val_{main}': evaluate(params, val_rows, val_examples)['metrics'][main]}]
  steps_per_epoch, losses, key = len(order) // cfg.epochs, [], jax.random.key(seed)
  for number, index in enumerate(order, start=1):
    batch = {k: v[index] for k, v in fit_rows.arrays.items()}
    params, opt_state, loss = step(params, opt_state, batch, jax.random.fold_in(key, number))
    losses.append(loss)
    if number % steps_per_epoch == 0:
      result = evaluate(params, val_rows, val_examples)
      curve.append({'epoch': number // steps_per_epoch, 'step': number,
                    'loss': float(np.mean(losses[-steps_per_epoch:])),
                    f'val_{main}': result['metrics'][main]})
      if best is None or result['metrics'][main] > best[0]['metrics'][main]:
        best = (result, jax.device_get(params))
  final = best[1]
  return {'seed': seed, 'val': best[0]['metrics'], 'curve': curve,
          'losses': [float(v) for v in losses],
          'evals': {name: evaluate(final, rows_of(examples), examples)
                    for name, examples in evals.items()},
          'params': final}


def save(directory, params, model_cfg, spec, cfg, tokenizer) -> pathlib.Path:
  """Writes what `load` needs to predict: params.npz, meta.json and the tokenizer."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  np.savez(directory / 'params.npz',
           **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat})
  meta = {'model': model_cfg.__dict__, 'spec': spec.__dict__, 'pooling': cfg.pooling,
          'max_len': cfg.max_len, 'doc_stride': cfg.doc_stride, 'tokenizer': tokenizer.kind}
  (directory / 'meta.json').write_text(json.dumps(meta, indent=1))
  (directory / 'tokenizer.bin').write_bytes(tokenizer.model_proto)
  return directory


def load(directory):
  """(Tuned model, TaskSpec, meta, tokenizer) from a directory `save` wrote."""
  directory = pathlib.Path(directory)
  if not (directory / 'meta.json').is_file():
    raise UserError(f'{directory} holds no fine-tuned model (meta.json); pass the model/ '
                    'folder that `ssljax finetune` writes in its workdir')
  meta = json.loads((directory / 'meta.json').read_text())
  spec = tasks.TaskSpec(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in meta['spec'].items()})
  model_cfg = models.ModelConfig(**meta['model'])
  graphdef, state = nnx.split(nnx.eval_shape(lambda: Tuned(
      models.build(model_cfg, nnx.Rngs(0)), spec, meta['pooling'], rngs=nnx.Rngs(0))))
  stored = np.load(directory / 'params.npz')
  paths, treedef = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))
  params = jax.tree_util.tree_unflatten(
      treedef, [stored[jax.tree_util.keystr(path)] for path, _ in paths])
  tokenizer = tokenizers.from_proto(meta['tokenizer'],
                                       (directory / 'tokenizer.bin').read_bytes(),
                                       origin=str(directory / 'tokenizer.bin'))
  return nnx.merge(graphdef, params), spec, meta, tokenizer
