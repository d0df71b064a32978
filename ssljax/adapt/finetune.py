"""Fine-tuning: the whole model and a task head, from pretrained or from random weights.

The recipe is BERT's: AdamW without decay on LayerNorm parameters and biases, linear
warmup then linear decay to zero, gradient clipping at 1, and optionally layer-wise
learning-rate decay, which scales each update by llrd ** (blocks between it and the head)
so that the embeddings move least. After every epoch the model is scored on a validation
split carved from train and the best epoch's parameters are kept; with `lr=auto` (the
default) the same is done at each rate of LR_GRID and the best (rate, epoch) wins. The
evaluation split is only ever scored, never used to choose.
"""

import dataclasses
import functools
import json
import time
import zipfile
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from ssljax import checkpoint, models, paths, progress, tokenizers
from ssljax.adapt import probe
from ssljax.adapt.results import Trial
from ssljax.errors import UserError
from ssljax.inference import encoding
from ssljax.models import heads
from ssljax.models.layers import Dense
from ssljax.pretrain import optimizer
from ssljax.tasks import kinds, readers, task_rows


def head_bias(model, kind: str, pooling: str) -> bool:
  """Whether the task head has a bias: not on a decoder's last token, where transformers'
  GPT-2, GPT-NeoX and Llama sequence classifiers score without one, so that it exports
  exactly (`interop.hf_heads`)."""
  return kinds.KINDS[kind].per_position or pooling != 'last' or model.cfg.arch != 'gpt'


class Tuned(nnx.Module):
  """An encoder (or decoder) with a task head on its pooled output or on every position:
  one linear layer, after a `heads.Transform` where `mlp` (`finetune.head=mlp`); `bias`
  None: `head_bias` (a model saved with another head passes its own)."""

  def __init__(self, model, spec, pooling, *, rngs, bias: bool | None = None,
               mlp: bool = False):
    kind = kinds.KINDS[spec.kind]
    if not kind.per_position:
      encoding.check_pooling(model, pooling)
    self.model = model
    with nnx.use_eager_sharding(False):  # as models.build: unsharded, placed with the model
      self.transform = heads.Transform(model.cfg, rngs=rngs) if mlp else None
    self.head = kinds.linear(model.cfg.hidden_size, kind.outputs(spec), rngs,
                             head_bias(model, spec.kind, pooling) if bias is None else bias)
    self.pooling = pooling
    self.per_position = kind.per_position

  def __call__(self, batch, key=None):
    inputs = {k: batch[k] for k in task_rows.INPUTS}
    hidden_BxLxH = self.model(inputs, key=key)
    if not self.per_position:
      hidden_BxLxH = encoding.pool(self.model, hidden_BxLxH, inputs['doc_ids'], self.pooling)
    if self.transform is not None:
      hidden_BxLxH = self.transform(hidden_BxLxH)
    return self.head(hidden_BxLxH).astype(jnp.float32)




def fresh_pooler(model_cfg, rngs: nnx.Rngs) -> dict:
  """A newly drawn [CLS] pooler's weights, as `nnx.to_pure_dict` gives them."""
  with nnx.use_eager_sharding(False):  # as models.build: unsharded, placed with the model
    pooler = Dense(model_cfg.hidden_size, model_cfg.hidden_size, ('embed', None), model_cfg,
                   rngs=rngs)
  return nnx.to_pure_dict(nnx.state(pooler))


def mlm_transform(model_params: dict, drawn: dict) -> dict:
  """Where a task head's `heads.Transform` starts: the model's MLM head transform (dense +
  activation + norm, the same shape where model.embed_size is the hidden size), as
  transformers starts ModernBERT's task heads from its masked-LM checkpoint's `head`; a
  model without one (a decoder, ALBERT's narrower head) keeps the `drawn` one."""
  mlm = model_params.get('mlm_head', {})
  source = {'dense': mlm.get('transform'), 'norm': mlm.get('norm')}
  same = all(source[k] is not None and jax.tree.map(np.shape, source[k]) ==
             jax.tree.map(np.shape, drawn[k]) for k in drawn)
  return source if same else drawn


