"""The adaptation commands end to end: results.json, reports, seeds, predict, suites, errors.

A tiny BERT pretrained for six steps (conftest) is the checkpoint; tasks are small generated files
in GLUE's own layout, so the whole path from checkpoint to report runs in seconds.
"""

import dataclasses
import json

import numpy as np
import pytest
from flax import nnx

from ssljax import cli, models as model_lib
from ssljax.adapt import hooks, run as run_lib
from ssljax.errors import UserError
from ssljax.inference import encoding, loading
from ssljax.pretrain import loop as train
from ssljax.tasks import catalog, readers, scores

from conftest import tiny_config

_GOOD = ['a charming and often affecting journey', 'an excellent film with fine acting',
         'warm , funny and wise', 'the best story of the year']
_BAD = ['unflinchingly bleak and desperate', 'a dull , tedious mess', 'nothing works here',
        'the worst plot in years']
_STSB_HEAD = ('index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t'
              'sentence2\tscore')


def _sst2_rows(count, offset):
  rows = []
  for i in range(count):
    label = (i + offset) % 2
    text = (_GOOD if label else _BAD)[i % 4]
    rows.append(f'{text} {i} .\t{label}')
  return 'sentence\tlabel\n' + '\n'.join(rows) + '\n'


def _stsb_rows(count):
  rows = [f'{i}\tmain\tx\t2012\t{i}\tnone\tnone\t{_GOOD[i % 4]}\t{(_GOOD + _BAD)[i % 8]}\t'
          f'{5.0 if i % 8 < 4 and i % 4 == i % 8 else (i % 5) * 0.8:.3f}' for i in range(count)]
  return _STSB_HEAD + '\n' + '\n'.join(rows) + '\n'


@pytest.fixture(scope='module')
def glue_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('data') / 'glue'
  files = {'SST-2/train.tsv': _sst2_rows(48, 0), 'SST-2/dev.tsv': _sst2_rows(12, 1),
           'SST-2/test.tsv': 'index\tsentence\n0\tuneasy mishmash .\n',
           'STS-B/train.tsv': _stsb_rows(40), 'STS-B/dev.tsv': _stsb_rows(10)}
  for name, text in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)
  return root


@pytest.fixture
def checkpoint(pretrained_run):
  return pretrained_run


def _cli(*argv):
  assert cli.main([str(a) for a in argv]) == 0


@pytest.mark.slow
def test_finetune_both_inits_writes_results_reports_and_a_model_predict_agrees_with(
    checkpoint, glue_dir, tmp_path):
  out = tmp_path / 'ft'
  _cli('finetune', '--checkpoint', checkpoint, '--task', 'sst2', '--data-dir', glue_dir.parent,
       '--workdir', out, '--set', 'init=both', '--set', 'seeds=2', '--set', 'finetune.epochs=2',
       '--set', 'finetune.min_steps=0', '--set', 'finetune.lr=1e-3', '--set', 'batch_size=8',
       '--set', 'max_len=32')
  results = json.loads((out / 'results.json').read_text())
  assert (results['task'], results['method'], results['seeds']) == ('sst2', 'finetune', [0, 1])
  assert results['examples'] == {'train': 48, 'dev': 12}
  assert [(r['init'], r['seed']) for r in results['runs']] == [
      ('pretrained', 0), ('pretrained', 1), ('scratch', 0), ('scratch', 1)]
  for group in ('pretrained', 'scratch'):
    stats = results['metrics'][group]['dev']['accuracy']
    values = [r['evals']['dev']['metrics']['accuracy'] for r in results['runs']
              if r['group'] == group]
    assert stats['values'] == values
    assert stats['median'] == pytest.approx(np.median(values))
    assert stats['std'] == pytest.approx(np.std(values, ddof=1))
  first = results['runs'][0]
  assert len(first['curve']) == 3 and first['curve'][0]['epoch'] == 0
  assert np.asarray(first['evals']['dev']['confusion_matrix']).sum() == 12
  for name in ('report.md', 'curves.png', 'confusion.png', 'model/meta.json'):
    assert (out / name).is_file(), name
  assert '| scratch | dev (n=12) |' in (out / 'report.md').read_text()

  # The saved model is the best-validation pretrained seed: predict reproduces its dev score.
  best = max(results['runs'][:2], key=lambda r: r['val']['accuracy'])
  dev = readers.read_glue('sst2', glue_dir, 'dev')
  (tmp_path / 'dev.txt').write_text(''.join(e.text + '\n' for e in dev))
  _cli('predict', '--model', out / 'model', '--input', tmp_path / 'dev.txt', '--output',
       tmp_path / 'pred.jsonl')
  predicted = [json.loads(line) for line in (tmp_path / 'pred.jsonl').read_text().splitlines()]
  labels = [readers.GLUE['sst2'].labels.index(p['label']) for p in predicted]
  assert scores.accuracy([e.label for e in dev], labels) == pytest.approx(
      best['evals']['dev']['metrics']['accuracy'])
  assert all(abs(sum(p['probabilities'].values()) - 1) < 1e-4 for p in predicted)


