"""One adaptation run: a checkpoint, a task and a method over several seeds.

`run(pre, task, method, workdir, settings)` probes, fine-tunes or prompts the model of
`pre` (from `pretrained.load`: an ssljax workdir, a checkpoint step or a Hugging Face
folder), from its pretrained weights, from random ones of the same architecture, or both,
and writes `workdir/results.json` (rewritten after every seed, so an interrupted run keeps
what it finished), `workdir/report.md` and PNG plots. Every split is scored with the
task's own metrics, and so is a trivial baseline (`baselines.py`) that the medians must
beat; model selection (epochs, learning rates, penalties) only ever sees a validation split
carved from train. A file task's evaluation split is named after its file.
"""

import dataclasses
import json
import logging
import time

import jax
import ml_collections
import numpy as np
from flax import nnx

from ssljax import config as config_lib, models, paths
from ssljax.adapt import (baselines, features, finetune, probe, progress, prompting, report,
                          scores, tasks)
from ssljax.errors import UserError

log = logging.getLogger(__name__)

METHODS = ('probe', 'finetune', 'fewshot')
INITS = {'pretrained': ('pretrained',), 'scratch': ('scratch',),
         'both': ('pretrained', 'scratch')}
# Where a task's files are looked for under data_dir when train_file/eval_file are not set.
_FILE_PATTERNS = {'pos': ('*-ud-train.conllu', '*-ud-dev.conllu'),
                  'squad': ('train-v1.1.json', 'dev-v1.1.json')}
FILE_TASKS = ('pos', 'ner', 'squad', 'table')


# setting -> the interval its value must lie in (see config.in_range)
RANGES = {
    'max_train_examples': '[0, inf)', 'max_eval_examples': '[0, inf)', 'seed': '[0, inf)',
    'data_seed': '[0, inf)', 'max_len': '[8, inf)', 'batch_size': '[1, inf)',
    'val_fraction': '(0, 1)', 'doc_stride': '[1, inf)', 'finetune.epochs': '[1, inf)',
    'finetune.warmup': '[0, 1)', 'finetune.weight_decay': '[0, inf)', 'finetune.llrd': '(0, 1]',
    'probe.lr': '(0, inf)', 'probe.epochs': '[1, inf)', 'probe.weight_decay': '[0, inf)',
    'probe.layer': '[0, inf)',
}


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


def settings() -> ml_collections.ConfigDict:
  """Every key the adaptation commands read (`--set key=value`), with defaults."""
  c = ml_collections.ConfigDict()
  c.data_dir = ''  # the GLUE folder (or one holding glue/); pos/squad: where files are found
  c.source = 'files'  # files | tfds (GLUE from prepared tensorflow-datasets glue/*)
  c.train_file = ''  # pos, ner, squad, table: the training file
  c.eval_file = ''  # ... and the one scored
  c.eval_splits = ''  # GLUE, comma-separated; '' = dev (MNLI dev_matched,dev_mismatched)
  c.max_train_examples = 0  # 0 = all; else a fixed random subset drawn with data_seed
  c.max_eval_examples = 0
  c.data_seed = 0
  c.init = 'pretrained'  # pretrained | scratch (same architecture, random) | both
  c.seeds = 3  # runs with seeds seed, seed + 1, ...
  c.seed = 0
  c.max_len = 128
  c.batch_size = 32
  c.pooling = ''  # cls | first | mean | last; '' = cls to fine-tune an encoder, else mean/last
  c.val_fraction = 0.1  # of train, held out to choose epochs and penalties
  c.doc_stride = 64  # squad: tokens between window starts
  c.progress = True  # a tqdm bar and a line per epoch on stderr
  c.table = ml_collections.ConfigDict(
      dict(text='text', text_b='', label='label', kind='classification'))
  c.finetune = ml_collections.ConfigDict(  # lr: auto (finetune.LR_GRID), a number or a list
      dict(lr='auto', search='halving', epochs=3, warmup=0.1, weight_decay=0.01, llrd=1.0,
           bucket_by_length=True))  # batches of similar-length rows, each cut short
  c.probe = ml_collections.ConfigDict(
      dict(kind='linear', lr=1e-3, epochs=30, weight_decay=1e-4,  # kind: linear | ridge
           layer=0))  # the features of block `layer` (1 = the first); 0 = the last
  c.fewshot = ml_collections.ConfigDict(
      dict(template='{text}\\nAnswer:', verbalizers='', shots='0,1,4', normalize=False))
  return c


