"""`ssljax evaluate`: several tasks by several methods on one checkpoint, in one table.

Each (task, method) is one `run.run` into WORKDIR/TASK/METHOD; the suite's results.json and
report.md hold each task's medians next to its baseline, and the GLUE average over the GLUE
tasks run (the GLUE score when all nine are there).
"""

import logging
from typing import Any

import ml_collections

from ssljax import paths, progress
from ssljax.adapt import report, run as run_lib
from ssljax.errors import UserError
from ssljax.pretrained import Pretrained
from ssljax.tasks import catalog, readers, scores

log = logging.getLogger(__name__)


def run_suite(pre: Pretrained, task_names: list[str], methods: list[str], workdir,
              s: ml_collections.ConfigDict, checkpoint: str = '') -> dict:
  """Each task by each method into workdir/TASK/METHOD, then one table with each task's
  baseline, and the GLUE average over the GLUE tasks run (the GLUE score when all nine are
  there)."""
  for method in methods:
    if method not in run_lib.METHODS:
      raise UserError(f'method {method!r} is not one of {", ".join(run_lib.METHODS)}')
  for name in task_names:  # every name, then every task's files, before the first task runs
    catalog.known_task(name)
  for name in task_names:
    catalog.check_data(name, s)
  workdir = paths.path(workdir)
  suite: dict[str, Any] = {'checkpoint': str(checkpoint), 'methods': list(methods), 'tasks': {},
           'warnings': []}
  bar = progress.bar(s, len(task_names) * len(methods), 'evaluate', 'run')
  for name in task_names:
    task = catalog.load_task(name, s)
    for method in methods:
      bar.update(1)
      if _skipped(pre, task, method):
        continue
      result = run_lib.run(pre, task, method, workdir / task.spec.name / method, s, checkpoint)
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
  run_lib.write_json(workdir / 'results.json', suite)
  report.write_suite(suite, workdir)
  return suite


def _skipped(pre: Pretrained, task: catalog.Task, method: str) -> bool:
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
      if task in readers.GLUE and column in by_column:
        for split, stats in by_column[column].items():
          entry = task if split == 'dev' else f'{task}_{split.removeprefix("dev_")}'
          entries[entry] = {name: v['median'] for name, v in stats.items()}
    if entries:
      glue_tasks = {e.split('_')[0] for e in entries}
      out[column] = {'value': scores.glue_score(entries, partial=True),
                     'tasks': len(glue_tasks), 'complete': len(glue_tasks) == len(readers.GLUE)}
  return out
