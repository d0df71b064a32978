"""One adaptation run: a checkpoint, a task and a method over several seeds.

`run(pre, task, method, workdir, settings)` probes, fine-tunes or prompts the model of
`pre` (from `inference.loading.load`: an ssljax workdir, a checkpoint step or a Hugging Face
folder), from its pretrained weights, from random ones of the same architecture, or both,
and writes `workdir/results.json` (rewritten after every seed, so an interrupted run keeps
what it finished), `workdir/report.md` and PNG plots. Every split is scored with the
task's own metrics, and so is a trivial baseline (`baselines.py`) that the medians must
beat; model selection (epochs, learning rates, penalties) only ever sees a validation split
carved from train. `catalog.load_task` finds the task's examples; `suite.run_suite` runs
several tasks and methods.
"""

import dataclasses
import json
import logging
import time
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
from flax import nnx

from ssljax import config as config_lib, models, paths, progress, schema
from ssljax.adapt import fewshot, finetune, probe, report
from ssljax.adapt.results import SeedResult
from ssljax.adapt.settings import INITS, Settings
from ssljax.errors import UserError
from ssljax.inference import encoding
from ssljax.interop import families
from ssljax.tasks import baselines
from ssljax.tasks.catalog import Task

log = logging.getLogger(__name__)

METHODS = ('probe', 'finetune', 'fewshot')


def parse_shots(text) -> list[int]:
  """fewshot.shots: demonstrations per prompt, e.g. '0,1,4'."""
  try:
    values = [int(k) for k in str(text).split(',') if k.strip()]
  except ValueError:
    values = None
  if not values or min(values) < 0:
    raise UserError(f'fewshot.shots={text!r} must be whole numbers >= 0 split by commas, '
                    "e.g. '0,1,4'")
  return values


def defaults() -> ml_collections.ConfigDict:
  """Every key the adaptation commands read (`settings_lib.Settings`), with its default."""
  return schema.config_dict(Settings)


def load_settings(overrides=()) -> ml_collections.ConfigDict:
  """`defaults()` with `--set key=value` overrides, checked (`check_settings`)."""
  return check_settings(config_lib.override(defaults(), overrides))