def load_settings(overrides=()) -> ml_collections.ConfigDict:
  s = config_lib.override(settings(), overrides)
  for name, value, options in (('init', s.init, INITS), ('source', s.source, ('files', 'tfds')),
                               ('probe.kind', s.probe.kind, ('linear', 'ridge'))):
    if value not in options:
      raise UserError(f'{name}={value!r} is not one of {", ".join(options)}')
  if s.seeds < 1:
    raise UserError(f'seeds={s.seeds}: run at least one seed')
  for name, interval in RANGES.items():
    *parents, key = name.split('.')
    config_lib.in_range(name, (s[parents[0]] if parents else s)[key], interval)
  parse_shots(s.fewshot.shots)
  finetune.learning_rates(s.finetune.lr)  # auto, or positive numbers split by commas
  finetune.check_search(s.finetune.search)
  return s


@dataclasses.dataclass
class Task:
  """A task's examples: what to train on and the splits to score."""
  spec: tasks.TaskSpec
  train: list[tasks.Example]
  evals: dict[str, list[tasks.Example]]


def known_task(name: str) -> str:
  """The task's key; an unknown name raises, naming the closest known task."""
  key = name.lower().replace('-', '')
  if key not in tasks.GLUE and key not in FILE_TASKS:
    tasks.task_spec(name)
    raise AssertionError(name)
  return key


def load_task(name: str, s) -> Task:
  """The examples of task `name` as the settings locate them."""
  key = known_task(name)
  if key in tasks.GLUE:
    spec, train, evals = _glue(key, s)
  else:
    spec, train, evals = _from_files(key, s)
  for split, examples in evals.items():
    if all(e.label is None and e.tags is None and e.answers is None for e in examples):
      raise UserError(f'{spec.name} {split} has no labels (a test split?); score a labelled '
                      'split, e.g. --set eval_splits=dev')
  return Task(spec=spec, train=_subset(train, s.max_train_examples, s.data_seed),
              evals={k: _subset(v, s.max_eval_examples, s.data_seed) for k, v in evals.items()})


def _glue(name, s):
  default = 'dev_matched,dev_mismatched' if name == 'mnli' else 'dev'
  splits = [x.strip() for x in (s.eval_splits or default).split(',') if x.strip()]
  if 'train' in splits:
    raise UserError('eval_splits names train: scoring the training split says nothing; '
                    'score dev')
  if s.source == 'tfds':
    read = lambda split: tasks.read_glue_tfds(name, split, s.data_dir or None)
  else:
    if not s.data_dir:
      raise UserError(f'{name} is read from the GLUE folder: pass --data-dir GLUE_DIR (or '
                      '--set source=tfds)')
    folder = paths.path(s.data_dir)
    folder = folder / 'glue' if (folder / 'glue').is_dir() else folder
    read = lambda split: tasks.read_glue(name, folder, split)
  return tasks.GLUE[name], read('train'), {split: read(split) for split in splits}


def _from_files(name, s):
  """The task's spec, train and its one evaluation split, named after the eval file."""
  train_file, eval_file = (_locate(s, name, which) for which in (0, 1))
  split = split_name(eval_file)
  if name == 'pos':
    return tasks.POS, tasks.read_conllu(train_file), {split: tasks.read_conllu(eval_file)}
  if name == 'squad':
    return tasks.SQUAD, tasks.read_squad(train_file), {split: tasks.read_squad(eval_file)}
  if name == 'ner':
    spec, train = tasks.read_conll_ner(train_file)
    return spec, train, {split: tasks.read_conll_ner(eval_file, spec.labels)[1]}
  t = s.table
  read = lambda path, labels=None: tasks.read_table(
      path, t.text, t.label, t.text_b or None, t.kind, labels=labels,
      name=paths.path(train_file).stem)
  spec, train = read(train_file)
  return spec, train, {split: read(eval_file,
                                   spec.labels if t.kind != 'regression' else None)[1]}


