"""Evaluating pretrained series models: a linear probe for classification and forecasts.

probe: the encoder's mean-pooled last hidden states of each whole series -> a ridge
classifier (one-hot targets, penalty chosen by 5-fold cross-validation on the training
split), for the pretrained weights and for the same architecture at random init (init=both),
beside the majority class and 1-nearest-neighbour on the raw values (the UCR archive's
reference classifier). finetune: the same, with the encoder and a linear head trained.

forecast: rolling forecasts over the part of the run's series that pretraining held out
(data.eval_fraction): from every patch boundary there, a context of data.seq_len - 1
patches (the positions that learned to predict a next patch), `horizon` patches predicted
one at a time (each fed back), scored by MSE and MAE against the naive forecast (the last
value held) and the seasonal-naive one (the values one period earlier).

Both write WORKDIR/results.json and report.md (and forecast.png) through paths, atomically.
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ssljax import models, paths
from ssljax.adapt import probe as probe_lib
from ssljax.data import images, series as series_lib
from ssljax.errors import UserError
from ssljax.inference import loading
from ssljax.pretrain import series_objectives
from ssljax.tasks import scores

PENALTIES = np.logspace(-3, 4, 15)
FOLDS = 5
# fine-tuning, fixed in advance (tens of training series leave no validation split)
FINETUNE_STEPS, FINETUNE_LR, FINETUNE_BATCH = 200, 1e-3, 16


# ---------------------------------------------------------------- classification: probe


def _whole_patches(values_NxTxC, model_cfg, origin):
  """The series cut to whole patches, checked against the model's channels and positions."""
  p = model_cfg.patch_len
  length = values_NxTxC.shape[1] // p
  if values_NxTxC.shape[2] != model_cfg.channels:
    raise UserError(f'{origin} has {values_NxTxC.shape[2]} channels; the model reads '
                    f'{model_cfg.channels}')
  if not 1 <= length <= model_cfg.max_len:
    raise UserError(f'{origin}: series of {values_NxTxC.shape[1]} steps make {length} '
                    f'patches of {p}; the model has positions for 1 to {model_cfg.max_len}')
  return values_NxTxC[:, :length * p]


def representation(model, values_BxTxC):
  """B x D: an auto-encoder's code (D = model.bottleneck), else the last hidden states
  averaged over patches (D = hidden size)."""
  if model.cfg.arch == 'patch_autoencoder':
    return model.encode({'values': values_BxTxC}).astype(jnp.float32)
  return model({'values': values_BxTxC}).astype(jnp.float32).mean(1)


def _in_batches(fn, model, values_NxTxC, *per_row, batch_size: int = 64) -> np.ndarray:
  """fn(model, values, *per_row) over slices of `batch_size` series, joined."""
  return np.concatenate([
      np.asarray(fn(model, values_NxTxC[i:i + batch_size], *(r[i:i + batch_size]
                                                             for r in per_row)))
      for i in range(0, len(values_NxTxC), batch_size)])


def features(model, values_NxTxC, batch_size: int = 64) -> np.ndarray:
  """N x D: each series' `representation`."""
  return _in_batches(nnx.jit(representation), model, values_NxTxC, batch_size=batch_size)


def ridge_classifier(train_x, train_y, test_x, num_classes: int, seed: int) -> np.ndarray:
  """Test predictions of a ridge fit to one-hot labels on standardised features, its
  penalty chosen by FOLDS-fold cross-validated accuracy on the training split."""
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  onehot = np.eye(num_classes)[train_y]
  fold = np.random.default_rng(seed).permutation(len(train_x)) % FOLDS

  def accuracy(lam):
    right = 0
    for f in range(FOLDS):
      kernel, bias = probe_lib.ridge_fit(train_x[fold != f], onehot[fold != f], lam)
      right += ((train_x[fold == f] @ kernel + bias).argmax(1) == train_y[fold == f]).sum()
    return right

  lam = max(PENALTIES, key=accuracy)  # the first (smallest) of the ties
  kernel, bias = probe_lib.ridge_fit(train_x, onehot, lam)
  return (test_x @ kernel + bias).argmax(1)


