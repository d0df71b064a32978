"""Tests for ssljax.tasks.scores against scikit-learn, scipy and hand-worked examples."""

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from ssljax.tasks import readers, scores


def _labels(seed, size, num_classes):
  rng = np.random.default_rng(seed)
  return rng.integers(0, num_classes, size), rng.integers(0, num_classes, size)


@pytest.mark.filterwarnings('ignore:A single label was found:UserWarning')  # sklearn's
@pytest.mark.parametrize('seed, size, num_classes', [
    (0, 1, 2), (1, 7, 2), (2, 50, 2), (3, 200, 3), (4, 31, 5), (5, 3, 4)])
def test_classification_metrics_match_sklearn(seed, size, num_classes):
  y_true, y_pred = _labels(seed, size, num_classes)
  assert scores.accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))
  assert scores.matthews_corrcoef(y_true, y_pred) == pytest.approx(
      sk.matthews_corrcoef(y_true, y_pred), abs=1e-12)
  labels = list(range(num_classes))
  np.testing.assert_array_equal(scores.confusion_matrix(y_true, y_pred, num_classes),
                                sk.confusion_matrix(y_true, y_pred, labels=labels))
  precision, recall, f1, support = sk.precision_recall_fscore_support(
      y_true, y_pred, labels=labels, zero_division=0)
  per_class = scores.precision_recall_f1_per_class(y_true, y_pred, num_classes)
  np.testing.assert_allclose(per_class['precision'], precision)
  np.testing.assert_allclose(per_class['recall'], recall)
  np.testing.assert_allclose(per_class['f1'], f1)
  assert per_class['support'] == support.tolist()


@pytest.mark.parametrize('y_true, y_pred', [
    _labels(6, 40, 2), _labels(7, 5, 2), ([0, 0, 0], [0, 0, 0]), ([1, 1], [0, 0]),
    ([0, 1, 0], [0, 0, 0]), ([1, 1, 1], [1, 1, 1])])
def test_binary_f1_matches_sklearn(y_true, y_pred):
  assert scores.f1(y_true, y_pred) == pytest.approx(
      sk.f1_score(y_true, y_pred, zero_division=0))


def _floats(seed, size, decimals):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=size)
  y = 0.5 * x + rng.normal(size=size)
  return (x, y) if decimals is None else (np.round(x, decimals), np.round(y, decimals))


@pytest.mark.parametrize('seed, size, decimals', [
    (0, 2, None), (1, 10, None), (2, 500, None), (3, 60, 0), (4, 25, 1), (5, 8, 0)])
def test_correlations_match_scipy_with_ties(seed, size, decimals):
  x, y = _floats(seed, size, decimals)
  assert scores.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
  assert scores.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def test_spearman_ranks_ties_by_their_mean():
  # Ranks of [1, 2, 2, 3] are [1, 2.5, 2.5, 4]; of [4, 3, 2, 1] are [4, 3, 2, 1].
  assert scores.spearman([1, 2, 2, 3], [4, 3, 2, 1]) == pytest.approx(
      stats.pearsonr([1, 2.5, 2.5, 4], [4, 3, 2, 1])[0])


@pytest.mark.filterwarnings('ignore:A single label was found:UserWarning')  # sklearn's
@pytest.mark.parametrize('y_true, y_pred', [
    ([0, 1, 1, 0], [1, 1, 1, 1]), ([1, 1, 1], [0, 1, 0]), ([2, 2], [2, 2])])
def test_constant_sides_give_zero_without_warnings(y_true, y_pred):
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    assert scores.matthews_corrcoef(y_true, y_pred) == 0.0
    assert scores.pearson(y_true, y_pred) == 0.0
    assert scores.spearman(y_true, y_pred) == 0.0
  assert sk.matthews_corrcoef(y_true, y_pred) == 0.0


def test_pearson_of_a_constant_float_with_rounding_error_is_zero():
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    assert scores.pearson([0.1, 0.2, 0.7], [0.1] * 3) == 0.0


def test_bad_inputs_are_value_errors():
  with pytest.raises(ValueError, match='3 targets but 2 predictions'):
    scores.accuracy([0, 1, 1], [0, 1])
  with pytest.raises(ValueError, match='no examples'):
    scores.pearson([], [])
  with pytest.raises(ValueError, match='prediction class 3 is outside 0..2'):
    scores.confusion_matrix([0, 1], [3, 0], 3)


def test_entity_f1_hand_worked():
  true = [['B-PER', 'I-PER', 'O', 'B-LOC'], ['I-ORG', 'I-ORG', 'O']]
  pred = [['B-PER', 'I-PER', 'O', 'B-ORG'], ['B-ORG', 'I-ORG', 'O']]
  # True entities: PER 0-1, LOC 3 and (an I- after the start begins one) ORG 0-1.
  # Predicted: PER 0-1, ORG 3, ORG 0-1. Two of three match: F1 = 2 * 2 / (3 + 3).
  assert scores.entity_f1(true, pred) == pytest.approx(2 / 3)


@pytest.mark.parametrize('true, pred, expected', [
    ([['O', 'I-PER', 'I-PER']], [['O', 'B-PER', 'I-PER']], 1.0),  # I after O starts one
    ([['B-PER', 'I-LOC']], [['B-PER', 'B-LOC']], 1.0),  # a new type starts one
    ([['B-PER', 'I-PER']], [['B-PER', 'O']], 0.0),  # partial spans do not count
    ([['B-PER', 'B-PER']], [['B-PER', 'I-PER']], 0.0),  # two entities vs one
    ([['O', 'B-LOC', 'I-LOC', 'O', 'B-PER']], [['O', 'B-LOC', 'I-LOC', 'O', 'O']], 2 / 3),
    ([['O', 'O']], [['O', 'O']], 0.0),  # nothing to find: 0, as seqeval
])
def test_entity_f1_chunking(true, pred, expected):
  assert scores.entity_f1(true, pred) == pytest.approx(expected)


