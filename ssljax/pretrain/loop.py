"""The pretraining loop: data, strategy, checkpoints, metrics, hooks, preemption.

`pretrain(config, workdir)` starts a run, or continues the one in `workdir` exactly from its
latest checkpoint (batches, masks, dropout, optimizer state). The loop dispatches step t and
only then reads step t-1's metrics, so the host never stalls the device; a non-finite loss
stops the run before anything after the last good checkpoint is saved. Everything periodic
(logging, checkpoints, evaluation, hooks) is decided by one `due(step, every, last)`.
What a run must satisfy before its first step is checked by `preflight`, where each fact is
first known; this module reads the data, builds or restores the state, and runs the steps.
"""

import collections
import contextlib
import dataclasses
import functools
import logging
import math
import signal
import sys
import tempfile
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm
from flax import nnx
from jax.experimental import multihost_utils

from ssljax import checkpoint, config as config_lib, models, paths, pretrained, tokenizers
from ssljax.data import batches as batches_lib, corpus, examples, prepared, series
from ssljax.errors import Interrupted, NonFiniteLoss, UserError
from ssljax.pretrain import (
  budget,
  lock,
  metrics as metrics_lib,
  optimizer,
  parallel,
  preflight,
  profile,
  step as step_lib,
  wandb_log,
)
from ssljax.pretrain.hooks import Hook, HookInfo
from ssljax.pretrain.state import TrainState

log = logging.getLogger(__name__)

# model keys that train.init_from leaves to the config; the rest come from the source.
RUN_MODEL_KEYS = ('dropout_rate', 'attention_dropout_rate', 'remat', 'dtype')


def due(step: int, every: int, last: int | None = None) -> bool:
  """True at multiples of `every` (0 = never) and at step `last`."""
  return bool(every) and step % every == 0 or step == last


@dataclasses.dataclass
class Run:
  """What a pretraining run is made of, built once from the config."""
  config: ml_collections.ConfigDict
  workdir: paths.Path
  tokenizer: tokenizers.Tokenizer | None  # None for series (data.source=series)
  model_cfg: models.ModelConfig
  graphdef: nnx.GraphDef
  batches: batches_lib.Batches
  eval_batches: list[dict[str, np.ndarray]]
  strategy: parallel.Jit | parallel.Pmap
  manager: ocp.CheckpointManager
  # The learning-rate schedule's segments, [from_step, to_step, how]: the first is the run's
  # own (how ''), each later one a change of train.steps (how: train.extend).
  schedule: list[list]
  init_params: dict | None = None  # train.init_from's parameters, for a fresh start


def load_tokenizer(config, workdir: paths.Path, documents,
                   source: pretrained.Pretrained | None = None,
                   prepared_with: tokenizers.Tokenizer | None = None) -> tokenizers.Tokenizer:
  """The run's tokenizer: the one saved in workdir, the init_from source's, tokenizer.path,
  the one a prepared corpus was encoded with (`prepared_with`), or one trained now on
  `documents`.

  The workdir's tokenizer is the run's only once the run has saved a checkpoint (its
  metadata holds the same tokenizer); one left by a run that never checkpointed is ignored
  and replaced, so a fixed corpus or tokenizer.vocab_size takes effect.
  """
  saved = [workdir / name for name in ('tokenizer.model', 'tokenizer.json')
           if (workdir / name).exists()]
  if saved and checkpoint.held(workdir):
    return tokenizers.load(workdir)
  if saved:
    log.warning('ignoring %s: left by a run that saved no checkpoint; using the configured '
                'tokenizer', ', '.join(map(str, saved)))
    if jax.process_index() == 0:
      for leftover in saved:
        leftover.unlink()
  if source is not None:
    tokenizer = source.tokenizer
  elif config.tokenizer.path:
    tokenizer = tokenizers.load(config.tokenizer.path)
  elif prepared_with is not None:
    tokenizer = prepared_with
  else:
    with tempfile.TemporaryDirectory() as tmp:
      tokenizer = tokenizers.train(documents, config.tokenizer.vocab_size,
                                   paths.path(tmp) / 'tokenizer', config.tokenizer.model_type)
  if jax.process_index() == 0:
    with paths.staged(workdir) as stage:  # written whole: a crash leaves no torn tokenizer
      tokenizer.save(stage)
  return tokenizer