def layer_scales(params, num_layers: int, decay: float):
  """llrd ** (num_layers + 1 - depth) per parameter: the embeddings have depth 0, block i
  depth i + 1 (ALBERT's shared block the top one's), everything above num_layers + 1."""

  def scale(path, leaf):
    keys: list = [getattr(k, 'key', None) for k in path]
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


# The rates `finetune.lr=auto` tries, each for finetune.epochs with the best epoch kept, as
# GLUE papers choose (BERT: {2,3,4,5}e-5 for BERT-base). Small models need larger rates:
# 1e-4..3e-4 suits 4- to 6-layer models such as all-MiniLM-L6-v2 (22 M parameters; Turc et
# al. 2019 tune compact BERTs over 3e-5..3e-4) and 1e-3 a 1.5 M-parameter model, so half a
# decade apart from 3e-5 to 1e-3 covers both ends. Searched as a grid, the cost is one
# fine-tune per rate, 4 times the time of a fixed rate per seed; by halving, about 2.3 times.
LR_GRID = (3e-5, 1e-4, 3e-4, 1e-3)
# The width LR_GRID is for. Adam's best rate grows as a model narrows (about as 1 / width,
# the muP rule for hidden weights), and the grid's top, 1e-3, was the choice of every seed of
# both inits for the 128-wide demo model on POS and SST-2; 3e-3 won when offered
# (docs/pretraining.md). Below this width the grid is scaled by GRID_WIDTH / hidden_size:
# 128 wide tries 9e-5 .. 3e-3.
GRID_WIDTH = 384
# How the rates are searched: `halving` (successive halving, as Hyperband and ASHA do: after
# each epoch but the last, the rates in neither the better half by validation score nor the
# better half by validation loss stop; 4 rates over 3 epochs cost 7 to 12 epochs, 8 on
# MiniLM SST-2) or `grid` (every rate for every epoch).
SEARCHES = ('halving', 'grid')


def learning_rates(value, hidden_size: int = GRID_WIDTH) -> tuple[float, ...]:
  """The rates to try: for 'auto' LR_GRID, scaled up by GRID_WIDTH / hidden_size for a
  model narrower than GRID_WIDTH; else the number given, or a comma-separated list of them
  (a grid of one's own)."""
  if isinstance(value, str) and value.strip().lower() == 'auto':
    scale = max(1.0, GRID_WIDTH / hidden_size)
    return tuple(float(f'{lr * scale:.3g}') for lr in LR_GRID)
  items = value.split(',') if isinstance(value, str) else [value]
  try:
    rates = tuple(float(item) for item in items)
  except (TypeError, ValueError):
    raise UserError(f'finetune.lr={value!r} is neither auto nor a number such as 3e-4 (or '
                    'numbers split by commas)') from None
  if not all(lr > 0 for lr in rates):
    raise UserError(f'finetune.lr={value}: a learning rate is positive (or auto)')
  return rates


def make_optimizer(settings, total_steps: int, params, num_layers: int, lr=None):
  """The optimizer of `ssljax pretrain` with the fine-tuning recipe's settings; peak rate
  `lr` (default settings.lr)."""
  recipe = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=float(settings.lr if lr is None else lr), warmup_steps=0,
      warmup_fraction=float(settings.warmup), decay='linear', end_learning_rate=0.0,
      weight_decay=settings.weight_decay, b1=0.9, b2=0.999, eps=1e-6, clip_norm=1.0))
  tx = optimizer.build(recipe, total_steps)
  if settings.llrd == 1.0:
    return tx
  scales = layer_scales(params, num_layers, settings.llrd)
  return optax.chain(tx, optax.stateless(
      lambda updates, _: jax.tree.map(jnp.multiply, updates, scales)))


def _train_step(graphdef, tx, loss_fn, params, opt_state, batch, key, lr):
  """One update. `tx` peaks at rate 1 and `lr` scales its update, so every rate of the grid
  runs one compiled step: AdamW's update is linear in its rate, weight decay included."""

  def loss(p):
    total, count = loss_fn(nnx.merge(graphdef, p)(batch, key=key), batch)
    return total / jnp.maximum(count, 1)

  value, grads = jax.value_and_grad(loss)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  updates = jax.tree.map(lambda u: (u * lr).astype(u.dtype), updates)
  return optax.apply_updates(params, updates), opt_state, value


