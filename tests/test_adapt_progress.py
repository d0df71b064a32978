"""What the adaptation commands show while they run: a line per epoch and learning rate, a line
per seed and per evaluated run, bars on stderr, silence with progress=False; and the split of
a file task named after its file."""

import json
import re

import pytest
from flax import nnx

from ssljax import models, pretrained, progress
from ssljax.adapt import fewshot, finetune, probe, run as run_lib, suite as suite_lib
from ssljax.tasks import catalog

import adapt_helpers
from adapt_helpers import SST2, _features, _settings, _task
from conftest import tiny_config

tok, bert = adapt_helpers.tok, adapt_helpers.bert  # fixtures
EPOCH_LINE = re.compile(r'seed (\d) epoch (\d)/(\d) lr (\S+): val accuracy \d\.\d{4}, '
                        r'val loss \d+\.\d{4}, loss \d+\.\d{4}, \d+ ex/s')


def _lines(text, pattern):
  """The groups of each line that `pattern` matches whole; bars end their lines with \\r."""
  return [m.groups() for m in map(re.compile(pattern).fullmatch, text.splitlines()) if m]


@pytest.mark.parametrize('search', ['grid', 'halving'])
def test_finetune_prints_a_line_per_epoch_of_every_rate(bert, tok, monkeypatch, capsys, search):
  monkeypatch.setattr(finetune, 'LR_GRID', (1e-4, 1e-3))
  monkeypatch.setattr(finetune, 'GRID_WIDTH', 32)  # the test model's width: unscaled
  result = finetune.finetune(bert, tok, SST2, _task('classification', 16, 0), {},
                             _settings(lr='auto', epochs=3, search=search), 2)
  out, err = capsys.readouterr()
  trained = {progress.rate(g['lr']): g['epochs_trained'] for g in result['grid']}
  if search == 'grid':  # one rate after another
    want = [('2', str(e), '3', lr) for lr in ('1e-4', '1e-3') for e in (1, 2, 3)]
    assert set(trained.values()) == {3}
  else:  # an epoch of every rate still training, then the next epoch
    want = [('2', str(e), '3', lr) for e in (1, 2, 3) for lr in ('1e-4', '1e-3')
            if trained[lr] >= e]
    assert min(trained.values()) >= 1
  assert _lines(err, EPOCH_LINE) == want
  assert 'sst2 finetune seed 2' in err  # the bar
  assert out == ''


def test_progress_false_prints_nothing(bert, tok, capsys):
  finetune.finetune(bert, tok, SST2, _task('classification', 16, 0), {},
                    _settings(epochs=2, progress=False), 0)
  probe.linear(_features('classification', 40, 0), {}, adapt_helpers.SPECS['classification'],
               _settings(epochs=2, progress=False), 0)
  assert capsys.readouterr() == ('', '')


def test_probe_and_prompting_show_bars(bert, tok, corpus_file, capsys):
  probe.extract(bert, tok, SST2, _task('classification', 6, 0), _settings(batch_size=4))
  probe.linear(_features('classification', 40, 0), {}, adapt_helpers.SPECS['classification'],
               _settings(epochs=2), 3)
  config = tiny_config(corpus_file, **{'model.arch': 'gpt', 'objective': 'clm'})
  model_cfg = models.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size)
  gpt = pretrained.Pretrained(config, model_cfg, models.build(model_cfg, nnx.Rngs(0)), tok, 0)
  fewshot.classify(gpt, SST2, _task('classification', 4, 0), _task('classification', 3, 1),
                     template='{text} is', verbalizers=(' bad', ' good'), shots=[0, 1], seed=5,
                     batch_size=4, show_progress=True)
  err = capsys.readouterr().err
  for bar in ('sst2 features', 'three linear probe seed 3', 'sst2 prompts seed 5'):
    assert bar in err


def _pre(bert, tok):
  return pretrained.Pretrained(None, bert.cfg, bert, tok, 0)


@pytest.mark.slow
def test_run_prints_a_line_per_seed_and_records_the_baseline(bert, tok, tmp_path, capsys):
  task = catalog.Task(SST2, _task('classification', 24, 0), {'dev': _task('classification', 8, 1)})
  s = run_lib.load_settings(['seeds=2', 'finetune.lr=1e-3', 'finetune.epochs=1', 'max_len=32',
                             'finetune.min_steps=0',
                             'batch_size=8'])
  results = run_lib.run(_pre(bert, tok), task, 'finetune', tmp_path, s)
  err = capsys.readouterr().err
  assert [g[:2] for g in _lines(err, EPOCH_LINE)] == [('0', '1'), ('1', '1')]
  seeds = _lines(err, r'sst2 pretrained seed (\d): chose lr 1e-3, epoch 1 \(val accuracy '
                 r'\d\.\d{4}\); dev accuracy \d\.\d{4}')
  assert seeds == [('0',), ('1',)]
  assert json.loads((tmp_path / 'results.json').read_text())['baseline'] == \
      results['baseline'] == {'dev': {'accuracy': 0.5}}  # train and dev alternate labels
  assert '| baseline: majority class | dev (n=8) | 0.5000 |' in (
      tmp_path / 'report.md').read_text()


@pytest.mark.slow
def test_evaluate_names_the_split_after_its_file_and_adds_the_baseline(bert, tok, tmp_path,
                                                                       capsys):
  for name, count, seed in (('reviews', 30, 0), ('reviews-heldout', 10, 1)):
    rows = ''.join(f'{e.text},{e.label}\n' for e in _task('classification', count, seed))
    (tmp_path / f'{name}.csv').write_text('text,label\n' + rows)
  s = run_lib.load_settings([f'train_file={tmp_path / "reviews.csv"}', 'seeds=1',
                             f'eval_file={tmp_path / "reviews-heldout.csv"}', 'max_len=32',
                             'probe.kind=ridge'])
  suite = suite_lib.run_suite(_pre(bert, tok), ['table'], ['probe'], tmp_path / 'out', s)
  columns = suite['tasks']['reviews']
  assert list(columns) == ['probe_ridge pretrained', 'baseline']
  assert list(columns['baseline']) == ['reviews-heldout']
  assert columns['baseline']['reviews-heldout']['accuracy']['median'] == 0.5
  assert len(_lines(capsys.readouterr().err, r'evaluate 1/1: reviews probe_ridge pretrained '
                    r'reviews-heldout accuracy (\d\.\d{4}) \(baseline 0\.5000\)')) == 1
  assert '| reviews | reviews-heldout | accuracy |' in (tmp_path / 'out' / 'report.md').read_text()


@pytest.mark.parametrize('path, name', [('ud/en_ewt-ud-test.conllu', 'en_ewt-ud-test'),
                                        ('squad/dev-v1.1.json', 'dev-v1.1'),
                                        ('other/train.csv', 'eval-train')])
def test_split_names(path, name):
  assert catalog.split_name(path) == name
