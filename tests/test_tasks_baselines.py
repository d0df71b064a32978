"""Trivial baselines worked by hand, the report's baseline row and warnings, the learning-rate
grid's choice on validation only, and the defaults fitting separable toy tasks."""

import dataclasses

import pytest

from ssljax.adapt import finetune, probe, report, run as run_lib
from ssljax.cli import adapt as cli_adapt
from ssljax.errors import UserError
from ssljax.tasks import baselines, kinds, readers
from ssljax.tasks.readers import Example

import adapt_helpers
from adapt_helpers import SPECS, _features, _script_pearson, _settings, _task

tok, bert = adapt_helpers.tok, adapt_helpers.bert  # fixtures
THREE = SPECS['classification']  # labels x, y, z; accuracy
TAGS = readers.TaskSpec('tags', 'tokens', ('DET', 'NOUN', 'VERB'), False, ('token_accuracy',))


def _tagged(*sentences):
  """Examples from 'word/TAG word/TAG ...' strings."""
  out = []
  for sentence in sentences:
    words, tags = zip(*(item.split('/') for item in sentence.split()))
    out.append(Example(words=list(words), tags=[TAGS.labels.index(t) for t in tags]))
  return out


def test_majority_class_by_hand():
  train = [Example(label=v) for v in (0, 2, 2, 1, 2, 0)]  # z three times
  dev = [Example(label=v) for v in (2, 0, 1, 2)]
  assert baselines.predictions(THREE, train, dev) == [2, 2, 2, 2]
  assert baselines.score(THREE, train, {'dev': dev}) == {'dev': {'accuracy': 0.5}}
  tie = [Example(label=v) for v in (1, 0, 1, 0)]
  assert baselines.predictions(THREE, tie, dev[:1]) == [0]  # ties go to the lowest id


def test_most_frequent_tag_per_word_by_hand():
  train = _tagged('the/DET dog/NOUN runs/VERB', 'the/DET runs/NOUN', 'runs/VERB',
                  'dog/NOUN cat/NOUN')  # runs: VERB 2, NOUN 1; overall NOUN (4)
  dev = _tagged('the/DET fox/NOUN runs/VERB', 'a/DET dog/VERB')
  assert baselines.predictions(TAGS, train, dev) == [['DET', 'NOUN', 'VERB'],
                                                     ['NOUN', 'NOUN']]  # fox, a: unseen
  assert baselines.score(TAGS, train, {'test': dev}) == {'test': {'token_accuracy': 0.6}}


def test_training_mean_for_regression_with_its_squared_error():
  spec = SPECS['regression']
  train = [Example(label=v) for v in (1.0, 2.0, 3.0, 6.0)]  # mean 3
  dev = [Example(label=v) for v in (2.0, 4.0, 5.0)]
  assert baselines.predictions(spec, train, dev) == [3.0, 3.0, 3.0]
  got = baselines.score(spec, train, {'dev': dev})['dev']
  assert got == {'pearson': 0.0, 'spearman': 0.0, 'mse': pytest.approx((1 + 1 + 4) / 3)}


def test_first_words_of_the_context_for_qa():
  answers = ['Paris', 'the river', 'old stone']  # 1, 2, 2 words: k = 2
  train = [Example(context=f'{a} is here', question='q', answers=[(a, 0)]) for a in answers]
  dev = [Example(context='  The quick brown fox.', question='q', answers=[('quick brown', 6)])]
  assert baselines.predictions(readers.SQUAD, train, dev) == ['The quick']
  got = baselines.score(readers.SQUAD, train, {'dev': dev})['dev']
  # SQuAD drops the article: 'quick' against 'quick brown', precision 1, recall 1/2.
  assert got == {'exact_match': 0.0, 'f1': pytest.approx(100 * 2 / 3)}


def _results(accuracies, confusions=None, baseline=0.6):
  """results.json as run() writes it for one group of seeds on THREE's dev split."""
  runs = []
  for seed, value in enumerate(accuracies):
    confusion = (confusions or [[[2, 0, 0], [0, 1, 1], [0, 0, 1]]] * len(accuracies))[seed]
    runs.append({'group': 'pretrained', 'init': 'pretrained', 'seed': seed,
                 'evals': {'dev': {'metrics': {'accuracy': value},
                                   'confusion_matrix': confusion}}})
  results = {'task': 'three', 'method': 'finetune', 'checkpoint': 'ckpt', 'checkpoint_step': 6,
             'model': {'arch': 'bert', 'num_layers': 2, 'hidden_size': 32, 'params': 1000},
             'seeds': list(range(len(runs))), 'examples': {'train': 20, 'dev': 5},
             'seconds': 1.0, 'metrics_names': ['accuracy'], 'runs': runs,
             'baseline_name': 'majority class', 'baseline': {'dev': {'accuracy': baseline}},
             'metrics': run_lib.summarize(runs)}
  results['warnings'] = baselines.warnings(results, THREE)
  return results