def outputs(graphdef, params, batch):
  """The head's outputs for a batch: jit it with the graphdef bound."""
  return nnx.merge(graphdef, params)(batch)


@dataclasses.dataclass
class _Seed:
  """What every learning rate of one seed shares: rows, initial weights, compiled steps."""
  spec: readers.TaskSpec
  settings: ml_collections.ConfigDict
  seed: int
  rows_of: Callable  # examples -> Rows
  fit_rows: task_rows.Rows
  val_rows: task_rows.Rows
  val_examples: list
  init: dict  # the weights every rate starts from
  epochs: int  # settings.epochs, or more to reach settings.min_steps (`epochs_for`)
  order: np.ndarray  # steps x batch rows of fit_rows
  compiled: '_Compiled'

  @property
  def steps_per_epoch(self) -> int:
    return len(self.order) // self.epochs

  def outputs(self, params, rows):
    return kinds.collect(lambda batch: self.compiled.forward(params, batch), rows,
                         self.settings.batch_size, self.spec)

  def score(self, params, rows, examples, out=None) -> dict:
    out = self.outputs(params, rows) if out is None else out
    kind = kinds.KINDS[self.spec.kind]
    return kinds.score(self.spec, examples, kind.decode(self.spec, rows, out, examples))

  def validate(self, params) -> tuple[dict, float]:
    """kinds.score and the mean loss on the validation split carved from train."""
    out = self.outputs(params, self.val_rows)
    total, count = kinds.KINDS[self.spec.kind].loss(jnp.asarray(out), _targets(self.val_rows))
    return (self.score(params, self.val_rows, self.val_examples, out),
            float(total / max(int(count), 1)))


def _targets(rows):
  """The loss targets lined up with kinds.collect's outputs (token tasks: one per word)."""
  if rows.words is None:
    return rows.arrays
  return {'labels': rows.arrays['labels'][rows.words[:, 0], rows.words[:, 1]]}