def split_name(path) -> str:
  """An evaluation file's split name: its name without the extension (en_ewt-ud-test from
  en_ewt-ud-test.conllu, dev-v1.1 from dev-v1.1.json), so a report says which file it
  scored; 'train' would read as the training split, so that one is eval-train."""
  stem = paths.path(path).stem
  return 'eval-train' if stem == 'train' else stem


def _locate(s, name, which) -> paths.Path:
  """train_file / eval_file, or the file of the task's usual name under data_dir."""
  key = ('train_file', 'eval_file')[which]
  if s[key]:
    return paths.path(s[key])
  pattern = _FILE_PATTERNS.get(name, (None, None))[which]
  if pattern and s.data_dir:
    found = paths.rglob(paths.path(s.data_dir), pattern)
    if found:
      return found[0]
  where = f' (no {pattern} under {s.data_dir})' if pattern and s.data_dir else ''
  raise UserError(f'task {name} needs --set {key}=FILE{where}')


def _subset(examples, limit, seed):
  if not limit or limit >= len(examples):
    return examples
  keep = np.sort(np.random.default_rng(seed).choice(len(examples), limit, replace=False))
  return [examples[i] for i in keep]


def method_settings(s, method: str, arch: str) -> ml_collections.ConfigDict:
  """The flat settings probe/finetune/fewshot read: the shared keys plus the method's own."""
  pooling = s.pooling
  if not pooling:
    pooling = ('last' if arch == 'gpt' else 'cls') if method == 'finetune' else 'mean'
  shared = {k: s[k] for k in ('max_len', 'batch_size', 'val_fraction', 'doc_stride',
                               'progress')}
  own = s[method].to_dict() if method in s else {}
  return ml_collections.ConfigDict(shared | own | {'pooling': pooling, 'cache_key': ''})


def _model(pre, init, seed):
  """The pretrained model, or a fresh one of its architecture drawn from `seed`."""
  if init == 'pretrained':
    return pre.model
  return models.build(pre.model_cfg, nnx.Rngs(seed))


def _probe_runs(pre, task, cfg, inits, seeds, workdir):
  fit = probe.ridge if cfg.kind == 'ridge' else probe.linear
  extracted = {}  # the pretrained encoder's features are the same for every seed
  for init in inits:
    for seed in seeds:
      if init == 'scratch' or init not in extracted:
        model = features.truncate(_model(pre, init, seed), cfg.layer)
        cache = workdir / 'features' if init == 'pretrained' else None
        cfg.cache_key = f'{init}{pre.step}layer{cfg.layer}'
        extract = lambda examples: probe.extract(model, pre.tokenizer, task.spec, examples,
                                                 cfg, cache)
        extracted[init] = (extract(task.train), {k: extract(v) for k, v in task.evals.items()})
      train, evals = extracted[init]
      yield {'group': init, 'init': init, **fit(train, evals, task.spec, cfg, seed)}


def _finetune_runs(pre, task, cfg, inits, seeds, workdir):
  best = None
  for init in inits:
    for seed in seeds:
      result = finetune.finetune(_model(pre, init, seed), pre.tokenizer, task.spec, task.train,
                                 task.evals, cfg, seed)
      params = result.pop('params')
      main = result['val'][task.spec.metrics[0]]
      if init == inits[0] and (best is None or main > best):  # keep the best seed's model
        best = main
        finetune.save(workdir / 'model', params, pre.model_cfg, task.spec, cfg, pre.tokenizer)
      yield {'group': init, 'init': init, **result}


def _fewshot_runs(pre, task, cfg, inits, seeds, workdir):
  del workdir
  shots = parse_shots(cfg.shots)
  verbalizers = tuple(cfg.verbalizers.split('|')) if cfg.verbalizers else tuple(
      ' ' + label for label in task.spec.labels)
  for init in inits:
    for seed in seeds:
      model = _model(pre, init, seed)
      scratch = pre if init == 'pretrained' else dataclasses.replace(pre, model=model)
      by_split = {split: prompting.evaluate(
          scratch, task.spec, task.train, examples, template=cfg.template.replace('\\n', '\n'),
          verbalizers=verbalizers, shots=shots, seed=seed, batch_size=cfg.batch_size,
          normalize=cfg.normalize, show_progress=progress.enabled(cfg))
          for split, examples in task.evals.items()}
      for k in shots:
        yield {'group': f'{init} {k}-shot' if len(inits) > 1 else f'{k}-shot', 'init': init,
               'shots': k, 'seed': seed,
               'evals': {split: _without_predictions(result[k])
                         for split, result in by_split.items()}}


