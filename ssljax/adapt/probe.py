"""Frozen-encoder probes: a linear head trained on cached features, and closed-form ridge.

Features are computed once per split in jitted fixed-size batches (cached as npz when a
cache path is given) and standardised with the training statistics, so one learning rate
and one ridge grid suit any encoder. Token tasks probe each word's first sub-token. The
ridge probe has no learning rate: it fits one-hot targets (or the score) in closed form for
a grid of penalties and keeps the one that does best on a validation split carved from
train, then refits on all of train. `ridge_probe_eval` wraps it for use during pretraining.
"""

import dataclasses
import functools
import hashlib
import zipfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from ssljax import paths, progress
from ssljax.errors import UserError
from ssljax.inference import encoding
from ssljax.tasks import kinds, task_rows

# Ridge penalties, as multiples of the mean eigenvalue of the centred Gram matrix.
RIDGE_GRID = 10.0 ** np.arange(-5, 3)


@dataclasses.dataclass
class Features:
  """One split's frozen features, one per example (or per word for token tasks)."""
  x: np.ndarray  # N x H float32
  rows: task_rows.Rows
  examples: list

  def targets(self) -> np.ndarray:
    labels = self.rows.arrays['labels']
    if self.rows.words is None:
      return labels
    return labels[self.rows.words[:, 0], self.rows.words[:, 1]]

  def take(self, index) -> 'Features':
    """Examples `index` (one row each), with their features."""
    index = np.sort(index)
    rows = task_rows.take(self.rows, index)
    keep = index if self.rows.words is None else np.isin(self.rows.words[:, 0], index)
    return Features(self.x[keep], rows, [self.examples[i] for i in index])


def extract(model, tokenizer, spec, examples, settings, cache=None, key: str = '') -> Features:
  """Features of `examples` under `settings` (max_len, pooling, batch_size); read from or
  written to `cache` (a directory) under `key` (what identifies the model: see
  `model_digest`), the task, the pooling and the input ids. A cache file that cannot be
  read is computed again and rewritten."""
  if spec.kind == 'span':
    raise UserError('a probe reads one vector per example or word; fine-tune extractive '
                    f'QA ({spec.name}) instead')
  encoding.check_pooling(model, settings.pooling)
  rows = task_rows.build(tokenizer, spec, examples,
                         task_rows.max_length(model.cfg, settings.max_len))
  path = _cache_path(cache, spec, rows, settings, key)
  if path is not None and path.is_file():
    try:
      cached = paths.load_npz(path)['x']
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
      cached = None  # cut short or damaged: computed again below
    if cached is not None and cached.shape[0] == _feature_rows(rows):
      return Features(cached, rows, examples)
  graphdef, state = nnx.split(model)
  bar = progress.bar(settings, -(-len(rows) // settings.batch_size), f'{spec.name} features',
                     'batch')

  def batch_features(batch):
    bar.update(1)
    inputs = {k: batch[k] for k in task_rows.INPUTS}
    return encoding.features_of(graphdef, state, inputs, settings.pooling, spec.kind == 'tokens')

  x = kinds.collect(batch_features, rows, settings.batch_size, spec)
  bar.close()
  if path is not None:
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.save_npz(path, x=x)
  return Features(x, rows, examples)


def _feature_rows(rows) -> int:
  """How many feature vectors `extract` gives: one per example, or per word."""
  return len(rows) if rows.words is None else len(rows.words)


def _cache_path(cache, spec, rows, settings, key):
  if cache is None:
    return None
  digest = hashlib.sha1()
  for name in ('input_ids', 'segment_ids'):
    digest.update(np.ascontiguousarray(rows.arrays[name]).tobytes())
  return (paths.path(cache) /
          f'{key}_{spec.name}_{settings.pooling}_{digest.hexdigest()[:12]}.npz')


def model_digest(model) -> str:
  """A short hash of every weight of `model`: what a feature cache is keyed by, so that two
  checkpoints at the same step (or one rewritten) never share cached features."""
  digest = hashlib.sha1()
  for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model)))[0]:
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def layers(setting, num_layers: int) -> list[int]:
  """The blocks whose features a probe fits (`probe.layer`): 'best' tries each of them and
  keeps the one that scores best on validation, 'last' (or 0) the top one, N block N."""
  text = str(setting).strip().lower()
  if text == 'best':
    return list(range(1, num_layers + 1))
  if text in ('last', '0'):
    return [num_layers]
  if not text.isdigit() or not 1 <= int(text) <= num_layers:
    raise UserError(f'probe.layer={setting}: use best, last or a block number from 1 to '
                    f'{num_layers}')
  return [int(text)]