@pytest.mark.slow
def test_ridge_probe_regression_and_feature_cache(checkpoint, glue_dir, tmp_path):
  settings = lambda *more: run_lib.load_settings(
      [f'data_dir={glue_dir}', 'probe.kind=ridge', 'seeds=2', 'max_len=32', *more])
  s = settings('probe.layer=last')
  pre = loading.load(checkpoint)
  task = catalog.load_task('STS-B', s)
  results = run_lib.run(pre, task, 'probe', tmp_path, s, str(checkpoint))
  assert results['method'] == 'probe_ridge'
  assert set(results['metrics']['pretrained']['dev']) == {'pearson', 'spearman'}
  cached = sorted((tmp_path / 'features').glob('*.npz'))
  assert len(cached) == 2  # train and dev, computed once for both seeds
  written = [p.stat().st_mtime_ns for p in cached]
  # The same seeds again read the cache (no file is rewritten) and give the same numbers.
  again = run_lib.run(pre, task, 'probe', tmp_path, s, str(checkpoint))
  assert [p.stat().st_mtime_ns for p in cached] == written
  assert again['metrics'] == results['metrics']
  # probe.layer=1: the first block's features, cached apart, as a model cut to one block.
  lower = run_lib.run(pre, task, 'probe', tmp_path, settings('probe.layer=1'), str(checkpoint))
  assert len(list((tmp_path / 'features').glob('*.npz'))) == 4
  cut = dataclasses.replace(pre, model=encoding.truncate(pre.model, 1))
  assert lower['metrics'] == run_lib.run(cut, task, 'probe', tmp_path / 'cut', s,
                                         str(checkpoint))['metrics'] != results['metrics']
  assert 'features of block 1;' in (tmp_path / 'report.md').read_text()
  # probe.layer=best (the default): both blocks, from the cache, and per seed the one that
  # scores best on validation.
  best = run_lib.run(pre, task, 'probe', tmp_path, settings(), str(checkpoint))
  assert len(list((tmp_path / 'features').glob('*.npz'))) == 4
  for chosen, top, first in zip(best['runs'], results['runs'], lower['runs']):
    expected = top if top['val']['pearson'] >= first['val']['pearson'] else first
    assert chosen['layer'] == (2 if expected is top else 1)
    assert chosen['evals'] == expected['evals']
    assert [(b['layer'], b['val_pearson']) for b in chosen['layers']] == [
        (1, first['val']['pearson']), (2, top['val']['pearson'])]
  assert 'block chosen on validation by seed: pretrained ' in (tmp_path / 'report.md').read_text()
  # Another model at the same step never reads these features: the cache is keyed by weights.
  other = dataclasses.replace(pre, model=model_lib.build(pre.model_cfg, nnx.Rngs(5)))
  moved = run_lib.run(other, task, 'probe', tmp_path, s, str(checkpoint))
  assert len(list((tmp_path / 'features').glob('*.npz'))) == 6
  assert moved['metrics'] != results['metrics']


def test_a_damaged_feature_cache_is_computed_again(checkpoint, glue_dir, tmp_path):
  s = run_lib.load_settings([f'data_dir={glue_dir}', 'probe.kind=ridge', 'seeds=1',
                             'max_len=32', 'probe.layer=last', 'max_train_examples=20'])
  pre, task = loading.load(checkpoint), catalog.load_task('sst2', s)
  first = run_lib.run(pre, task, 'probe', tmp_path, s, str(checkpoint))
  for file in (tmp_path / 'features').glob('*.npz'):
    file.write_bytes(file.read_bytes()[:100])  # cut short, as by a full disk
  assert run_lib.run(pre, task, 'probe', tmp_path, s, str(checkpoint))['metrics'] == (
      first['metrics'])