def init_source(config, init: pretrained.Pretrained | None
                ) -> tuple[ml_collections.ConfigDict, pretrained.Pretrained | None]:
  """(config, source) for train.init_from: a copy of the config whose model section is the
  source's architecture (dropout, remat and dtype stay as configured), and the source, `init`,
  which the caller loaded (`inference.loading.init_from(config)`)."""
  if not config.train.init_from:
    return config, None
  if init is None:
    raise UserError(f'train.init_from={config.train.init_from} is set but no model was '
                    'passed: call pretrain(config, workdir, init=ssljax.inference.loading.'
                    'init_from(config)), as `ssljax pretrain` does')
  source = init
  config = ml_collections.ConfigDict(config.to_dict())
  for field in dataclasses.fields(source.model_cfg):
    if field.name not in RUN_MODEL_KEYS:
      config.model[field.name] = getattr(source.model_cfg, field.name)
  config_lib.validate(config)
  return config, source


def corpus_examples(config, workdir: paths.Path, source: pretrained.Pretrained | None):
  """(tokenizer, training examples, held-out examples or None) of the corpus `data.*`
  names: a folder `ssljax prepare` wrote, read lazily, or documents read into memory."""
  data, seed = config.data, config.train.seed
  if data.source == 'series':  # arrays, no tokenizer
    return (None, *series.examples(data, config.model.patch_len, seed))
  if data.source == 'prepared':
    folder = prepared.open_folder(data.path)
    tokenizer = load_tokenizer(config, workdir, None, source, prepared_with=folder.tokenizer)
    origin = (f'train.init_from {config.train.init_from}' if source is not None else
              f'tokenizer.path {config.tokenizer.path}' if config.tokenizer.path else
              f'the tokenizer of the run in {workdir}')
    prepared.check_tokenizer(folder, tokenizer, origin)
    if (tokenizer.vocab_size != config.tokenizer.vocab_size and not config.tokenizer.path
        and source is None and jax.process_index() == 0):
      log.warning('tokenizer.vocab_size=%d is not used: %s was prepared with a tokenizer of '
                  '%d pieces, which the run takes', config.tokenizer.vocab_size, data.path,
                  tokenizer.vocab_size)
    cap = config.model.max_docs_per_row
    return (tokenizer, folder.examples('train', config.objective, data.seq_len, seed, cap),
            folder.examples('eval', config.objective, data.seq_len, seed + 1, cap))
  if data.source == 'embedded' and jax.process_count() > 1 and jax.process_index() == 0:
    log.warning('data.source=embedded on %d hosts: every host trains on the demo corpus '
                "(Python's documentation, 0.3 M characters); prepare a real one with ssljax "
                'prepare and set data.source=prepared data.path=gs://...', jax.process_count())
  documents = corpus.load_documents(data)
  train_docs, eval_docs = corpus.split_documents(documents, data.eval_fraction, seed)
  preflight.held_out(config, documents, eval_docs)
  tokenizer = load_tokenizer(config, workdir, train_docs, source)
  build = lambda docs, s: examples.build_examples(tokenizer.encode(docs), tokenizer,
                                                  config.objective, data.seq_len, s,
                                                  config.model.max_docs_per_row)
  return tokenizer, build(train_docs, seed), build(eval_docs, seed + 1) if eval_docs else None