@pytest.mark.parametrize('accuracies, beaten', [([0.8, 0.4, 0.9], True),  # median 0.8
                                                ([0.6, 0.4, 0.9], False),  # 0.6: a tie loses
                                                ([0.2], False)])
def test_report_has_the_baseline_row_and_says_when_it_is_not_beaten(accuracies, beaten):
  text = report.markdown(_results(accuracies))
  assert '| baseline: majority class | dev (n=5) | 0.6000 |' in text
  assert ('does not beat the majority class baseline on dev' in text) != beaten
  assert 'collapsed' not in text


def test_a_classifier_predicting_one_class_on_every_seed_is_flagged():
  one_class = [[0, 0, 2], [0, 0, 2], [0, 0, 1]]  # every example predicted z
  other = [[0, 2, 0], [0, 2, 0], [0, 1, 0]]  # every example y
  mixed = [[2, 0, 0], [0, 1, 1], [0, 0, 1]]
  flagged = _results([0.9, 0.9], [one_class, other])['warnings']
  assert len(flagged) == 1 and 'collapsed' in flagged[0] and '(y, z)' in flagged[0]
  assert 'on all 2 seeds' in flagged[0]
  assert 'collapsed' in report.markdown(_results([0.9, 0.9], [one_class, other]))
  assert not _results([0.9, 0.9], [one_class, mixed])['warnings']  # one seed learnt
  single_class_truth = [[0, 0, 0], [0, 0, 0], [0, 0, 5]]  # right to predict only z
  assert not _results([1.0], [single_class_truth])['warnings']


@pytest.mark.parametrize('method, advice', [('finetune', 'finetune.lr'),
                                             ('probe_ridge', 'probe.layer'),
                                             ('fewshot', 'fewshot.template')])
def test_a_regressor_predicting_one_value_on_every_seed_is_flagged(method, advice):
  """STS-B Pearson 0.000 from a constant prediction reads as a result; it is a collapse, and
  the advice names the method's own settings."""
  truths = [0.0, 1.0, 2.5, 4.0, 5.0]
  score = lambda predictions: kinds.score(SPECS['regression'], [
      Example(text=str(t), label=t) for t in truths], predictions)
  constant, spread = score([2.5] * 5), score([0.5, 1.0, 2.0, 4.5, 4.0])
  results = {'task': 'score', 'method': method, 'runs': [
      {'group': 'pretrained', 'seed': seed, 'evals': {'dev': evals}}
      for seed, evals in enumerate([constant, constant])]}
  flagged = baselines._collapsed(results, SPECS['regression'])  # pylint: disable=protected-access
  assert len(flagged) == 1 and 'predicted one value for every dev example' in flagged[0]
  assert advice in flagged[0]
  results['runs'][1]['evals']['dev'] = spread  # one seed learnt
  assert not baselines._collapsed(results, SPECS['regression'])  # pylint: disable=protected-access


def test_lr_auto_picks_the_best_validation_rate_and_epoch(bert, tok, monkeypatch):
  monkeypatch.setattr(finetune, 'LR_GRID', (1e-4, 1e-3, 1e-2))
  monkeypatch.setattr(finetune, 'GRID_WIDTH', 32)  # the test model's width: unscaled
  # Validation pearson of each call: epoch 0, then epochs 1-2 of each rate in turn.
  seen = _script_pearson(monkeypatch, [0.0, 0.1, 0.2, 0.3, 0.8, 0.5, 0.4])
  train = _task('regression', 24, 0)
  cfg = _settings(lr='auto', epochs=2, progress=False, search='grid')
  val = [train[i] for i in probe.carve(24, cfg.val_fraction, 0)[1]]
  result = finetune.finetune(bert, tok, SPECS['regression'], train, {'val': val}, cfg, 0)
  assert (result['lr'], result['epoch'], result['val']['pearson']) == (1e-3, 2, 0.8)
  assert [(g['lr'], g['epoch'], g['val_pearson']) for g in result['grid']] == [
      (1e-4, 2, 0.2), (1e-3, 2, 0.8), (1e-2, 1, 0.5)]
  assert seen[-1] == seen[4] != seen[6]  # scored with the chosen weights