@pytest.mark.slow
def test_evaluate_suite_table_and_partial_glue_average(checkpoint, glue_dir, tmp_path):
  _cli('evaluate', '--checkpoint', checkpoint, '--tasks', 'sst2,stsb', '--methods', 'probe',
       '--data-dir', glue_dir, '--workdir', tmp_path, '--set', 'seeds=1', '--set',
       'probe.epochs=3', '--set', 'max_len=32')
  suite = json.loads((tmp_path / 'results.json').read_text())
  column = 'probe_linear pretrained'
  sst2 = suite['tasks']['sst2'][column]['dev']['accuracy']['median']
  stsb = suite['tasks']['stsb'][column]['dev']
  expected = (sst2 + (stsb['pearson']['median'] + stsb['spearman']['median']) / 2) / 2
  average = suite['glue_average'][column]
  assert average == {'value': pytest.approx(expected), 'tasks': 2, 'complete': False}
  assert 'not all nine' in (tmp_path / 'report.md').read_text()
  assert (tmp_path / 'methods.png').is_file()
  assert (tmp_path / 'sst2' / 'probe' / 'results.json').is_file()


@pytest.mark.parametrize('overrides, task, fragments', [
    ([], 'sst2', ['pass --data-dir GLUE_DIR']),
    (['data_dir={glue}'], 'sst3', ["unknown task 'sst3'", "did you mean 'sst2'"]),
    (['data_dir={glue}', 'eval_splits=train'], 'sst2', ['scoring the training split']),
    (['data_dir={glue}', 'eval_splits=test'], 'sst2', ['has no labels', 'eval_splits=dev']),
    (['data_dir={glue}'], 'pos', ['needs --set train_file=FILE']),
    (['data_dir={glue}'], 'ner', ['needs --set train_file=FILE']),
])
def test_task_errors(overrides, task, fragments, glue_dir):
  s = run_lib.load_settings([o.format(glue=glue_dir) for o in overrides])
  with pytest.raises(UserError) as e:
    catalog.load_task(task, s)
  for fragment in fragments:
    assert fragment in str(e.value)


@pytest.mark.parametrize('item, fragment', [
    ('finetune.lrr=1e-4', 'did you mean finetune.lr?'),
    ('init=random', "init='random' is not one of pretrained, scratch, both"),
    ('seeds=0', r'seeds=0 must lie in \[1, inf\)'),
    ('probe.kind=svm', "probe.kind='svm'"),
])
def test_settings_errors(item, fragment):
  with pytest.raises(UserError, match=fragment.replace('?', r'\?')):
    run_lib.load_settings([item])


@pytest.mark.slow
def test_cli_errors_are_one_line(checkpoint, glue_dir, tmp_path, capsys):
  assert cli.main(['probe', '--checkpoint', str(tmp_path / 'nothing'), '--task', 'sst2',
                   '--workdir', str(tmp_path)]) == 2
  assert cli.main(['evaluate', '--checkpoint', str(checkpoint), '--tasks', 'sst2',
                   '--methods', 'probe,lora', '--data-dir', str(glue_dir),
                   '--workdir', str(tmp_path)]) == 2
  assert cli.main(['predict', '--model', str(tmp_path), '--input', 'x.txt']) == 2
  errors = capsys.readouterr().err.strip().splitlines()
  assert len(errors) == 3 and all(line.startswith('ssljax: error: ') for line in errors)
  assert "'lora' is not one of probe, finetune, fewshot" in errors[1]
  assert 'holds no fine-tuned model' in errors[2]


def test_subsets_are_fixed_by_data_seed(glue_dir):
  pick = lambda seed: [e.text for e in catalog.load_task('sst2', run_lib.load_settings(
      [f'data_dir={glue_dir}', 'max_train_examples=10', f'data_seed={seed}'])).train]
  assert pick(0) == pick(0) and pick(0) != pick(1) and len(pick(0)) == 10
  full = [e.text for e in readers.read_glue('sst2', glue_dir, 'train')]
  assert [full.index(t) for t in pick(0)] == sorted(full.index(t) for t in pick(0))


def test_pos_is_found_under_the_data_dir(tmp_path):
  ud = tmp_path / 'ud'
  ud.mkdir()
  sentence = '1\tHello\thello\tINTJ\t_\t_\t0\troot\t_\t_\n2\t!\t!\tPUNCT\t_\t_\t1\tpunct\t_\t_\n\n'
  for split in ('train', 'dev'):
    (ud / f'en_x-ud-{split}.conllu').write_text(sentence)
  task = catalog.load_task('pos', run_lib.load_settings([f'data_dir={tmp_path}']))
  assert task.spec.name == 'pos' and list(task.evals) == ['en_x-ud-dev']  # the file's name
  assert task.train[0].words == ['Hello', '!']