def setup(config, workdir, init: pretrained.Pretrained | None = None) -> Run:
  """The run of `config` in `workdir`; `init` is train.init_from's model, loaded."""
  workdir = paths.path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  config, source = init_source(config, init)
  seed = config.train.seed
  tokenizer, train_examples, eval_examples = corpus_examples(config, workdir, source)
  if tokenizer is None:  # series: the model reads the data's channels
    config = with_channels(config, train_examples.channels)
  model_cfg = models.ModelConfig.from_config(
      config.model, vocab_size=config.model.vocab_size or (tokenizer.vocab_size if tokenizer
                                                           else 0))
  preflight.vocabulary(model_cfg.vocab_size, tokenizer)
  batches = batches_lib.Batches(train_examples, config.train.batch_size, seed,
                                jax.process_index(), jax.process_count())
  eval_batches = (batches_lib.eval_batches(
      eval_examples, config.train.batch_size // jax.process_count(), config.train.eval_batches)
                  if eval_examples else [])
  graphdef, abstract_params = models.abstract(model_cfg)
  manager = checkpoint.manager(workdir, config.train.keep_checkpoints)
  try:
    saved = checkpoint.metas(manager)
    preflight.resumable(config, saved, workdir)
    segments = schedule_segments(config, workdir, next(
        ((step, meta) for step, meta in saved.items() if meta is not None), None))
  except BaseException:
    manager.close()
    raise
  tx = optimizer.build(config.optimizer, *optimizer.from_segments(segments))
  spec = step_lib.build_spec(config, graphdef, tx,
                             step_lib.vocab_ids(tokenizer) if tokenizer is not None else {})
  strategy = parallel.STRATEGIES[config.parallel.strategy](
      spec, parallel.init_fn(model_cfg, tx), abstract_params, config)
  init_params = (jax.device_get(nnx.to_pure_dict(nnx.state(source.model)))
                 if source is not None else None)
  return Run(config, workdir, tokenizer, model_cfg, graphdef, batches, eval_batches, strategy,
             manager, segments, init_params)


def with_channels(config, channels: int) -> ml_collections.ConfigDict:
  """A copy of `config` whose model.channels is the data's (0 asks for that)."""
  preflight.channels(config, channels)
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.channels = channels
  return config


def schedule_segments(config, workdir, newest: tuple[int, dict] | None) -> list[list]:
  """The schedule's segments (`Run.schedule`) for `config`, given the newest checkpoint's
  (step, metadata): its own segments, plus one from that step when train.steps changed.

  A silent rebuild for the new train.steps would jump the rate (base config: 6.1e-5 at step
  190 of 200, 3.3e-4 at step 210 of 300), so a change needs train.extend to say how it goes
  on.
  """
  steps = config.train.steps
  if newest is None or newest[0] == 0:  # a fresh run, or import-hf's step 0: none trained
    return [[0, steps, '']]
  step, meta = newest
  segments = meta.get('schedule') or [[0, meta['config']['train']['steps'], '']]
  end = segments[-1][1]
  if steps == end or step >= steps:  # the same schedule, or nothing left to train
    return segments
  how = config.train.extend
  if not how:
    raise UserError(
        f'{workdir} was trained to step {step} on a {end}-step schedule; train.steps={steps} '
        'changes it: set train.extend=decay (the rate falls from where it is to '
        'optimizer.end_learning_rate at the new end) or train.extend=rewarm (it warms up '
        f'again to optimizer.learning_rate, then decays), or use train.steps={end}')
  return segments + [[step, steps, how]]


def restore_or_init(run: Run) -> tuple[TrainState, int]:
  """(state, start step): the latest good checkpoint, or a fresh init.

  `setup` checked every step's metadata against the config.
  """
  restored = checkpoint.restore_latest(run.manager, run.strategy.abstract)
  if restored is None:
    preflight.fresh_start(run.config, run.workdir)
    return initial_state(run), 0
  step, state, data_state, _ = restored
  checkpoint.check_finite(state.params, f'{run.workdir}/checkpoints/{step}')
  if data_state:  # an imported checkpoint has none: its data starts at the beginning
    run.batches.set_state(data_state)
  return run.strategy.from_saved(state), step


def initial_state(run: Run) -> TrainState:
  """A fresh state from the seed, or from train.init_from's parameters (fresh optimizer)."""
  if run.init_params is None:
    return run.strategy.init(run.config.train.seed)
  state = TrainState.create(run.init_params, run.strategy.spec.tx)
  place = lambda x, a: jax.make_array_from_callback(a.shape, a.sharding,
                                                    lambda i: np.asarray(x)[i])
  return run.strategy.from_saved(jax.tree.map(place, state, run.strategy.abstract))


@contextlib.contextmanager
def preemption_flag():
  """SIGTERM/SIGINT set a flag instead of killing the run; the loop saves, then exits.

  With several processes JAX's preemption notifier owns SIGTERM (jax.distributed installs
  it): see `preempted`.
  """
  flag: dict[str, str | None] = {'signal': None}
  if jax.process_count() > 1:
    yield flag
    return
  handler = lambda signum, frame: flag.update(signal=signal.Signals(signum).name)
  previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield flag
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


def preempted(flag, step: int) -> str | None:
  """The signal that stops the run after `step`, or None.

  Hosts of a pod slice get SIGTERM at different moments; each saving its own step would
  leave a checkpoint no one can restore and hosts waiting on each other forever. JAX's
  preemption sync point makes every process answer True at the same step.
  """
  if jax.process_count() > 1:
    return 'SIGTERM' if multihost_utils.reached_preemption_sync_point(step) else None
  return flag['signal']


def _host(tree) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(tree).items()}