def finetune_classifier(model, train_x, train_y, test_x, num_classes: int, seed: int,
                        steps: int = FINETUNE_STEPS, lr: float = FINETUNE_LR) -> np.ndarray:
  """Test predictions of the whole encoder plus a linear head on its `representation`,
  trained with AdamW on cross-entropy for a fixed number of steps (no validation split to
  choose them from with tens of training series: they are fixed in advance)."""
  graphdef, state = nnx.split(model)
  width = jax.eval_shape(lambda x: representation(model, x), train_x[:1]).shape[1]
  head = {'kernel': 0.02 * jax.random.normal(jax.random.key(seed), (width, num_classes)),
          'bias': jnp.zeros(num_classes)}
  params = {'encoder': state, 'head': head}
  tx = optax.adamw(lr, weight_decay=0.01)

  def logits(params, x_BxTxC):
    pooled_BxD = representation(nnx.merge(graphdef, params['encoder']), x_BxTxC)
    return pooled_BxD @ params['head']['kernel'] + params['head']['bias']

  @jax.jit
  def step(params, opt_state, x_BxTxC, y_B):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(logits(p, x_BxTxC),
                                                                     y_B).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  batch = min(FINETUNE_BATCH, len(train_x))
  rng = np.random.default_rng(seed)
  order = np.concatenate([rng.permutation(len(train_x))
                          for _ in range(steps * batch // len(train_x) + 1)])
  opt_state = tx.init(params)
  for i in range(steps):
    rows = order[i * batch:(i + 1) * batch]
    params, opt_state = step(params, opt_state, train_x[rows], train_y[rows])
  predict = jax.jit(logits)
  return np.concatenate([np.asarray(predict(params, test_x[i:i + 64])).argmax(1)
                         for i in range(0, len(test_x), 64)])


def nearest_neighbour(train_x, train_y, test_x) -> np.ndarray:
  """1-NN by Euclidean distance between the series z-normalised per channel (the archive's
  protocol: its published 1-NN figures are on normalised series)."""
  def flat(v):
    v = v.astype(np.float64)
    v = (v - v.mean(1, keepdims=True)) / (v.std(1, keepdims=True) + 1e-8)
    return v.reshape(len(v), -1)
  return train_y[squared_distances(flat(test_x), flat(train_x)).argmin(1)]


def squared_distances(b_MxD, a_NxD) -> np.ndarray:
  """M x N squared Euclidean distances between the rows of two matrices."""
  return (b_MxD ** 2).sum(1)[:, None] - 2 * b_MxD @ a_NxD.T + (a_NxD ** 2).sum(1)[None]


def split_names(spec: str) -> tuple[str, str]:
  """(train, test) data specs of a ucr: or tfds: set, of digits, or of an image folder's
  DIR/train and DIR/test: their two splits."""
  if spec.split(':')[0] == 'digits':
    return 'digits:train', 'digits:test'
  if spec.startswith(('ucr:', 'tfds:')):
    prefix, name = spec.split(':')[:2]
    return f'{prefix}:{name}:train', f'{prefix}:{name}:test'
  if paths.path(spec).is_dir():
    return images.train_and_test(spec)
  raise UserError(f'{spec} is not a ucr: or tfds: set, digits, or a train or test image '
                  'folder; pass --train and --test files with labels')


def _labelled(spec, pretrained):
  """The series `spec` names, read as `pretrained`'s run read its data, each labelled."""
  series = series_lib.load(spec, pretrained.model_cfg.patch_len,
                           images.Reading.of(pretrained.config.data))
  if series.labels is None or len(series.labels) != len(series.values):
    raise UserError(f'{spec} has no label per series; a probe needs them (.npz: `labels`)')
  return series


def probe(workdir, train_spec: str, test_spec: str, seeds=(0, 1, 2), method='ridge') -> dict:
  """Accuracy on `test_spec` of ridge probes (or, method='finetune', fine-tuned encoders)
  from the pretrained and from randomly initialised encoders (one per seed), the majority
  class and 1-NN; returns results.json's dict."""
  pretrained = loading.load(workdir)
  cfg = pretrained.model_cfg
  train, test = _labelled(train_spec, pretrained), _labelled(test_spec, pretrained)
  classes = sorted(set(train.labels.tolist()))
  unseen = set(test.labels.tolist()) - set(classes)
  if unseen:
    raise UserError(f'{test_spec} has labels the training split lacks: {sorted(unseen)[:5]}')
  index = {c: i for i, c in enumerate(classes)}
  train_y = np.array([index[c] for c in train.labels.tolist()])
  test_y = np.array([index[c] for c in test.labels.tolist()])
  train_x = _whole_patches(train.values, cfg, train_spec)
  test_x = _whole_patches(test.values, cfg, test_spec)
  score = lambda pred: float(scores.accuracy(test_y, pred))
  runs = []
  for init in ('pretrained', 'scratch'):
    for seed in seeds:
      started = time.perf_counter()
      model = (pretrained.model if init == 'pretrained'
               else models.build(cfg, nnx.Rngs(jax.random.key(seed))))
      if method == 'finetune':
        pred = finetune_classifier(model, train_x, train_y, test_x, len(classes), seed)
      else:
        pred = ridge_classifier(features(model, train_x), train_y, features(model, test_x),
                                len(classes), seed)
      runs.append({'init': init, 'seed': seed, 'accuracy': score(pred),
                   'seconds': round(time.perf_counter() - started, 2)})
  majority = np.bincount(train_y, minlength=len(classes)).argmax()
  baselines = {'majority': score(np.full_like(test_y, majority)),
               '1nn_euclidean': score(nearest_neighbour(train_x, train_y, test_x))}
  return {'method': f'series_{method}', 'checkpoint': str(workdir), 'step': pretrained.step,
          'train': train_spec, 'test': test_spec, 'classes': len(classes),
          'train_size': len(train_y), 'test_size': len(test_y), 'runs': runs,
          'baselines': baselines, 'summary': _medians(runs)}


def _medians(runs) -> dict:
  inits = sorted({r['init'] for r in runs})
  return {i: float(np.median([r['accuracy'] for r in runs if r['init'] == i])) for i in inits}


# ---------------------------------------------------------------- forecasting


def seasonal_period(x_T: np.ndarray, longest: int) -> int:
  """The lag of the highest autocorrelation peak of the series' differences (a trend
  removed) after their first zero crossing (the dominant cycle), among lags below
  `longest`; 1 when the series has no cycle."""
  x_T = np.diff(x_T)
  x_T = x_T - x_T.mean()
  acf = np.correlate(x_T, x_T, 'full')[len(x_T) - 1:][:longest]
  negative = np.flatnonzero(acf < 0)
  if not len(negative):
    return 1
  start = negative[0]
  return int(start + acf[start:].argmax())


def rolling_forecasts(model, values_TxC, origins, window: int, horizon: int,
                      batch_size: int = 64) -> np.ndarray:
  """O x horizon x C forecasts from each origin o, reading values [o - window, o) and
  feeding each predicted patch back while sliding the window."""
  p = model.cfg.patch_len

  @nnx.jit
  def step(model, context_BxWxC):
    return model.next_patch(context_BxWxC)

  out = []
  for i in range(0, len(origins), batch_size):
    context = np.stack([values_TxC[o - window:o] for o in origins[i:i + batch_size]])
    predicted = []
    for _ in range(horizon // p):
      patch_BxPxC = np.asarray(step(model, context))
      predicted.append(patch_BxPxC)
      context = np.concatenate([context[:, p:], patch_BxPxC], 1)
    out.append(np.concatenate(predicted, 1))
  return np.concatenate(out)


def _errors(pred_OxHxC, truth_OxHxC) -> dict:
  diff = pred_OxHxC - truth_OxHxC
  return {'mse': float((diff ** 2).mean()), 'mae': float(np.abs(diff).mean())}


def forecast(workdir, horizon_patches: int = 2, period: int = 0) -> dict:
  """MSE and MAE of rolling forecasts on the run's held-out series (see the docstring)."""
  pretrained = loading.load(workdir)
  cfg, config = pretrained.model_cfg, pretrained.config
  if cfg.arch != 'patch_decoder':
    raise UserError(f'{workdir} holds a {cfg.arch}; forecasts come from a patch_decoder '
                    '(objective=next_patch)')
  data = config.data
  series = series_lib.load(data.path, cfg.patch_len)
  if len(series.values) != 1 or not data.eval_fraction:
    raise UserError(f'{data.path}: forecasts are scored on the held-out end of one long '
                    'series; the run must read one series with data.eval_fraction > 0')
  values_TxC = series.values[0]
  # seq_len - 1 patches: the last position of a training window predicts nothing, so its
  # position embedding never learned to forecast
  window, p = (data.seq_len - 1) * cfg.patch_len, cfg.patch_len
  horizon = horizon_patches * p
  held = series_lib.held_out_start(len(values_TxC), data.eval_fraction, window)
  period = period or seasonal_period(values_TxC[:held, 0], held // 2)
  # origins whose context and truth exist and whose truth lies in the held-out part
  first = max(held, window, period)
  origins = np.arange(first, len(values_TxC) - horizon + 1, p)
  if not len(origins):
    raise UserError(f'the held-out part of {data.path} ({len(values_TxC) - held} steps) is '
                    f'too short for a horizon of {horizon} steps; lower --horizon')
  truth = np.stack([values_TxC[o:o + horizon] for o in origins])
  model = rolling_forecasts(pretrained.model, values_TxC, origins, window, horizon)
  naive = np.stack([np.repeat(values_TxC[o - 1:o], horizon, 0) for o in origins])
  seasonal = np.stack([values_TxC[o - period + np.arange(horizon) % period] for o in origins])
  return {'method': 'series_forecast', 'checkpoint': str(workdir), 'step': pretrained.step,
          'data': data.path, 'held_out_from': int(held), 'origins': len(origins),
          'horizon': horizon, 'period': period,
          'scores': {'model': _errors(model, truth), 'naive': _errors(naive, truth),
                     'seasonal_naive': _errors(seasonal, truth)},
          'example': {'origin': int(origins[len(origins) // 2]),
                      'context': values_TxC[origins[len(origins) // 2] - window:
                                            origins[len(origins) // 2], 0].tolist(),
                      'truth': truth[len(origins) // 2, :, 0].tolist(),
                      'model': model[len(origins) // 2, :, 0].tolist(),
                      'seasonal_naive': seasonal[len(origins) // 2, :, 0].tolist()}}


# ---------------------------------------------------------------- anomalies


def auroc(labels_N, scores_N) -> float:
  """Area under the ROC curve: the chance that a random positive scores above a random
  negative (ties count half), from average ranks (Mann-Whitney U)."""
  labels_N, scores_N = np.asarray(labels_N, bool), np.asarray(scores_N, np.float64)
  order = np.argsort(scores_N, kind='stable')
  ranks = np.empty(len(scores_N))
  ranks[order] = np.arange(1, len(scores_N) + 1)
  for value in np.unique(scores_N[np.diff(np.sort(scores_N), prepend=np.nan) == 0]):
    tied = scores_N == value
    ranks[tied] = ranks[tied].mean()
  positives, negatives = labels_N.sum(), (~labels_N).sum()
  if not positives or not negatives:
    raise UserError('AUROC needs both normal and anomalous steps among the labels')
  return float((ranks[labels_N].sum() - positives * (positives + 1) / 2)
               / (positives * negatives))


def reconstruction_errors(model, values_NxTxC, rate: float, draws: int = 8, seed: int = 0,
                          batch_size: int = 64) -> np.ndarray:
  """N scores: the squared error of the patches a model rebuilds, in its normalised units.
  An auto-encoder rebuilds every clean patch from its code; a masked-patch encoder the
  masked ones, averaged over `draws` random masks of `rate` of the patches."""
  length = values_NxTxC.shape[1] // model.cfg.patch_len
  if model.cfg.arch == 'patch_autoencoder':
    @nnx.jit
    def rebuilt(model, values_BxTxC):
      error_BxLxPxC = (model.predict_patches(model({'values': values_BxTxC}))
                       - model.normalise(values_BxTxC)) ** 2
      return error_BxLxPxC.mean((1, 2, 3))

    return _in_batches(rebuilt, model, values_NxTxC, batch_size=batch_size)

  @nnx.jit
  def errors(model, values_BxTxC, rows_B, key):
    masked_BxL = series_objectives.mask_patches(key, rows_B, length, rate)
    hidden_BxLxH = model({'values': values_BxTxC, 'masked': masked_BxL})
    error_BxL = ((model.predict_patches(hidden_BxLxH) - model.normalise(values_BxTxC))
                 ** 2).mean((2, 3))
    return (error_BxL * masked_BxL).sum(1) / masked_BxL.sum(1)

  rows = np.arange(len(values_NxTxC))
  return np.mean([_in_batches(lambda m, v, r: errors(m, v, r, key), model, values_NxTxC, rows,
                              batch_size=batch_size)
                  for key in jax.random.split(jax.random.key(seed), draws)], axis=0)


def pca_errors(train_x, test_x, variance: float = 0.9) -> np.ndarray:
  """Squared reconstruction error of each test series by the principal components that keep
  `variance` of the training series' variance: the linear auto-encoder baseline."""
  a, b = train_x.reshape(len(train_x), -1), test_x.reshape(len(test_x), -1)
  mean = a.mean(0)
  _, s, vt = np.linalg.svd(a - mean, full_matrices=False)
  k = int(np.searchsorted(np.cumsum(s ** 2) / (s ** 2).sum(), variance)) + 1
  centred = b - mean
  return ((centred - centred @ vt[:k].T @ vt[:k]) ** 2).mean(1)


def anomaly(workdir, spec: str, period: int = 0, anomalous: tuple = ()) -> dict:
  """AUROC of anomaly scores on the labelled `spec`. A patch decoder scores each step of one
  series by the squared error of its one-patch forecast, against the naive and
  seasonal-naive forecasts' errors, and says whether each score's maximum falls within 100
  steps of a labelled anomaly (the UCR anomaly archive's own test). A patch encoder scores
  each series (or image) whose label is in `anomalous` against the rest by its
  reconstruction error, against PCA's and the distance to the nearest series it pretrained
  on."""
  pretrained = loading.load(workdir)
  cfg, data = pretrained.model_cfg, pretrained.config.data
  if cfg.arch in ('patch_encoder', 'patch_autoencoder'):
    return _anomalous_series(pretrained, workdir, spec, anomalous)
  if cfg.arch != 'patch_decoder':
    raise UserError(f'{workdir} holds a {cfg.arch}; anomaly scores come from a '
                    'patch_decoder (objective=next_patch), a patch_encoder (masked_patch) '
                    'or a patch_autoencoder (denoise)')
  series = series_lib.load(spec, cfg.patch_len)
  if len(series.values) != 1 or series.labels is None:
    raise UserError(f'{spec}: anomaly scores need one series with a label per step '
                    '(a CSV with an is_anomaly or label column)')
  values_TxC, labels_T = series.values[0], np.asarray(series.labels).astype(bool)
  window, p = (data.seq_len - 1) * cfg.patch_len, cfg.patch_len
  period = period or seasonal_period(values_TxC[:, 0], window)
  origins = np.arange(max(window, period + p), len(values_TxC) - p + 1, p)
  steps = (origins[:, None] + np.arange(p)).ravel()
  truth = values_TxC[steps]
  model = rolling_forecasts(pretrained.model, values_TxC, origins, window, p).reshape(
      truth.shape)
  scores_by = {'model': ((model - truth) ** 2).mean(1),
               'naive': ((values_TxC[np.repeat(origins - 1, p)] - truth) ** 2).mean(1),
               'seasonal_naive': ((values_TxC[steps - period] - truth) ** 2).mean(1)}
  labelled_steps = np.flatnonzero(labels_T)
  near = lambda score: bool(np.abs(labelled_steps - steps[score.argmax()]).min() <= 100)
  return {'method': 'series_anomaly', 'checkpoint': str(workdir), 'step': pretrained.step,
          'data': spec, 'scored_steps': len(steps), 'anomalous_steps': int(labels_T[steps].sum()),
          'period': period,
          'scores': {name: {'auroc': auroc(labels_T[steps], score), 'top_in_anomaly': near(score)}
                     for name, score in scores_by.items()}}


def _anomalous_series(pretrained, workdir, spec: str, anomalous: tuple) -> dict:
  cfg, config = pretrained.model_cfg, pretrained.config
  if not anomalous:
    raise UserError('a patch encoder scores whole series: name the anomalous labels of '
                    f'{spec} with --anomalous (e.g. --anomalous 9)')
  test = _labelled(spec, pretrained)
  wanted = {str(a) for a in anomalous}
  labels_N = np.array([str(label) in wanted for label in test.labels.tolist()])
  if not labels_N.any():
    raise UserError(f'{spec} has no series labelled {", ".join(sorted(wanted))}; its labels: '
                    f'{", ".join(sorted(map(str, set(test.labels.tolist())))[:10])}')
  test_x = _whole_patches(test.values, cfg, spec)
  normal = series_lib.load(config.data.path, cfg.patch_len,  # what pretraining read
                           images.Reading.of(config.data))
  normal_x = _whole_patches(normal.values, cfg, config.data.path)
  flat = lambda v: v.reshape(len(v), -1).astype(np.float64)
  scores_by = {'reconstruction': reconstruction_errors(pretrained.model, test_x,
                                                       config.mlm.rate),
               'pca': pca_errors(normal_x, test_x),
               'nearest_normal': squared_distances(flat(test_x), flat(normal_x)).min(1)}
  return {'method': 'series_anomaly_reconstruction', 'checkpoint': str(workdir),
          'model': cfg.arch,
          'step': pretrained.step, 'data': spec, 'normal': config.data.path,
          'anomalous_labels': sorted(wanted), 'scored': len(labels_N),
          'anomalous': int(labels_N.sum()),
          'scores': {name: {'auroc': auroc(labels_N, score)} for name, score in scores_by.items()}}


# ---------------------------------------------------------------- reports


def markdown(results: dict) -> str:
  if results['method'] in ('series_ridge', 'series_finetune'):
    how = 'fine-tuned' if results['method'] == 'series_finetune' else 'ridge probe'
    lines = [f"# Classification ({how}): {results['test']} ({results['classes']} classes, "
             f"{results['train_size']} training series, {results['test_size']} test series)",
             '', f"Checkpoint {results['checkpoint']} at step {results['step']}.", '',
             '| features | test accuracy (median of seeds) | seeds |', '| --- | --- | --- |']
    for init, median in results['summary'].items():
      each = ', '.join(f"{r['accuracy']:.3f}" for r in results['runs'] if r['init'] == init)
      lines.append(f'| {init} encoder, {how} | {median:.3f} | {each} |')
    for name, value in results['baselines'].items():
      lines.append(f'| {name} | {value:.3f} | |')
    return '\n'.join(lines) + '\n'
  s = results['scores']
  if results['method'] == 'series_anomaly_reconstruction':
    lines = [f"# Anomaly scores: {results['data']}", '',
             f"Checkpoint {results['checkpoint']} at step {results['step']}, pretrained on "
             f"{results['normal']}; {results['scored']} series scored, {results['anomalous']} "
             f"of them anomalous (labels {', '.join(results['anomalous_labels'])}).", '',
             '| score | AUROC |', '| --- | --- |']
    names = {'reconstruction': f"the {results['model']}'s reconstruction error",
             'pca': 'PCA reconstruction error (90 % of the variance)',
             'nearest_normal': 'distance to the nearest pretraining series'}
    lines += [f"| {text} | {s[name]['auroc']:.3f} |" for name, text in names.items()]
    return '\n'.join(lines) + '\n'
  if results['method'] == 'series_anomaly':
    lines = [f"# Anomaly scores: {results['data']}", '',
             f"Checkpoint {results['checkpoint']} at step {results['step']}; "
             f"{results['scored_steps']} steps scored, {results['anomalous_steps']} of them "
             f"labelled anomalous; seasonal period {results['period']}.", '',
             '| score: squared error of | AUROC | top score within 100 steps of the anomaly |',
             '| --- | --- | --- |']
    lines += [f"| {name} forecast | {v['auroc']:.3f} | {'yes' if v['top_in_anomaly'] else 'no'} |"
              for name, v in s.items()]
    return '\n'.join(lines) + '\n'
  lines = [f"# Forecasts: {results['data']}", '',
           f"Checkpoint {results['checkpoint']} at step {results['step']}; "
           f"{results['origins']} origins from step {results['held_out_from']} on (held out "
           f"from pretraining), horizon {results['horizon']} steps, seasonal period "
           f"{results['period']}.", '', '| forecast | MSE | MAE |', '| --- | --- | --- |']
  lines += [f"| {name} | {v['mse']:.4g} | {v['mae']:.4g} |" for name, v in s.items()]
  return '\n'.join(lines) + '\n'


def plot_forecast(results: dict, out) -> paths.Path:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  ex = results['example']
  context, horizon = len(ex['context']), len(ex['truth'])
  fig, ax = plt.subplots(figsize=(8, 3.5))
  ax.plot(range(context), ex['context'], color='0.4', label='context')
  after = range(context, context + horizon)
  ax.plot(after, ex['truth'], color='black', label='truth')
  ax.plot(after, ex['model'], color='tab:blue', label='patch decoder')
  ax.plot(after, ex['seasonal_naive'], color='tab:orange', ls='--', label='seasonal naive')
  ax.axvline(context - 0.5, color='0.7', lw=0.8)
  ax.set_xlabel(f"steps (origin {ex['origin']} of {results['data'].split('/')[-1]})")
  ax.set_title(f"One forecast of {horizon} steps, held-out part of the series")
  ax.legend(loc='best', fontsize=8)
  saved = paths.save_figure(fig, out)
  plt.close(fig)
  return saved


def write(results: dict, out) -> list[paths.Path]:
  """results.json, report.md (and forecast.png) in folder `out`."""
  out = paths.path(out)
  out.mkdir(parents=True, exist_ok=True)
  written = []
  for name, text in (('results.json', json.dumps(results, indent=1) + '\n'),
                     ('report.md', markdown(results))):
    paths.write_whole(out / name, text)
    written.append(out / name)
  if results['method'] == 'series_forecast':
    written.append(plot_forecast(results, out / 'forecast.png'))
  return written