def test_halving_stops_the_worse_half_after_each_epoch(bert, tok, monkeypatch):
  monkeypatch.setattr(finetune, 'LR_GRID', (1e-5, 1e-4, 1e-3, 1e-2))
  monkeypatch.setattr(finetune, 'GRID_WIDTH', 32)  # the test model's width: unscaled
  # Epoch 0; epoch 1 of the four rates; epoch 2 of the best two (1e-4 at 0.6, 1e-3 at 0.5,
  # also the two lowest losses); epoch 3 of the best one by its best epoch so far (1e-3's 0.7
  # beats 1e-4's 0.6, and its loss is the lower).
  seen = _script_pearson(monkeypatch, [0.0, 0.1, 0.6, 0.5, 0.2, 0.55, 0.7, 0.65])
  losses, real = iter([1.0, 0.9, 0.8, 0.7, 0.95, 0.75, 0.6, 0.65]), finetune._Seed.validate
  monkeypatch.setattr(finetune._Seed, 'validate',
                      lambda run, params: (real(run, params)[0], next(losses)))
  train = _task('regression', 24, 0)
  cfg = _settings(lr='auto', epochs=3, progress=False, search='halving')
  val = [train[i] for i in probe.carve(24, cfg.val_fraction, 0)[1]]
  result = finetune.finetune(bert, tok, SPECS['regression'], train, {'val': val}, cfg, 0)
  assert (result['lr'], result['epoch'], result['val']['pearson']) == (1e-3, 2, 0.7)
  assert [(g['lr'], g['epoch'], g['val_pearson'], g['epochs_trained'])
          for g in result['grid']] == [(1e-5, 1, 0.1, 1), (1e-4, 1, 0.6, 2), (1e-3, 2, 0.7, 3),
                                       (1e-2, 1, 0.2, 1)]
  assert len(seen) == 9 and seen[-1] == seen[6] != seen[7]  # scored with epoch 2's weights
  assert [p['epoch'] for p in result['curve']] == [0, 1, 2, 3]


def test_halving_keeps_the_better_half_by_score_with_ties_and_by_loss():
  def trial(i, metric, loss):
    return finetune._Trial(i, 10.0 ** -i, rank=(metric, -loss), low_loss=loss)

  rates = [trial(0, 0.5, 0.69), trial(1, 0.5, 0.70), trial(2, 0.5, 0.71), trial(3, 0.5, 0.72)]
  assert [t.index for t in finetune.survivors(rates, 2)] == [0, 1, 2, 3]  # none learnt more
  rates = [trial(0, 0.9, 0.5), trial(1, 0.8, 0.4), trial(2, 0.7, 0.3), trial(3, 0.6, 0.9)]
  assert [t.index for t in finetune.survivors(rates, 2)] == [0, 1, 2]  # 2: the lowest loss
  assert [t.index for t in finetune.survivors(rates, 1)] == [0, 2]
  rates[2].low_loss = 0.55
  assert [t.index for t in finetune.survivors(rates, 2)] == [0, 1]
  assert [t.index for t in finetune.survivors(rates, 1)] == [0, 1]
  rates[1].low_loss = 0.5  # 0 and 1 tie on loss: the lower rate goes first
  assert [t.index for t in finetune.survivors(rates, 1)] == [0]


def test_halving_plan_and_its_cost():
  assert finetune.trials_per_epoch(4, 3, 'halving') == [4, 2, 1]
  assert finetune.trials_per_epoch(5, 4, 'halving') == [5, 3, 2, 1]
  assert finetune.trials_per_epoch(1, 3, 'halving') == [1, 1, 1]
  assert finetune.trials_per_epoch(4, 3, 'grid') == [4, 4, 4]
  with pytest.raises(UserError, match='finetune.search=.fast. is not one of halving, grid'):
    run_lib.load_settings(['finetune.search=fast'])


def test_equal_validation_scores_go_to_the_lower_validation_loss():
  same = {'metrics': {'accuracy': 0.9}}
  assert finetune._rank(same, 0.2, 'accuracy') > finetune._rank(same, 0.3, 'accuracy')
  assert finetune._rank(same, float('nan'), 'accuracy') < finetune._rank(same, 9.0, 'accuracy')
  assert finetune._rank({'metrics': {'accuracy': float('nan')}}, 0.1, 'accuracy') < \
      finetune._rank({'metrics': {'accuracy': 0.0}}, 9.0, 'accuracy')


def _relabelled(examples):
  """The same inputs with every class label flipped."""
  return [dataclasses.replace(e, label=1 - e.label) for e in examples]