def carve(num: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, validation) indices: `fraction` of `num` examples held out, at least one each."""
  if num < 2:
    raise UserError(f'the training split has {num} example; a validation split needs 2 or '
                    'more')
  held = min(max(int(round(num * fraction)), 1), num - 1)
  order = np.random.default_rng(seed).permutation(num)
  return np.sort(order[held:]), np.sort(order[:held])


def _standardise(train_x, *others):
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  return [(x - mean) / std for x in (train_x,) + others]


def _evaluate(spec, features, x, kernel, bias) -> dict:
  logits = x @ kernel + bias
  predictions = kinds.KINDS[spec.kind].decode(spec, features.rows, logits, features.examples)
  return kinds.score(spec, features.examples, predictions)


def _one_hot(spec, y):
  return y[:, None].astype(np.float64) if spec.kind == 'regression' else np.eye(
      len(spec.labels))[y]


def ridge_fit(x_NxH, y_NxC, lam):
  """(kernel, bias) minimising |x W + b - y|^2 + lam |W|^2 (the bias is not penalised)."""
  return next(_ridge_path(x_NxH, y_NxC, [lam]))


def _ridge_path(x_NxH, y_NxC, lambdas):
  """Ridge solutions for each penalty from one eigendecomposition of the centred Gram."""
  x_NxH, y_NxC = np.asarray(x_NxH, np.float64), np.asarray(y_NxC, np.float64)
  mean_x, mean_y = x_NxH.mean(0), y_NxC.mean(0)
  centred = x_NxH - mean_x
  eig_H, vec_HxH = np.linalg.eigh(centred.T @ centred)
  proj_HxC = vec_HxH.T @ (centred.T @ (y_NxC - mean_y))
  for lam in lambdas:
    kernel = vec_HxH @ (proj_HxC / (np.maximum(eig_H, 0) + lam)[:, None])
    yield kernel, mean_y - mean_x @ kernel


def _main(result, spec):
  return result['metrics'][spec.metrics[0]]


def ridge(train: Features, evals: dict, spec, settings, seed: int) -> dict:
  """Closed-form ridge probe; the penalty picked on a validation split carved from train."""
  fit_index, val_index = carve(len(train.examples), settings.val_fraction, seed)
  fit, val = train.take(fit_index), train.take(val_index)
  fit_x, val_x = _standardise(fit.x, val.x)
  y = _one_hot(spec, fit.targets())
  mean_eigenvalue = np.square(fit_x - fit_x.mean(0)).sum() / fit_x.shape[1]
  lambdas = RIDGE_GRID * max(mean_eigenvalue, 1e-12)
  trials = [_evaluate(spec, val, val_x, *w) for w in _ridge_path(fit_x, y, lambdas)]
  best = int(np.argmax([_main(t, spec) for t in trials]))
  all_x, *eval_xs = _standardise(train.x, *(f.x for f in evals.values()))
  kernel, bias = ridge_fit(all_x, _one_hot(spec, train.targets()), lambdas[best])
  return {'seed': seed, 'lambda': float(lambdas[best]),
          'val': trials[best]['metrics'],
          'curve': [{'lambda': float(lam), f'val_{spec.metrics[0]}': _main(t, spec)}
                    for lam, t in zip(lambdas, trials)],
          'evals': {name: _evaluate(spec, f, x, kernel, bias)
                    for (name, f), x in zip(evals.items(), eval_xs)}}


def linear(train: Features, evals: dict, spec, settings, seed: int) -> dict:
  """A linear head trained with AdamW on frozen features; the best epoch on a validation
  split carved from train is kept."""
  if settings.epochs < 1:
    raise UserError(f'epochs={settings.epochs}: a linear probe trains for at least one epoch')
  fit_index, val_index = carve(len(train.examples), settings.val_fraction, seed)
  fit, val = train.take(fit_index), train.take(val_index)
  fit_x, val_x, *eval_xs = _standardise(fit.x, val.x, *(f.x for f in evals.values()))
  y = fit.targets()
  outputs = kinds.KINDS[spec.kind].outputs(spec)
  key = jax.random.key(seed)
  params = {'kernel': 0.02 * jax.random.normal(key, (fit_x.shape[1], outputs)),
            'bias': jnp.zeros((outputs,))}
  tx = optax.adamw(settings.lr, weight_decay=settings.weight_decay)
  loss = kinds.KINDS['regression' if spec.kind == 'regression' else 'classification'].loss
  epoch = jax.jit(functools.partial(_epoch, tx, loss))
  order = task_rows.epoch_order(len(y), min(settings.batch_size, len(y)), settings.epochs, seed)
  steps = len(order) // settings.epochs
  opt_state, best, curve = tx.init(params), None, []
  bar = progress.bar(settings, settings.epochs, f'{spec.name} linear probe seed {seed}', 'epoch')
  for number in range(settings.epochs):
    params, opt_state, losses = epoch(params, opt_state, fit_x, y,
                                      order[number * steps:(number + 1) * steps])
    weights = [np.asarray(params['kernel']), np.asarray(params['bias'])]
    result = _evaluate(spec, val, val_x, *weights)
    curve.append({'epoch': number + 1, 'step': (number + 1) * steps,
                  'loss': float(np.mean(losses)), f'val_{spec.metrics[0]}': _main(result, spec)})
    bar.update(1)
    bar.set_postfix(loss=f'{curve[-1]["loss"]:.4g}')
    if best is None or _main(result, spec) > _main(best[0], spec):
      best = (result, weights, number + 1)
  bar.close()
  assert best is not None  # epochs >= 1 (checked where the settings are read)
  return {'seed': seed, 'epoch': best[2], 'val': best[0]['metrics'], 'curve': curve,
          'evals': {name: _evaluate(spec, f, x, *best[1])
                    for (name, f), x in zip(evals.items(), eval_xs)}}


def _epoch(tx, loss_fn, params, opt_state, x_NxH, y_N, order_SxB):
  """One pass of minibatch AdamW over the features, as a scan."""

  def step(carry, index_B):
    params, opt_state = carry

    def loss(p):
      total, count = loss_fn(x_NxH[index_B] @ p['kernel'] + p['bias'], {'labels': y_N[index_B]})
      return total / jnp.maximum(count, 1)

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value

  (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), order_SxB)
  return params, opt_state, losses


def ridge_probe_eval(model, tokenizer, train_examples, eval_examples, spec, *,
                     pooling='mean', max_len=128, batch_size=64, val_fraction=0.1,
                     seed=0) -> dict:
  """The ridge probe's metrics on `eval_examples`, e.g. every N steps of pretraining.

  Returns the task's metrics by name plus 'lambda', the penalty chosen on validation.
  """
  settings = ml_collections.ConfigDict(dict(pooling=pooling, max_len=max_len,
                                       batch_size=batch_size, val_fraction=val_fraction,
                                       progress=False))  # under pretraining's bar
  train = extract(model, tokenizer, spec, train_examples, settings)
  evaluation = extract(model, tokenizer, spec, eval_examples, settings)
  result = ridge(train, {'eval': evaluation}, spec, settings, seed)
  return result['evals']['eval']['metrics'] | {'lambda': result['lambda']}