def test_token_accuracy_counts_words_over_all_sentences():
  assert scores.token_accuracy([['A', 'B'], ['C']], [['A', 'X'], ['C']]) == pytest.approx(2 / 3)
  with pytest.raises(ValueError, match='sentence 1: 1 true tags but 2 predicted'):
    scores.token_accuracy([['A'], ['B']], [['A'], ['B', 'C']])


@pytest.mark.parametrize('text, normal', [
    ('The  Quick, brown fox!', 'quick brown fox'),
    ('An apple a day', 'apple day'),
    ('theory of another anthem', 'theory of another anthem'),  # articles only as words
    ("Anne's 1,000-year (old) house.", 'annes 1000year old house'),
    ('the', ''),
])
def test_normalize_answer_like_the_official_script(text, normal):
  assert scores.normalize_answer(text) == normal


def test_squad_exact_match_and_f1_hand_worked():
  truths = [['The Eiffel Tower', 'Eiffel Tower'], ['1990'], ['red car park', 'a red car']]
  predictions = ['eiffel tower.', '1991', 'the big red car']
  # EM: 1, 0, 0. F1: 1; 0; best of 2*(2/3)(2/3)/(4/3) = 2/3 and 2*(2/3)(1)/(5/3) = 0.8.
  assert scores.exact_match(truths, predictions) == pytest.approx(100 / 3)
  assert scores.squad_f1(truths, predictions) == pytest.approx(100 * 1.8 / 3)
  assert scores.compute(('exact_match', 'f1'), truths, predictions) == {
      'exact_match': pytest.approx(100 / 3), 'f1': pytest.approx(60.0)}


def _perfect(spec):
  """Targets of the spec's kind, to score against themselves."""
  if spec.kind == 'span':
    return [['an answer'], ['the other']], ['an answer', 'other']
  if spec.kind == 'tokens':
    tags = [['B-X', 'I-X', 'O'], ['O', 'B-X']]
    return tags, tags
  if spec.kind == 'regression':
    return [0.5, 2.0, 4.5], [0.5, 2.0, 4.5]
  return [0, 1, 1, 0], [0, 1, 1, 0]


@pytest.mark.parametrize('spec', [*readers.TASKS.values(),
                                  readers.TaskSpec('ner', 'tokens', (), False, ('entity_f1',))],
                         ids=lambda spec: spec.name)
def test_every_task_metric_is_computed(spec):
  result = scores.compute(spec.metrics, *_perfect(spec))
  best = 100.0 if spec.kind == 'span' else 1.0
  assert result == {name: pytest.approx(best) for name in spec.metrics}


def test_compute_names_an_unknown_metric():
  with pytest.raises(ValueError, match="unknown metric 'auc'"):
    scores.compute(('accuracy', 'auc'), [0], [0])


def _leaderboard_row(cola, sst2, mrpc, stsb, qqp, mnli_m, mnli_mm, qnli, rte, wnli):
  return {'cola': {'matthews': cola}, 'sst2': {'accuracy': sst2},
          'mrpc': dict(zip(('f1', 'accuracy'), mrpc)),
          'stsb': dict(zip(('pearson', 'spearman'), stsb)),
          'qqp': dict(zip(('f1', 'accuracy'), qqp)), 'mnli_matched': {'accuracy': mnli_m},
          'mnli_mismatched': {'accuracy': mnli_mm}, 'qnli': {'accuracy': qnli},
          'rte': {'accuracy': rte}, 'wnli': {'accuracy': wnli}}


# Rows of the GLUE leaderboard (test sets) with their listed scores.
_BERT_LARGE = _leaderboard_row(60.5, 94.9, (89.3, 85.4), (87.6, 86.5), (72.1, 89.3), 86.7,
                               85.9, 92.7, 70.1, 65.1)
_BORT = _leaderboard_row(63.9, 96.2, (94.1, 92.3), (89.2, 88.3), (66.0, 85.9), 88.1, 87.8,
                         92.3, 82.7, 71.2)


@pytest.mark.parametrize('row, listed', [(_BERT_LARGE, 80.5), (_BORT, 83.6)])
def test_glue_score_reproduces_the_leaderboard(row, listed):
  assert round(scores.glue_score(row), 1) == listed


def test_glue_score_ignores_other_figures():
  with_extras = _BERT_LARGE | {'sst2': {'accuracy': 94.9, 'loss': 0.2}, 'ax': {'x': 1.0}}
  assert scores.glue_score(with_extras) == scores.glue_score(_BERT_LARGE)


def test_glue_score_averages_two_metrics_and_both_mnli_sets():
  results = {entry: {'accuracy': 0.0, 'f1': 0.0, 'matthews': 0.0, 'pearson': 0.0,
                     'spearman': 0.0} for entry in _BERT_LARGE}
  results['mrpc'] = {'f1': 0.9, 'accuracy': 0.0}
  results['mnli_mismatched'] = {'accuracy': 0.9}
  assert scores.glue_score(results) == pytest.approx((0.45 + 0.45) / 9)


def test_glue_score_needs_every_task():
  partial = {k: v for k, v in _BERT_LARGE.items() if k not in ('rte', 'mnli_mismatched')}
  with pytest.raises(ValueError, match=r'missing mnli_mismatched\[accuracy\], rte\[accuracy\]'):
    scores.glue_score(partial)