@pytest.mark.slow
def test_ridge_probe_during_pretraining(corpus_file, tokenizer_file, glue_dir, tmp_path):
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file, 'train.steps': 4,
                                       'probe.task': 'sst2', 'probe.every': 2,
                                       'probe.data_dir': str(glue_dir), 'probe.layer': 1})
  final = train.pretrain(config, tmp_path, hooks=hooks.from_config(config))
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  probed = {r['step']: r['probe_sst2_dev_accuracy'] for r in rows
            if 'probe_sst2_dev_accuracy' in r}
  assert sorted(probed) == [2, 4]
  # The same probe run afresh on the final checkpoint gives the logged figure.
  pre = loading.load(tmp_path)
  task = catalog.load_task('sst2', run_lib.load_settings([f'data_dir={glue_dir}']))
  again = run_lib.probe.ridge_probe_eval(encoding.truncate(pre.model, 1), pre.tokenizer,
                                         task.train, task.evals['dev'], task.spec, max_len=32)
  assert probed[4] == pytest.approx(again['accuracy']) == final['probe_sst2_dev_accuracy']


def _squad_file(path, count):
  context = ('The quick brown fox jumps over the lazy dog near the river bank while the '
             'sun sets behind the old stone bridge in the quiet village of Elm.')
  qas = [{'id': str(i), 'question': f'What does the fox jump over {i}?',
          'answers': [{'text': 'the lazy dog', 'answer_start': context.index('the lazy dog')}]}
         for i in range(count)]
  path.write_text(json.dumps({'data': [{'paragraphs': [{'context': context, 'qas': qas}]}]}))
  return path, context


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['pos', 'squad'])
def test_token_and_span_tasks_fine_tune_and_predict(kind, checkpoint, tmp_path):
  if kind == 'pos':
    line = '{n}\t{w}\t_\t{t}\t_\t_\t0\tdep\t_\t_'
    words = [('The', 'DET'), ('dog', 'NOUN'), ('runs', 'VERB'), ('.', 'PUNCT')]
    sentence = '\n'.join(line.format(n=i + 1, w=w, t=t) for i, (w, t) in enumerate(words))
    (tmp_path / 'x-ud-train.conllu').write_text((sentence + '\n\n') * 12)
    (tmp_path / 'x-ud-dev.conllu').write_text((sentence + '\n\n') * 3)
    overrides, inputs = [f'data_dir={tmp_path}'], 'The dog runs .\n'
  else:
    train_file, context = _squad_file(tmp_path / 'train.json', 12)
    eval_file, _ = _squad_file(tmp_path / 'dev.json', 3)
    overrides = [f'train_file={train_file}', f'eval_file={eval_file}', 'doc_stride=8']
    inputs = json.dumps({'question': 'What does the fox jump over?', 'context': context}) + '\n'
  s = run_lib.load_settings(overrides + ['seeds=1', 'finetune.epochs=1', 'finetune.min_steps=0',
                                         'finetune.lr=1e-3', 'batch_size=4', 'max_len=24'])
  results = run_lib.run(loading.load(checkpoint), catalog.load_task(kind, s), 'finetune',
                        tmp_path / 'out', s)
  split = {'pos': 'x-ud-dev', 'squad': 'dev'}[kind]  # named after the eval file
  metrics = results['metrics']['pretrained'][split]
  assert set(results['baseline']) == {split}
  top = {'pos': 1, 'squad': 100}[kind]  # token accuracy; SQuAD EM and F1 are percentages
  assert all(0 <= v['median'] <= top for v in metrics.values()), metrics
  (tmp_path / 'in.jsonl').write_text(inputs)
  _cli('predict', '--model', tmp_path / 'out' / 'model', '--input', tmp_path / 'in.jsonl',
       '--output', tmp_path / 'pred.jsonl')
  prediction = json.loads((tmp_path / 'pred.jsonl').read_text())
  if kind == 'pos':
    assert len(prediction['tags']) == 4 and set(prediction['tags']) <= set(readers.UPOS)
  else:  # one epoch learns nothing here: test_adapt_finetune checks that QA learns
    assert set(prediction) >= {'answer'}