def _without_predictions(result):
  return {k: v for k, v in result.items() if k != 'predictions'}


_RUNNERS = {'probe': _probe_runs, 'finetune': _finetune_runs, 'fewshot': _fewshot_runs}


def run(pre, task: Task, method: str, workdir, s, checkpoint: str = '') -> dict:
  """Runs `method` on `task` for each init and seed; returns what results.json holds."""
  if method not in METHODS:
    raise UserError(f'method {method!r} is not one of {", ".join(METHODS)}')
  workdir = paths.path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  limit = pre.model_cfg.max_len - pre.model_cfg.position_offset
  if s.max_len > limit:  # recorded as used, not as asked
    log.warning('max_len=%d exceeds the model\'s %d positions; using max_len=%d', s.max_len,
                limit, limit)
    s.max_len = limit
  cfg = method_settings(s, method, pre.model_cfg.arch)
  seeds = list(range(s.seed, s.seed + s.seeds))
  results = {
      'task': task.spec.name, 'method': method if method != 'probe' else f'probe_{cfg.kind}',
      'checkpoint': str(checkpoint), 'checkpoint_step': pre.step, 'seeds': seeds,
      'init': s.init, 'model': describe(pre), 'settings': s.to_dict(),
      'examples': {'train': len(task.train), **{k: len(v) for k, v in task.evals.items()}},
      'metrics_names': list(task.spec.metrics),
      'baseline_name': baselines.NAMES[task.spec.kind],
      'baseline': baselines.score(task.spec, task.train, task.evals), 'runs': []}
  start = time.perf_counter()
  clock = start
  for one in _RUNNERS[method](pre, task, cfg, INITS[s.init], seeds, workdir):
    now = time.perf_counter()
    one['seconds'] = round(now - clock, 2)
    clock = now
    results['runs'].append(one)
    results['metrics'] = summarize(results['runs'])
    results['seconds'] = round(now - start, 2)
    _write_json(workdir / 'results.json', results)
    progress.line(cfg, _seed_line(task.spec, one))
  results['warnings'] = baselines.warnings(results, task.spec) + _edge_of_grid(results)
  _write_json(workdir / 'results.json', results)
  for line in results['warnings']:
    log.warning('%s', line)
  report.write(results, workdir, task.spec)
  return results


def _edge_of_grid(results) -> list[str]:
  """A line when every seed of a group chose the same end of the learning-rate grid: the
  best rate may lie beyond it."""
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


def _seed_line(spec, one) -> str:
  """What a seed chose on validation and how it scored on each evaluation split."""
  main = spec.metrics[0]
  chosen = [f'{k} {progress.rate(one[k]) if k != "epoch" else one[k]}'
            for k in ('lr', 'epoch', 'lambda') if k in one]
  picked = (f'chose {", ".join(chosen)} (val {main} {one["val"][main]:.4f}); '
            if chosen else '')
  scored = ', '.join(f'{split} {main} {r["metrics"][main]:.4f}'
                     for split, r in one['evals'].items())
  return f'{spec.name} {one["group"]} seed {one["seed"]}: {picked}{scored}'


def describe(pre) -> dict:
  cfg = pre.model_cfg
  params = sum(x.size for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(pre.model))))
  return {'arch': cfg.arch, 'hidden_size': cfg.hidden_size, 'num_layers': cfg.num_layers,
          'params': params}


def summarize(runs) -> dict:
  """{group: {split: {metric: {median, mean, std, values}}}}; std is the sample standard
  deviation over seeds (0 for one seed)."""
  out = {}
  for group in dict.fromkeys(r['group'] for r in runs):
    mine = [r for r in runs if r['group'] == group]
    out[group] = {}
    for split in mine[0]['evals']:
      names = mine[0]['evals'][split]['metrics']
      out[group][split] = {}
      for name in names:
        values = np.asarray([r['evals'][split]['metrics'][name] for r in mine], np.float64)
        out[group][split][name] = {
            'median': float(np.median(values)), 'mean': float(values.mean()),
            'std': float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            'values': values.tolist()}
  return out