def test_evaluation_labels_change_no_choice(bert, tok):
  train, test = _task('classification', 24, 0), _task('classification', 12, 1)
  cfg = _settings(lr='auto', epochs=2, progress=False)
  runs = [finetune.finetune(bert, tok, adapt_helpers.SST2, train, {'test': split}, cfg, 0)
          for split in (test, _relabelled(test))]
  assert runs[0]['grid'] == runs[1]['grid'] and len(runs[0]['grid']) == len(finetune.LR_GRID)
  assert (runs[0]['lr'], runs[0]['epoch']) == (runs[1]['lr'], runs[1]['epoch'])
  accuracy = [r['evals']['test']['metrics']['accuracy'] for r in runs]
  assert accuracy[0] == pytest.approx(1 - accuracy[1])  # the labels did change the score

  features, evaluation = _features('classification', 120, 1), _features('classification', 40, 2)
  flipped = dataclasses.replace(evaluation, examples=[
      dataclasses.replace(e, label=(e.label + 1) % 3) for e in evaluation.examples])
  ridges = [probe.ridge(features, {'test': split}, THREE, _settings(val_fraction=0.2), 0)
            for split in (evaluation, flipped)]
  assert ridges[0]['lambda'] == ridges[1]['lambda']
  assert ridges[0]['curve'] == ridges[1]['curve']
  assert ridges[0]['evals'] != ridges[1]['evals']


@pytest.mark.slow
@pytest.mark.parametrize('kind, spec', [('classification', adapt_helpers.SST2),
                                        ('tokens', SPECS['tokens'])])
def test_default_settings_fit_a_separable_task(bert, tok, kind, spec):
  cfg = run_lib.method_settings(run_lib.load_settings(['progress=false']), 'finetune',
                                bert.cfg)
  assert (cfg.lr, cfg.epochs, cfg.batch_size) == ('auto', 3, 32)
  # 600 examples: 17 steps an epoch; the random 2-layer model needs about 40 at 1e-3.
  result = finetune.finetune(bert, tok, spec, _task(kind, 600, 0), {'test': _task(kind, 64, 1)},
                             cfg, 0)
  main = spec.metrics[0]
  assert result['evals']['test']['metrics'][main] >= 0.95, result['grid']


@pytest.mark.parametrize('value, fragment', [('fast', 'neither auto nor a number'),
                                             ('0', 'positive'), ('-1e-3', 'positive')])
def test_bad_learning_rates(value, fragment):
  with pytest.raises(UserError, match=fragment):
    run_lib.load_settings([f'finetune.lr={value}'])
  assert run_lib.load_settings(['finetune.lr=3e-4']).finetune.lr == '3e-4'
  assert finetune.learning_rates('3e-4') == (3e-4,) and finetune.learning_rates(2e-5) == (2e-5,)
  assert finetune.learning_rates('1e-3, 3e-3') == (1e-3, 3e-3)  # a grid of one's own
  assert finetune.learning_rates('AUTO') == finetune.LR_GRID


def test_a_rate_at_the_end_of_the_grid_on_every_seed_is_flagged():
  grid = [{'lr': lr} for lr in finetune.LR_GRID]
  runs = lambda *rates: {'task': 't', 'method': 'finetune', 'runs': [
      {'group': 'pretrained', 'lr': lr, 'grid': grid} for lr in rates]}
  assert run_lib._edge_of_grid(runs(1e-3, 1e-3)) == [
      't finetune pretrained chose the highest learning rate of the grid, 1e-3, on every '
      'seed; the best may lie beyond it: try --set finetune.lr=1e-3,3e-3,1e-2']
  assert 'finetune.lr=3e-6,1e-5,3e-5' in run_lib._edge_of_grid(runs(3e-5))[0]
  assert not run_lib._edge_of_grid(runs(1e-3, 3e-4))
  assert not run_lib._edge_of_grid(runs(1e-4, 1e-4))


def test_the_help_states_the_grid_and_its_cost():
  grid = ','.join(f'{lr:.0e}'.replace('e-0', 'e-') for lr in finetune.LR_GRID)
  assert grid in cli_adapt.SETTINGS_HELP
  epochs = run_lib.defaults().finetune.epochs
  for search in finetune.SEARCHES:
    cost = sum(finetune.trials_per_epoch(len(finetune.LR_GRID), epochs, search)) / epochs
    assert f'costs {cost:.2g} x' in cli_adapt.SETTINGS_HELP, search


def test_auto_rates_scale_up_for_narrow_models():
  assert finetune.learning_rates('auto', 768) == finetune.LR_GRID
  assert finetune.learning_rates('auto', finetune.GRID_WIDTH) == finetune.LR_GRID
  assert finetune.learning_rates('auto', 128) == (9e-5, 3e-4, 9e-4, 3e-3)
  assert finetune.learning_rates('1e-3', 128) == (1e-3,)  # a rate given is a rate kept


def test_small_training_sets_get_min_steps_updates():
  assert finetune.epochs_for(3, 300, 29) == 11  # 1,000 examples at 32 a batch
  assert finetune.epochs_for(3, 300, 2100) == 3  # all of SST-2: epochs as asked
  assert finetune.epochs_for(3, 0, 5) == 3
