"""`ssljax compare A B`: two models on the same tasks in one report.

A and B are workdirs of `ssljax probe|finetune|fewshot|evaluate` (results.json), or
checkpoints that `compare` first evaluates itself. For every (task, method, group, split,
metric) both hold, the report gives each side's median and seed spread and the delta
B - A. Seeds differ between two models, examples do not: where both runs saved a
fine-tuned model (WORKDIR/model, the best seed), both predict the same evaluation
examples, and a paired test says how likely a delta that large is by chance: McNemar's
exact test for accuracy (only the examples one model gets right and the other wrong
count) and a paired bootstrap over examples for every other metric (Koehn 2004; Dror et
al. 2018 recommend both for NLP). compare.md, compare.json and compare.png (each seed's
score of A and B per task) go into the workdir.
"""

import json
import math

import ml_collections
import numpy as np

from ssljax import paths
from ssljax.adapt import finetune, predict, report, run as run_lib
from ssljax.errors import UserError
from ssljax.tasks import catalog, kinds, scores

RESAMPLES = 1000  # paired bootstrap resamples: p-values to about +-0.015 at p = 0.05


def read_runs(workdir) -> dict[tuple[str, str], tuple[dict, paths.Path]]:
  """{(task, method): (results.json, its folder)} of a run's or a suite's workdir."""
  folder = paths.path(workdir)
  file = folder / 'results.json'
  if not file.is_file():
    raise UserError(f'{folder} holds no results.json; pass the --workdir of `ssljax '
                    'finetune`, `probe`, `fewshot` or `evaluate` (or a checkpoint with --task)')
  try:
    results = json.loads(file.read_text())
  except ValueError as e:
    raise UserError(f'{file} is not valid JSON ({e}); run the evaluation again') from None
  if 'runs' in results:
    return {(results['task'], results['method']): (results, folder)}
  out: dict[tuple[str, str], tuple[dict, paths.Path]] = {}
  for task, columns in results.get('tasks', {}).items():
    for method in dict.fromkeys(c.split(' ')[0].split('_')[0] for c in columns
                                if c != 'baseline'):
      out |= read_runs(folder / task / method)
  return out


def mcnemar(a_right: np.ndarray, b_right: np.ndarray) -> float:
  """Two-sided exact McNemar p-value: under no difference, each example that exactly one
  model gets right is B's with probability 1/2."""
  b_only = int((b_right & ~a_right).sum())
  a_only = int((a_right & ~b_right).sum())
  n = a_only + b_only
  if n == 0:
    return 1.0
  tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2 ** n
  return min(1.0, 2 * tail)


def paired_bootstrap(metric, truths, a_pred, b_pred, seed: int = 0,
                     resamples: int = RESAMPLES) -> tuple[float, tuple[float, float]]:
  """(two-sided p-value, 95% interval of B - A) of `metric(truths, predictions)` over
  resamples of the examples, the same resample for both models."""
  rng = np.random.default_rng(seed)
  n = len(truths)
  deltas = np.empty(resamples)
  for r in range(resamples):
    pick = rng.integers(0, n, n)
    sample = [truths[i] for i in pick]
    deltas[r] = (metric(sample, [b_pred[i] for i in pick]) -
                 metric(sample, [a_pred[i] for i in pick]))
  p = 2 * min((deltas <= 0).mean(), (deltas >= 0).mean())
  return float(min(1.0, p)), (float(np.percentile(deltas, 2.5)),
                              float(np.percentile(deltas, 97.5)))


def _settings(results) -> ml_collections.ConfigDict:
  s = run_lib.defaults()
  s.update(results['settings'])
  return s


def paired_tests(a, b) -> dict[str, dict[str, dict]]:
  """{split: {metric: test}} on the evaluation examples both saved models predict; {}
  when either run saved no model (probes and prompting save none)."""
  (results_a, folder_a), (results_b, folder_b) = a, b
  if not all((f / 'model' / 'meta.json').is_file() for f in (folder_a, folder_b)):
    return {}
  task = catalog.load_task(results_a['task'], _settings(results_a))
  if task.spec.name != results_b['task'] or (
      {k: len(v) for k, v in task.evals.items()} !=
      {k: v for k, v in results_b['examples'].items() if k != 'train'}):
    raise UserError(f'{folder_a} and {folder_b} were not scored on the same examples '
                    f'({results_a["examples"]} against {results_b["examples"]}); compare runs '
                    'of one task with the same settings')
  decoded = {}
  for side, folder in (('a', folder_a), ('b', folder_b)):
    model, spec, meta, tokenizer = finetune.load(folder / 'model')
    decoded[side] = {split: predict.outputs_and_decoded(model, spec, meta, tokenizer,
                                                        examples, show_progress=True)[1]
                     for split, examples in task.evals.items()}
  out: dict[str, dict[str, dict]] = {}
  for split, examples in task.evals.items():
    truths = kinds.KINDS[task.spec.kind].truths(task.spec, examples)
    out[split] = {}
    for name in task.spec.metrics:
      if name == 'accuracy' and task.spec.kind == 'classification':
        right = {side: np.asarray(decoded[side][split]) == np.asarray(truths)
                 for side in 'ab'}
        out[split][name] = {'test': 'McNemar exact', 'p': mcnemar(right['a'], right['b']),
                            'a_only_right': int((right['a'] & ~right['b']).sum()),
                            'b_only_right': int((right['b'] & ~right['a']).sum())}
        continue
      metric = lambda t, p, name=name: scores.compute((name,), t, p)[name]
      p, interval = paired_bootstrap(metric, truths, decoded['a'][split], decoded['b'][split])
      out[split][name] = {'test': f'paired bootstrap ({RESAMPLES})', 'p': p,
                          'interval95': list(interval)}
  return out