def _prepare(model, tokenizer, spec, train_examples, settings, seed) -> _Seed:
  fit_index, val_index = probe.carve(len(train_examples), settings.val_fraction, seed)
  rows_of = functools.partial(task_rows.build, tokenizer, spec,
                              max_len=task_rows.max_length(model.cfg, settings.max_len),
                              doc_stride=settings.doc_stride)
  fit_rows = rows_of([train_examples[i] for i in fit_index])
  val_examples = [train_examples[i] for i in val_index]
  rngs = nnx.Rngs(seed)
  graphdef, state = nnx.split(Tuned(model, spec, settings.pooling, rngs=rngs,
                                    mlp=settings.head == 'mlp'))
  init = nnx.to_pure_dict(state)
  if settings.pooler == 'fresh' and settings.pooling == 'cls':
    init['model']['pooler'] = fresh_pooler(model.cfg, rngs)
  if settings.head == 'mlp':
    init['transform'] = mlm_transform(init['model'], init['transform'])
  batch = min(settings.batch_size, len(fit_rows))
  epochs = epochs_for(settings.epochs, settings.min_steps, -(-len(fit_rows) // batch))
  order = task_rows.epoch_order(len(fit_rows), batch, epochs, seed,
                               fit_rows.lengths() if settings.bucket_by_length else None)
  compiled = _compiled(graphdef, spec.kind, settings, len(order), init, model.cfg.num_layers)
  return _Seed(spec, settings, seed, rows_of, fit_rows, rows_of(val_examples), val_examples, init,
               epochs, order, compiled)


def epochs_for(epochs: int, min_steps: int, steps_per_epoch: int) -> int:
  """`epochs`, or more when that many passes over a small training set make fewer than
  `min_steps` updates: with 1,000 examples 3 epochs are 90 steps, too few for either init to
  learn (few-sample BERT fine-tuning needs more updates: Mosbach et al. 2021, Zhang et al.
  2021). The best epoch on validation is kept, so a longer run can only choose more."""
  return max(epochs, -(-min_steps // max(steps_per_epoch, 1)))


# Jitted steps by everything they depend on. Seeds, inits (pretrained and scratch share one
# graph) and rates of a run reuse one, so a shape compiles once per run, not once per seed
# and init: a small run's first epoch ran at 3-16 examples/s against 100-300 afterwards.
@dataclasses.dataclass
class _Compiled:
  tx: optax.GradientTransformation
  step: Callable
  forward: Callable
  widths: set = dataclasses.field(default_factory=set)  # batch widths the step has run


_COMPILED: dict[tuple, _Compiled] = {}
_COMPILED_KEPT = 8


def _compiled(graphdef, kind: str, settings, total_steps: int, params, num_layers: int):
  """The optimizer and jitted steps for this graph, task kind and recipe; `params` gives
  the tree layer-wise rate decay scales (its structure, not its values)."""
  key = (graphdef, kind, total_steps, float(settings.warmup), float(settings.weight_decay),
         float(settings.llrd), num_layers)
  if key not in _COMPILED:
    while len(_COMPILED) >= _COMPILED_KEPT:
      del _COMPILED[next(iter(_COMPILED))]
    tx = make_optimizer(settings, total_steps, params, num_layers, lr=1.0)
    step = jax.jit(functools.partial(_train_step, graphdef, tx, kinds.KINDS[kind].loss),
                   donate_argnums=(0, 1))
    _COMPILED[key] = _Compiled(tx, step, jax.jit(functools.partial(outputs, graphdef)))
  return _COMPILED[key]


def trials_per_epoch(rates: int, epochs: int, search: str) -> list[int]:
  """How many rates train in each epoch: all of them (`grid`), or at least the better half
  of those left after each epoch but the last (`halving`: 4 rates over 3 epochs train 4, 2
  and 1, more when `survivors` keeps ties or a lower loss)."""
  if search == 'grid':
    return [rates] * epochs
  counts = [rates]
  for _ in range(epochs - 1):
    counts.append(-(-counts[-1] // 2))
  return counts


def check_search(search: str) -> str:
  if search not in SEARCHES:
    raise UserError(f'finetune.search={search!r} is not one of {", ".join(SEARCHES)}')
  return search


@dataclasses.dataclass(eq=False)
class _Trial:
  """One learning rate: its training state while it trains, its best epoch on validation
  (recorded as a `results.Trial`)."""
  index: int  # its place in the grid: equal scores go to the lower rate
  lr: float
  state: tuple | None = None  # (params, optimizer state) from its first epoch to its last
  curve: list = dataclasses.field(default_factory=list)
  losses: list = dataclasses.field(default_factory=list)
  rank: tuple = (-np.inf, -np.inf)  # (validation metric, -validation loss), the larger the better
  epoch: int = 0
  val: dict = dataclasses.field(default_factory=dict)  # its best epoch's scores ({}: none yet)
  val_loss: float = float('nan')
  low_loss: float = float('inf')  # the lowest validation loss of any epoch (NaN: inf)

  def key(self) -> tuple:
    return (self.rank, -self.index)


def _rank(result, val_loss, main) -> tuple:
  """The main metric, ties (common on small validation splits) to the lower loss; a
  diverged run (NaN) ranks last."""
  metric = result['metrics'][main]
  return (metric if np.isfinite(metric) else -np.inf,
          -val_loss if np.isfinite(val_loss) else -np.inf)


def _epoch(run: _Seed, trial: _Trial, epoch: int, start, bar) -> bool:
  """Trains `trial` through `epoch` (from run.init at its first) and validates; True when
  this epoch is the trial's best so far."""
  settings, main, steps_per_epoch = run.settings, run.spec.metrics[0], run.steps_per_epoch
  if trial.state is None:
    params = jax.tree.map(jnp.copy, run.init)  # the step donates its input
    trial.state = (params, run.compiled.tx.init(params))
    trial.curve = [{'epoch': 0, 'step': 0, f'val_{main}': start[0]['metrics'][main],
                    'val_loss': start[1]}]
  params, opt_state = trial.state
  key, clock = jax.random.key(run.seed), time.perf_counter()
  first = (epoch - 1) * steps_per_epoch
  for number, index in enumerate(run.order[first:first + steps_per_epoch], start=first + 1):
    batch = task_rows.gather(run.fit_rows, index)
    if (width := batch['input_ids'].shape[1]) not in run.compiled.widths:
      bar.set_postfix_str(f'compiling the step for rows of {width} tokens')
      run.compiled.widths.add(width)
    params, opt_state, loss = run.compiled.step(params, opt_state, batch,
                                                jax.random.fold_in(key, number),
                                                np.float32(trial.lr))
    trial.losses.append(loss)
    bar.update(1)
    if number % 10 == 0:
      bar.set_postfix(lr=progress.rate(trial.lr), epoch=f'{epoch}/{run.epochs}',
                      loss=f'{float(loss):.4g}')
  trial.state = (params, opt_state)
  train_loss = float(np.mean(trial.losses[-steps_per_epoch:]))
  seconds = time.perf_counter() - clock  # training only: compiling included, validating not
  speed = steps_per_epoch * run.order.shape[1] / seconds
  result, val_loss = run.validate(params)
  trial.curve.append({'epoch': epoch, 'step': first + steps_per_epoch, 'loss': train_loss,
                      f'val_{main}': result['metrics'][main], 'val_loss': val_loss,
                      'seconds': seconds, 'examples_per_s': speed})
  progress.line(settings, f'seed {run.seed} epoch {epoch}/{run.epochs} lr '
                f'{progress.rate(trial.lr)}: val {main} {result["metrics"][main]:.4f}, '
                f'val loss {val_loss:.4f}, loss {train_loss:.4f}, {speed:.0f} ex/s')
  trial.low_loss = min(trial.low_loss, val_loss if np.isfinite(val_loss) else np.inf)
  rank = _rank(result, val_loss, main)
  if trial.val and rank <= trial.rank:
    return False
  trial.rank, trial.epoch, trial.val, trial.val_loss = rank, epoch, result, val_loss
  return True


def survivors(alive: list[_Trial], count: int) -> list[_Trial]:
  """The `count` best by validation score so far (with any that tie the last of them: a tie
  is no evidence, and before any rate has learnt all tie), and the `count` best by lowest
  validation loss: after an epoch the loss often shows the rate that learns fastest before
  the score does (a tagger at 1e-3 scores below one at 1e-4 but has half its loss)."""
  ranked = sorted(alive, key=_Trial.key, reverse=True)
  floor = ranked[count - 1].rank[0]
  by_loss = sorted(alive, key=lambda t: (t.low_loss, t.index))[:count]
  return [t for t in alive if t.rank[0] >= floor or t in by_loss]


def _schedule(trials: list[_Trial], search: str, epochs: int, bar, steps_per_epoch: int):
  """(trial, epoch) in training order. `grid` trains one rate after another (one training
  state in memory); `halving` trains the rates side by side an epoch at a time and, after
  each epoch but the last, stops the worse half by their best validation score so far
  (`survivors`: the better half by score or by loss, so the bar's total may grow)."""
  if search == 'grid':
    for trial in trials:
      for epoch in range(1, epochs + 1):
        yield trial, epoch
      trial.state = None
    return
  alive = trials
  for epoch, count in enumerate(trials_per_epoch(len(trials), epochs, 'halving'), start=1):
    alive = survivors(alive, count)
    bar.total += (len(alive) - count) * steps_per_epoch
    for trial in trials:
      trial.state = trial.state if trial in alive else None
    for trial in alive:
      yield trial, epoch
  for trial in trials:
    trial.state = None


def finetune(model, tokenizer, spec, train_examples, evals: dict, settings, seed: int) -> dict:
  """Trains a copy of `model` and a new head on `train_examples` at each rate of settings.lr
  (one number, or LR_GRID for 'auto'; searched by settings.search); the rate and epoch best on a
  validation split carved from train are scored on each of `evals` ({name: examples}),
  which choose nothing."""
  if settings.epochs < 1:
    raise UserError(f'epochs={settings.epochs}: fine-tuning needs at least one epoch')
  rates = learning_rates(settings.lr, model.cfg.hidden_size)
  run = _prepare(model, tokenizer, spec, train_examples, settings, seed)
  start = run.validate(run.init)  # epoch 0: the same for every rate
  epochs = sum(trials_per_epoch(len(rates), run.epochs, check_search(settings.search)))
  bar = progress.bar(settings, epochs * run.steps_per_epoch, f'{spec.name} finetune seed {seed}')
  trials = [_Trial(i, lr) for i, lr in enumerate(rates)]
  best: _Trial | None = None
  best_key: tuple = ()
  for trial, epoch in _schedule(trials, settings.search, run.epochs, bar, run.steps_per_epoch):
    if _epoch(run, trial, epoch, start, bar) and (best is None or trial.key() > best_key):
      best, best_key = trial, trial.key()
      best_params = jax.tree.map(np.array, trial.state[0])  # only the best epoch's weights kept
  bar.close()
  assert best is not None  # epochs >= 1: some epoch of some rate was the best
  main = spec.metrics[0]
  return {'seed': seed, 'lr': best.lr, 'epoch': best.epoch, 'val': best.val['metrics'],
          'val_loss': best.val_loss, 'curve': best.curve,
          'losses': [float(v) for v in best.losses],
          'grid': [Trial(t.lr, t.epoch, main, t.val['metrics'][main], t.val_loss,
                         len(t.curve) - 1).to_json() for t in trials],
          'evals': {name: run.score(best_params, run.rows_of(examples), examples)
                    for name, examples in evals.items()},
          'params': best_params}


def save(directory, params, model_cfg, spec, settings, tokenizer) -> paths.Path:
  """Writes what `load` needs to predict: params.npz, meta.json and the tokenizer, staged
  and moved in whole (`paths.staged`), so a save that fails keeps the previous model."""
  directory = paths.path(directory)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  meta = {'model': model_cfg.__dict__, 'spec': spec.__dict__, 'pooling': settings.pooling,
          'head': settings.head, 'max_len': settings.max_len, 'doc_stride': settings.doc_stride,
          'tokenizer': tokenizer.kind}
  with paths.staged(directory) as stage:
    paths.save_npz(stage / 'params.npz',
                   **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat})
    (stage / 'meta.json').write_text(json.dumps(meta, indent=1))
    (stage / 'tokenizer.bin').write_bytes(tokenizer.model_proto)
  return directory


def load(directory):
  """(Tuned model, TaskSpec, meta, tokenizer) from a directory `save` wrote."""
  directory = paths.path(directory)
  if not (directory / 'meta.json').is_file():
    raise UserError(f'{directory} holds no fine-tuned model (meta.json); pass the model/ '
                    'folder that `ssljax finetune` writes in its workdir')
  try:
    meta = json.loads((directory / 'meta.json').read_text())
    fields: dict = {k: tuple(v) if isinstance(v, list) else v for k, v in meta['spec'].items()}
    spec = readers.TaskSpec(**fields)
    model_cfg = models.ModelConfig(**meta['model'])
    stored = paths.load_npz(directory / 'params.npz')
    # a decoder's last-token head had a bias before `head_bias`: such a model keeps it
    bias = True if "['head']['bias']" in stored else None
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Tuned(
        models.build(model_cfg, nnx.Rngs(0)), spec, meta['pooling'], rngs=nnx.Rngs(0),
        bias=bias, mlp=meta.get('head') == 'mlp')))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))
    for path, wanted in leaves:  # a tensor of another shape could still broadcast
      name = jax.tree_util.keystr(path)
      if name in stored and stored[name].shape != wanted.shape:
        raise UserError(f'{directory}/params.npz: {name} has shape {stored[name].shape}, '
                        f'the model in meta.json needs {wanted.shape}; run `ssljax finetune` '
                        'again to rewrite it')
    params = jax.tree_util.tree_unflatten(
        treedef, [stored[jax.tree_util.keystr(path)] for path, _ in leaves])
  except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as e:
    raise UserError(f'{directory} holds a truncated or invalid fine-tuned model '
                    f'({type(e).__name__}: {str(e)[:200]}); run `ssljax finetune` again to '
                    'rewrite it') from None
  checkpoint.check_finite(params, directory / 'params.npz')
  tokenizer = tokenizers.from_proto(meta['tokenizer'],
                                       (directory / 'tokenizer.bin').read_bytes(),
                                       origin=str(directory / 'tokenizer.bin'))
  return nnx.merge(graphdef, params), spec, meta, tokenizer