def _write_json(path: paths.Path, data):
  """A crash never leaves half a file (see `paths.write_whole`)."""
  paths.write_whole(path, json.dumps(data, indent=1, default=_plain))


def _plain(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f'{type(value).__name__} is not JSON')


def evaluate(pre, task_names, methods, workdir, s, checkpoint: str = '') -> dict:
  """Each task by each method into workdir/TASK/METHOD, then one table with each task's
  baseline, and the GLUE average over the GLUE tasks run (the GLUE score when all nine are
  there)."""
  for method in methods:
    if method not in METHODS:
      raise UserError(f'method {method!r} is not one of {", ".join(METHODS)}')
  for name in task_names:  # every name before the first task runs
    known_task(name)
  workdir = paths.path(workdir)
  suite = {'checkpoint': str(checkpoint), 'methods': list(methods), 'tasks': {},
           'warnings': []}
  bar = progress.bar(s, len(task_names) * len(methods), 'evaluate', 'run')
  for name in task_names:
    task = load_task(name, s)
    for method in methods:
      bar.update(1)
      if _skipped(pre, task, method):
        continue
      result = run(pre, task, method, workdir / task.spec.name / method, s, checkpoint)
      columns = suite['tasks'].setdefault(task.spec.name, {})
      for group, by_split in result['metrics'].items():
        columns[f'{result["method"]} {group}'] = by_split
      suite['warnings'] += result['warnings']
      progress.line(s, f'evaluate {bar.n}/{bar.total}: {_versus_baseline(result, task.spec)}')
    if task.spec.name in suite['tasks']:  # every run of the task scored the same baseline
      suite['tasks'][task.spec.name]['baseline'] = _as_stats(result['baseline'])
  bar.close()
  suite['glue_average'] = _glue_averages(suite['tasks'])
  workdir.mkdir(parents=True, exist_ok=True)
  _write_json(workdir / 'results.json', suite)
  report.write_suite(suite, workdir)
  return suite


def _skipped(pre, task, method) -> bool:
  """Says so for a method that does not apply to the task."""
  if method == 'fewshot' and (pre.model_cfg.arch != 'gpt' or
                              task.spec.kind != 'classification'):
    log.warning('skipping fewshot on %s: it prompts a causal LM to classify', task.spec.name)
    return True
  if method == 'probe' and task.spec.kind == 'span':
    log.warning('skipping probe on %s: extractive QA is fine-tuned', task.spec.name)
    return True
  return False


def _versus_baseline(result, spec) -> str:
  """'sst2 finetune pretrained dev accuracy 0.8100 (baseline 0.5100)' for each group."""
  main = spec.metrics[0]
  return '; '.join(
      f'{result["task"]} {result["method"]} {group} {split} {main} '
      f'{stats[main]["median"]:.4f} (baseline {result["baseline"][split][main]:.4f})'
      for group, splits in result['metrics'].items() for split, stats in splits.items())


def _as_stats(by_split) -> dict:
  """A baseline's {split: {metric: value}} in summarize's form, as a column of the suite."""
  return {split: {name: {'median': v, 'mean': v, 'std': 0.0, 'values': [v]}
                  for name, v in metrics.items()} for split, metrics in by_split.items()}


def _glue_averages(by_task) -> dict:
  """{column: {value, tasks, complete}} over the GLUE tasks each column has."""
  out = {}
  columns = dict.fromkeys(c for t in by_task.values() for c in t)
  for column in columns:
    entries = {}
    for task, by_column in by_task.items():
      if task in tasks.GLUE and column in by_column:
        for split, stats in by_column[column].items():
          entry = task if split == 'dev' else f'{task}_{split.removeprefix("dev_")}'
          entries[entry] = {name: v['median'] for name, v in stats.items()}
    if entries:
      glue_tasks = {e.split('_')[0] for e in entries}
      out[column] = {'value': scores.glue_score(entries, partial=True),
                     'tasks': len(glue_tasks), 'complete': len(glue_tasks) == len(tasks.GLUE)}
  return out
