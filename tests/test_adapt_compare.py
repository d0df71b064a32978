"""`ssljax compare`: deltas and seed spread of two runs, paired tests on the same examples
(McNemar's exact test agrees with scipy's binomial test), and a checkpoint compared with
its own Hugging Face export in one report."""

import json

import numpy as np
import pytest

from ssljax import cli
from ssljax.adapt import compare
from ssljax.errors import UserError

from test_adapt_run import _sst2_rows


def _stats(values):
  values = np.asarray(values, float)
  return {'median': float(np.median(values)), 'mean': float(values.mean()),
          'std': float(values.std(ddof=1)) if len(values) > 1 else 0.0,
          'values': values.tolist()}


def _results(folder, task, method, accuracies, f1s):
  folder.mkdir(parents=True)
  (folder / 'results.json').write_text(json.dumps({
      'task': task, 'method': method, 'runs': [], 'metrics_names': ['accuracy', 'f1'],
      'examples': {'train': 10, 'dev': 5},
      'metrics': {'pretrained': {'dev': {'accuracy': _stats(accuracies), 'f1': _stats(f1s)}}}}))
  return folder


def test_mcnemar_is_the_exact_binomial_test():
  scipy_stats = pytest.importorskip('scipy.stats')
  rng = np.random.default_rng(0)
  for _ in range(20):
    a, b = rng.random(60) < 0.6, rng.random(60) < rng.uniform(0.4, 0.9)
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    want = scipy_stats.binomtest(b_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1
    assert compare.mcnemar(a, b) == pytest.approx(want, rel=1e-9)


def test_paired_bootstrap_sees_a_real_difference_and_none_in_equal_models():
  accuracy = lambda t, p: float(np.mean(np.asarray(t) == np.asarray(p)))
  truths = [i % 2 for i in range(200)]
  same = [1 - t if i % 5 == 0 else t for i, t in enumerate(truths)]
  p, interval = compare.paired_bootstrap(accuracy, truths, same, same, resamples=200)
  assert p == 1.0 and interval == (0.0, 0.0)
  better = list(truths)
  p, (low, high) = compare.paired_bootstrap(accuracy, truths, same, better, resamples=200)
  assert p < 0.01 and 0.1 < low <= high < 0.3  # B is right on the 20% A gets wrong


def test_runs_without_models_give_deltas_and_spread(tmp_path):
  a = _results(tmp_path / 'a', 'sst2', 'probe_linear', [0.8, 0.82, 0.79], [0.7, 0.72, 0.69])
  b = _results(tmp_path / 'b', 'sst2', 'probe_linear', [0.85, 0.86, 0.9], [0.8, 0.8, 0.81])
  out = compare.compare(a, b, tmp_path / 'cmp', ('small', 'large'))
  rows = {r['metric']: r for r in out['rows']}
  assert rows['accuracy']['delta'] == pytest.approx(0.86 - 0.80)
  assert rows['accuracy']['main'] and not rows['f1']['main']
  assert rows['accuracy']['paired'] is None
  text = (tmp_path / 'cmp' / 'compare.md').read_text()
  assert '| sst2 | probe_linear | pretrained | dev | accuracy | 0.8000 ± 0.0153 (n=3) | ' \
         '0.8600 ± 0.0265 (n=3) | +0.0600 | no saved models |' in text
  assert '![each seed of each model](compare.png)' in text
  assert (tmp_path / 'cmp' / 'compare.png').stat().st_size > 10_000
  assert json.loads((tmp_path / 'cmp' / 'compare.json').read_text())['names'] == [
      'small', 'large']
  other = _results(tmp_path / 'c', 'cola', 'probe_linear', [0.5], [0.5])
  with pytest.raises(UserError, match='share no task and method'):
    compare.compare(a, other, tmp_path / 'cmp2')
  with pytest.raises(UserError, match='holds no results.json'):
    compare.compare(tmp_path / 'nothing', b, tmp_path / 'cmp3')


def test_two_evaluate_suites_compare_task_by_task(tmp_path):
  for side, shift in (('a', 0.0), ('b', 0.05)):
    for task in ('sst2', 'rte'):
      _results(tmp_path / side / task / 'finetune', task, 'finetune',
               [0.7 + shift, 0.72 + shift], [0.6, 0.6])
    (tmp_path / side / 'results.json').write_text(json.dumps({'tasks': {
        task: {'finetune pretrained': {}, 'baseline': {}} for task in ('sst2', 'rte')}}))
  out = compare.compare(tmp_path / 'a', tmp_path / 'b', tmp_path / 'cmp')
  main = [(r['task'], round(r['delta'], 6)) for r in out['rows'] if r['main']]
  assert main == [('sst2', 0.05), ('rte', 0.05)]


@pytest.mark.slow
def test_a_checkpoint_against_its_hugging_face_export(pretrained_run, tmp_path, capsys):
  """The same weights through two loaders: the report has every seed of both, deltas of
  zero and a paired test that finds no difference."""
  glue = tmp_path / 'GLUE' / 'SST-2'
  glue.mkdir(parents=True)
  (glue / 'train.tsv').write_text(_sst2_rows(32, 0))
  (glue / 'dev.tsv').write_text(_sst2_rows(16, 1))
  assert cli.main(['export-hf', str(pretrained_run), '--out', str(tmp_path / 'hf')]) == 0
  assert cli.main(['compare', str(pretrained_run), str(tmp_path / 'hf'), '--tasks', 'sst2',
                   '--data-dir', str(tmp_path / 'GLUE'), '--workdir', str(tmp_path / 'cmp'),
                   '--names', 'ours,hf', '--set', 'seeds=2', '--set', 'finetune.epochs=1',
                   '--set', 'finetune.lr=1e-3', '--set', 'batch_size=8', '--set', 'max_len=32',
                   '--set', 'progress=false']) == 0
  printed = capsys.readouterr().out
  assert 'sst2 finetune pretrained dev accuracy: ours' in printed
  out = json.loads((tmp_path / 'cmp' / 'compare.json').read_text())
  main = next(r for r in out['rows'] if r['main'])
  assert len(main['a']['values']) == len(main['b']['values']) == 2
  assert main['delta'] == pytest.approx(0, abs=1e-6)
  assert main['paired']['test'] == 'McNemar exact' and main['paired']['p'] == 1.0
  assert (tmp_path / 'cmp' / 'ours' / 'sst2' / 'finetune' / 'model' / 'meta.json').is_file()
  assert '| +0.0000 | p = 1 (0 right only by A, 0 only by B) |' in (
      tmp_path / 'cmp' / 'compare.md').read_text()