def evaluate(run: Run, state: TrainState) -> dict:
  """Mean held-out metrics over the fixed evaluation batches."""
  if not run.eval_batches:
    return {}
  totals = None
  for i, batch in enumerate(run.eval_batches):
    sums = run.strategy.evaluate(state, run.strategy.put_batch(batch), i)
    totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
  values = step_lib.summarize(jax.device_get(totals))
  return {f'eval_{k}': float(v) for k, v in values.items()}


def flops_per_token(run: Run) -> float:
  """Model FLOPs per token of this run's step (see `metrics.model_flops_per_token`)."""
  return metrics_lib.model_flops_per_token(run.config, run.strategy.abstract.params,
                                           run.model_cfg)


class _Throughput:
  """tokens/s and MFU since the logged step at least `WINDOW_STEPS` before this one.

  A step's metrics are read one dispatch late, at a delay that varies from step to step, so
  timing single steps (train.log_every=1) alternated 2.6k and 49k tokens/s (MFU 0.24 and
  4.5) on a pmap run whose mean was 6k; ten steps average the delay out."""
  WINDOW_STEPS = 10

  def __init__(self, tokens_per_step: int, flops_per_token: float, peak_flops: float):
    self.tokens_per_step, self.flops_per_token = tokens_per_step, flops_per_token
    self.peak = peak_flops
    self.marks: collections.deque = collections.deque()  # (time, step) of logged steps

  @classmethod
  def of(cls, run: Run) -> '_Throughput':
    devices = 1 if jax.default_backend() == 'cpu' else run.strategy.num_devices
    return cls(run.config.train.batch_size * run.config.data.seq_len, flops_per_token(run),
               metrics_lib.peak_flops() * devices)

  def update(self, step, now=None):
    if self.marks and self.marks[-1][1] == step:
      return {}
    now = time.perf_counter() if now is None else now
    self.marks.append((now, step))
    while len(self.marks) > 2 and step - self.marks[1][1] >= self.WINDOW_STEPS:
      self.marks.popleft()
    if len(self.marks) < 2:  # the first logged step: its time includes compiling
      return {}
    then, first = self.marks[0]
    tokens_per_s = self.tokens_per_step * (step - first) / (now - then)
    return {'tokens_per_s': tokens_per_s,
            'mfu': tokens_per_s * self.flops_per_token / self.peak}


def pretrain(config, workdir, *, init: pretrained.Pretrained | None = None,
             hooks: tuple[Hook, ...] = (), stop_after: int | None = None) -> dict:
  """Runs (or continues) pretraining; returns the last logged metrics.

  `init` is the model train.init_from names, loaded by the caller. `hooks` run at their
  cadence on the current parameters (see `Hook`). `stop_after` ends the loop early at that
  step with a checkpoint, as a preemption would.
  """
  started = time.perf_counter()
  parallel.initialize_distributed(config.distributed)
  with lock.held(workdir) as held:  # one writer per workdir
    return _pretrain(config, workdir, init, hooks, stop_after, started, held.check)


def _continuing(run: Run, start: int, learning_rate) -> str:
  """The start-up line of a run that has checkpoints: where it is, and what a change of
  train.steps does to the learning rate."""
  steps = run.config.train.steps
  if start >= steps:
    return (f'{run.workdir} is at step {start}; train.steps={steps}: nothing to train. Raise '
            'train.steps (with train.extend=decay or rewarm) to train further')
  line = f'{run.workdir}: continuing from step {start} of {steps}'
  begin, end, how = run.schedule[-1]
  if how:
    peak = (f'warms up to {run.config.optimizer.learning_rate:.3g}, then '
            if how == 'rewarm' else '')
    line += (f' (train.extend={how} from step {begin}: the learning rate, '
             f'{float(learning_rate(begin)):.3g} there, {peak}goes to '
             f'{float(learning_rate(end)):.3g} at step {end})')
  return line