def check_settings(s: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`s` itself once every value is one the commands take; else one line naming the key."""
  schema.check(Settings, s)
  parse_shots(s.fewshot.shots)
  finetune.learning_rates(s.finetune.lr)  # auto, or positive numbers split by commas
  finetune.check_search(s.finetune.search)
  return s


def method_settings(s, method: str, model_cfg: models.ModelConfig) -> ml_collections.ConfigDict:
  """The flat settings probe/finetune/fewshot read: the shared keys plus the method's own.
  A fine-tune's unset pooling and head are those of the task classes of the model's Hugging
  Face family (`interop.families`), so that the model it saves exports: cls for BERT,
  RoBERTa and ALBERT, last for a decoder, mean with ModernBERT's dense-activation-norm
  head for a ModernBERT-shaped encoder (the README demo's)."""
  family = families.FAMILIES[families.model_type_of(model_cfg)]
  pooling = s.pooling or (next(iter(family.poolings)) if method == 'finetune' else 'mean')
  shared = {k: s[k] for k in ('max_len', 'batch_size', 'val_fraction', 'doc_stride',
                               'progress')}
  own = s[method].to_dict() if method in s else {}
  if method == 'finetune' and not own['head']:
    own['head'] = 'mlp' if family.task_transform else 'linear'
  return ml_collections.ConfigDict(shared | own | {'pooling': pooling})


def _model(pre, init, seed):
  """The pretrained model, or a fresh one of its architecture drawn from `seed`."""
  if init == 'pretrained':
    return pre.model
  return models.build(pre.model_cfg, nnx.Rngs(seed))


def _probe_runs(pre, task, settings, inits, seeds, workdir) -> Iterator[SeedResult]:
  """Each (init, seed) fits a probe on the features of every block `probe.layer` names and
  keeps the one that scores best on validation (ties: the higher block); the same search for
  both inits. Pretrained features are cached on disk, keyed by the weights' digest."""
  fit = probe.ridge if settings.kind == 'ridge' else probe.linear
  blocks = probe.layers(settings.layer, pre.model.cfg.num_layers)
  main = task.spec.metrics[0]
  digest = probe.model_digest(pre.model)
  for init in inits:
    for seed in seeds:
      tried = []
      for block in blocks:
        model = encoding.truncate(_model(pre, init, seed), block)
        cache = workdir / 'features' if init == 'pretrained' else None
        extract = lambda examples: probe.extract(  # pylint: disable=cell-var-from-loop
            model, pre.tokenizer, task.spec, examples, settings, cache, f'{digest}layer{block}')
        train, evals = extract(task.train), {k: extract(v) for k, v in task.evals.items()}
        tried.append((block, fit(train, evals, task.spec, settings, seed)))
      block, best = max(tried, key=lambda t: (np.nan_to_num(t[1]['val'][main], nan=-np.inf),
                                              t[0]))
      by_block = [{'layer': b, f'val_{main}': r['val'][main]} for b, r in tried]
      yield SeedResult.from_json({'group': init, 'init': init, **best, 'layer': block,
                                  **({'layers': by_block} if len(tried) > 1 else {})})


def _finetune_runs(pre, task, settings, inits, seeds, workdir) -> Iterator[SeedResult]:
  best = None
  for init in inits:
    for seed in seeds:
      result = finetune.finetune(_model(pre, init, seed), pre.tokenizer, task.spec, task.train,
                                 task.evals, settings, seed)
      params = result.pop('params')
      main = result['val'][task.spec.metrics[0]]
      if init == inits[0] and (best is None or main > best):  # keep the best seed's model
        best = main
        finetune.save(workdir / 'model', params, pre.model_cfg, task.spec, settings, pre.tokenizer)
      yield SeedResult.from_json({'group': init, 'init': init, **result})


def _fewshot_runs(pre, task, settings, inits, seeds, workdir) -> Iterator[SeedResult]:
  del workdir
  shots = parse_shots(settings.shots)
  verbalizers = tuple(settings.verbalizers.split('|')) if settings.verbalizers else tuple(
      ' ' + label for label in task.spec.labels)
  for init in inits:
    for seed in seeds:
      model = _model(pre, init, seed)
      scratch = pre if init == 'pretrained' else dataclasses.replace(pre, model=model)
      by_split = {split: fewshot.classify(
          scratch, task.spec, task.train, examples, template=settings.template.replace('\\n', '\n'),
          verbalizers=verbalizers, shots=shots, seed=seed, batch_size=settings.batch_size,
          normalize=settings.normalize, show_progress=progress.enabled(settings))
          for split, examples in task.evals.items()}
      for k in shots:
        yield SeedResult(group=f'{init} {k}-shot' if len(inits) > 1 else f'{k}-shot',
                         init=init, shots=k, seed=seed,
                         evals={split: _without_predictions(result[k])
                                for split, result in by_split.items()})


def _without_predictions(result):
  return {k: v for k, v in result.items() if k != 'predictions'}


_RUNNERS = {'probe': _probe_runs, 'finetune': _finetune_runs, 'fewshot': _fewshot_runs}


def run(pre, task: Task, method: str, workdir, s, checkpoint: str = '') -> dict:
  """Runs `method` on `task` for each init and seed; returns what results.json holds."""
  if method not in METHODS:
    raise UserError(f'method {method!r} is not one of {", ".join(METHODS)}')
  workdir = paths.path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  limit = pre.model_cfg.context_length
  if s.max_len > limit:  # recorded as used, not as asked
    log.warning('max_len=%d exceeds the model\'s %d positions; using max_len=%d', s.max_len,
                limit, limit)
    s.max_len = limit
  settings = method_settings(s, method, pre.model_cfg)
  seeds = list(range(s.seed, s.seed + s.seeds))
  results = {
      'task': task.spec.name, 'method': method if method != 'probe' else f'probe_{settings.kind}',
      'checkpoint': str(checkpoint), 'checkpoint_step': pre.step, 'seeds': seeds,
      'init': s.init, 'model': describe(pre), 'settings': s.to_dict(),
      'examples': {'train': len(task.train), **{k: len(v) for k, v in task.evals.items()}},
      'metrics_names': list(task.spec.metrics),
      'baseline_name': baselines.NAMES[task.spec.kind],
      'baseline': baselines.score(task.spec, task.train, task.evals), 'runs': []}
  start = time.perf_counter()
  clock = start
  for one in _RUNNERS[method](pre, task, settings, INITS[s.init], seeds, workdir):
    now = time.perf_counter()
    one = dataclasses.replace(one, seconds=round(now - clock, 2))
    clock = now
    results['runs'].append(one.to_json())
    results['metrics'] = summarize(results['runs'])
    results['seconds'] = round(now - start, 2)
    write_json(workdir / 'results.json', results)
    progress.line(settings, _seed_line(task.spec, one))
  results['warnings'] = baselines.warnings(results, task.spec) + _edge_of_grid(results)
  write_json(workdir / 'results.json', results)
  for line in results['warnings']:
    log.warning('%s', line)
  report.write(results, workdir, task.spec)
  return results


def _edge_of_grid(results) -> list[str]:
  """A line when every seed of a group chose the same end of the learning-rate grid: the
  best rate may lie beyond it. Reads results.json's runs as they are (only 'group', 'lr'
  and the grid's rates), like `baselines.warnings`."""
  out = []
  for group in dict.fromkeys(r['group'] for r in results['runs']):
    grids = [r['grid'] for r in results['runs'] if r['group'] == group and
             len(r.get('grid', ())) > 1]
    chosen = {r['lr'] for r in results['runs'] if r['group'] == group and 'grid' in r}
    if not grids or len(chosen) != 1:
      continue
    rates = sorted(g['lr'] for g in grids[0])
    lr = chosen.pop()
    if lr in (rates[0], rates[-1]):
      side, factors = ('lowest', (0.1, 1 / 3, 1)) if lr == rates[0] else ('highest', (1, 3, 10))
      wider = ','.join(progress.rate(lr * f) for f in factors)
      out.append(f'{results["task"]} {results["method"]} {group} chose the {side} learning '
                 f'rate of the grid, {progress.rate(lr)}, on every seed; the best may lie '
                 f'beyond it: try --set finetune.lr={wider}')
  return out


def _seed_line(spec, one: SeedResult) -> str:
  """What a seed chose on validation and how it scored on each evaluation split."""
  main = spec.metrics[0]
  fields = (('block', one.layer, str), ('lr', one.lr, progress.rate),
              ('epoch', one.epoch, str), ('lambda', one.penalty, progress.rate))
  chosen = [f'{name} {show(value)}' for name, value, show in fields if value is not None]
  picked = ''
  if chosen:
    assert one.val is not None  # what a method chooses, it chooses on validation
    picked = f'chose {", ".join(chosen)} (val {main} {one.val[main]:.4f}); '
  scored = ', '.join(f'{split} {main} {r["metrics"][main]:.4f}'
                     for split, r in one.evals.items())
  return f'{spec.name} {one.group} seed {one.seed}: {picked}{scored}'


def describe(pre) -> dict:
  model_cfg = pre.model_cfg
  params = sum(x.size for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(pre.model))))
  return {'arch': model_cfg.arch, 'hidden_size': model_cfg.hidden_size,
          'num_layers': model_cfg.num_layers, 'params': params}


def summarize(runs: list[dict]) -> dict:
  """{group: {split: {metric: {median, mean, std, values}}}} of results.json's `runs`; std
  is the sample standard deviation over seeds (0 for one seed)."""
  seeds = [SeedResult.from_json(r) for r in runs]
  out: dict[str, dict] = {}
  for group in dict.fromkeys(r.group for r in seeds):
    mine = [r for r in seeds if r.group == group]
    out[group] = {}
    for split in mine[0].evals:
      names = mine[0].evals[split]['metrics']
      out[group][split] = {}
      for name in names:
        values = np.asarray([r.evals[split]['metrics'][name] for r in mine], np.float64)
        out[group][split][name] = {
            'median': float(np.median(values)), 'mean': float(values.mean()),
            'std': float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            'values': values.tolist()}
  return out


def write_json(path: paths.Path, data) -> None:
  """A crash never leaves half a file (see `paths.write_whole`)."""
  paths.write_whole(path, json.dumps(data, indent=1, default=_plain))


def _plain(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f'{type(value).__name__} is not JSON')