def _groups(results_a, results_b) -> list[tuple[str, str]]:
  """Pairs of groups to compare: those of one name in both, else each run's first."""
  same = [g for g in results_a['metrics'] if g in results_b['metrics']]
  if same:
    return [(g, g) for g in same]
  return [(next(iter(results_a['metrics'])), next(iter(results_b['metrics'])))]


def compare(a, b, workdir, names=('A', 'B')) -> dict:
  """Writes compare.json, compare.md and compare.png for the runs in workdirs `a` and `b`
  (see the module docstring); returns what compare.json holds."""
  runs_a, runs_b = read_runs(a), read_runs(b)
  common = [key for key in runs_a if key in runs_b]
  if not common:
    raise UserError(f'{a} ({sorted(runs_a)}) and {b} ({sorted(runs_b)}) share no task and '
                    'method; compare runs of the same task by the same method')
  rows = []
  for key in common:
    results_a, results_b = runs_a[key][0], runs_b[key][0]
    tests = paired_tests(runs_a[key], runs_b[key])
    for group_a, group_b in _groups(results_a, results_b):
      for split, stats_a in results_a['metrics'][group_a].items():
        for metric, one_a in stats_a.items():
          one_b = results_b['metrics'][group_b].get(split, {}).get(metric)
          if one_b is None:
            continue
          rows.append({'task': key[0], 'method': key[1], 'group': group_a if group_a == group_b
                       else f'{group_a} / {group_b}', 'split': split, 'metric': metric,
                       'main': metric == results_a['metrics_names'][0], 'a': one_a, 'b': one_b,
                       'delta': one_b['median'] - one_a['median'],
                       'paired': tests.get(split, {}).get(metric) if group_a == group_b ==
                       next(iter(results_a['metrics'])) else None})
  out = {'a': str(a), 'b': str(b), 'names': list(names), 'rows': rows}
  workdir = paths.path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  run_lib.write_json(workdir / 'compare.json', out)
  paths.write_whole(workdir / 'compare.md', markdown(out))
  report.plot_compare(out, workdir / 'compare.png')
  return out


def _spread(stats) -> str:
  values = stats['values']
  if len(values) == 1:
    return f'{stats["median"]:.4f}'
  return f'{stats["median"]:.4f} ± {stats["std"]:.4f} (n={len(values)})'


def _test(paired) -> str:
  if paired is None:
    return 'no saved models'
  if 'interval95' in paired:
    low, high = paired['interval95']
    return f'p = {paired["p"]:.3g}, 95% [{low:+.4f}, {high:+.4f}]'
  return (f'p = {paired["p"]:.3g} ({paired["a_only_right"]} right only by A, '
          f'{paired["b_only_right"]} only by B)')


def markdown(out) -> str:
  a, b = out['names']
  lines = [f'# {a} against {b}', '', f'{a}: `{out["a"]}`  ', f'{b}: `{out["b"]}`', '',
           'Median over seeds ± sample std; delta is the median of B minus that of A. The '
           'paired test compares the best seed\'s saved model of each run on the same '
           'evaluation examples (McNemar\'s exact test for accuracy, a paired bootstrap '
           'otherwise); probes and prompting save no model.', '',
           f'| task | method | group | split | metric | {a} | {b} | delta | paired test |',
           '|---|---|---|---|---|---|---|---|---|']
  for row in out['rows']:
    lines.append(f'| {row["task"]} | {row["method"]} | {row["group"]} | {row["split"]} | '
                 f'{row["metric"]} | {_spread(row["a"])} | {_spread(row["b"])} | '
                 f'{row["delta"]:+.4f} | {_test(row["paired"])} |')
  lines += ['', '![each seed of each model](compare.png)']
  return '\n'.join(lines) + '\n'