def _pretrain(config, workdir, init, hooks, stop_after, started, still_held) -> dict:
  """The loop of `pretrain`; `still_held()` raises once another run took the workdir's
  lock, and is called before each write (checkpoints, metrics)."""
  if config.train.time_budget:
    config = budget.sized_config(config, workdir, functools.partial(setup, init=init), started)
  run = setup(config, workdir, init)
  config = run.config  # with train.init_from's model section
  train = config.train
  state, start = restore_or_init(run)
  lead = jax.process_index() == 0
  if lead:  # readable without a checkpoint: what this start of the run trains with
    paths.write_whole(run.workdir / 'config.json', config.to_json(indent=1) + '\n')
  writer = metrics_lib.Writer(run.workdir, enabled=lead, before_write=still_held,
                              tracker=wandb_log.start(config, run.workdir) if lead else None)
  meta = (checkpoint.make_meta(config, run.tokenizer.model_proto, run.tokenizer.kind,
                               run.schedule) if run.tokenizer is not None
          else checkpoint.make_meta(config, b'', 'none', run.schedule))
  learning_rate = optimizer.schedule(config.optimizer, *optimizer.from_segments(run.schedule))
  if lead and start:
    print(_continuing(run, start, learning_rate), file=sys.stderr, flush=True)
  throughput = _Throughput.of(run)
  bar = tqdm.tqdm(total=train.steps, initial=start, disable=not (lead and train.progress),
                  unit='step', dynamic_ncols=True)
  last: dict[str, float] = {}
  pending: collections.deque = collections.deque()
  saved_step = start
  interrupted = None  # what a Ctrl-C that stopped the loop says
  window = (profile.Window(run.workdir, train.profile_from, train.profile_steps)
            if train.profile_steps and lead else None)

  def record(step, values):
    nonlocal last
    writer.write(step, values)
    last |= values

  def drain(through: int, always: int | None):
    """Reads the dispatched steps' metrics up to `through`: stops on a non-finite loss
    (before anything after the last good checkpoint is saved), logs those that are due."""
    nonlocal last
    while pending and pending[0][0] <= through:
      step, step_metrics = pending.popleft()
      values = _host(step_metrics)
      if not (math.isfinite(values['loss']) and math.isfinite(values['grad_norm'])):
        raise NonFiniteLoss(str(run.workdir), step, values['loss'], values['grad_norm'],
                            start, saved_step)
      if due(step, train.log_every, always):
        values |= throughput.update(step)
        values['learning_rate'] = float(learning_rate(step - 1))
        writer.write(step, values)
        last = values
        bar.set_postfix({k: f'{values[k]:.4g}' for k in ('loss', 'tokens_per_s', 'mfu')
                         if k in values})

  # The signal handlers stay until the last save is written: a second Ctrl-C during it is
  # ignored instead of cutting it short.
  with preemption_flag() as flag:
    try:
      for step in range(start, train.steps):
        batch = run.strategy.put_batch(next(run.batches))
        state, step_metrics = run.strategy.step(state, batch)
        done = step + 1
        pending.append((done, step_metrics))
        bar.update(1)
        if window and (said := window.at(done, state)):
          bar.write(said)
        signal_name = preempted(flag, done)
        stop = (signal_name or (stop_after is not None and done >= stop_after) or
                (due(done, train.log_every) and budget.spent(started, train.time_budget)))
        save = stop or due(done, train.checkpoint_every, train.steps)
        # Step `done` is dispatched: read the ones before it, and itself if it is saved.
        drain(through=done if save else done - 1, always=done if save else None)
        if save:
          still_held()
          checkpoint.save(run.manager, done, run.strategy.to_save(state),
                          run.batches.get_state(), meta)
          saved_step = done
        if due(done, train.eval_every, train.steps):
          record(done, evaluate(run, state))
        for hook in hooks:
          if due(done, hook.every, train.steps):
            # (series runs have no hooks: config.validate refuses them, so a tokenizer is here)
            record(done, hook.fn(HookInfo(done, run.strategy.to_save(state).params,
                                          run.graphdef, run.model_cfg,
                                          run.tokenizer)))  # type: ignore[arg-type]
        if stop:
          if done < train.steps and stop_after is None:
            why = signal_name or f'time budget of {train.time_budget} min spent'
            said = f'at step {done}: checkpoint saved; rerun the same command to continue'
            if why == 'SIGINT':
              interrupted = f'interrupted {said}'
            else:
              bar.write(f'{why} {said}')
          break
    finally:
      bar.close()
      run.manager.wait_until_finished()
      run.manager.close()
      writer.close()
  if interrupted:  # Ctrl-C: the caller stops as from a KeyboardInterrupt (the CLI: exit 130)
    raise Interrupted(interrupted)
  return last
