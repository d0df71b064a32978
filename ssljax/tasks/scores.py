"""Task metrics in numpy, each defined the way its benchmark defines it.

Classification and correlation metrics agree with scikit-learn and scipy (the tests
compare them); entity F1 chunks tags like seqeval's default (conlleval) mode; SQuAD
exact match and F1 follow the official v1.1 evaluation script, in percent as it reports
them. The others are fractions, as scikit-learn returns them. A degenerate input such
as a constant prediction scores 0 instead of NaN, so a collapsed model still gets a
number in its report.
"""

import collections
import re
import string

import numpy as np

from ssljax.tasks import readers

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r'\b(a|an|the)\b')
# GLUE's MNLI task is scored on both dev sets; results carry them as two entries.
_GLUE_ENTRIES = {'mnli': ('mnli_matched', 'mnli_mismatched')}


def _pair(y_true, y_pred, dtype=None) -> tuple[np.ndarray, np.ndarray]:
  """Both sides as 1-d arrays of one length; scoring nothing is a caller's bug."""
  y_true = np.asarray(y_true, dtype).ravel()
  y_pred = np.asarray(y_pred, dtype).ravel()
  if len(y_true) != len(y_pred):
    raise ValueError(f'{len(y_true)} targets but {len(y_pred)} predictions')
  if not len(y_true):
    raise ValueError('no examples to score')
  return y_true, y_pred


def _ratio(numerator, denominator):
  """numerator / denominator, 0 where the denominator is 0 (scikit-learn's default)."""
  numerator = np.asarray(numerator, np.float64)
  denominator = np.asarray(denominator, np.float64)
  safe = np.where(denominator == 0, 1.0, denominator)
  return np.where(denominator == 0, 0.0, numerator / safe)


def accuracy(y_true, y_pred) -> float:
  y_true, y_pred = _pair(y_true, y_pred)
  return float(np.mean(y_true == y_pred))


def f1(y_true, y_pred) -> float:
  """Binary F1 of the positive class 1 (MRPC 'equivalent', QQP 'duplicate')."""
  y_true, y_pred = _pair(y_true, y_pred)
  true_positives = np.sum((y_true == 1) & (y_pred == 1))
  return float(_ratio(2 * true_positives, np.sum(y_true == 1) + np.sum(y_pred == 1)))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
  """Counts indexed [true class, predicted class], laid out as scikit-learn does."""
  y_true, y_pred = _pair(y_true, y_pred, np.int64)
  for side, ids in (('target', y_true), ('prediction', y_pred)):
    outside = ids[(ids < 0) | (ids >= num_classes)]
    if outside.size:
      raise ValueError(f'{side} class {outside[0]} is outside 0..{num_classes - 1}')
  counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes)


def precision_recall_f1_per_class(y_true, y_pred, num_classes: int) -> dict[str, list]:
  """Per-class precision, recall, F1 and support, as lists ready for results.json."""
  matrix = confusion_matrix(y_true, y_pred, num_classes)
  hits = np.diag(matrix)
  predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
  return {
      'precision': _ratio(hits, predicted).tolist(),
      'recall': _ratio(hits, support).tolist(),
      'f1': _ratio(2 * hits, predicted + support).tolist(),
      'support': support.tolist(),
  }


def matthews_corrcoef(y_true, y_pred) -> float:
  """Multiclass Matthews correlation (scikit-learn's formula); 0 if either side is constant."""
  y_true, y_pred = _pair(y_true, y_pred, np.int64)
  num_classes = int(max(y_true.max(), y_pred.max())) + 1
  matrix = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
  true_sums, pred_sums = matrix.sum(axis=1), matrix.sum(axis=0)
  total = matrix.sum()
  covariance = np.trace(matrix) * total - true_sums @ pred_sums
  variance_true = total * total - true_sums @ true_sums
  variance_pred = total * total - pred_sums @ pred_sums
  if variance_true * variance_pred == 0:
    return 0.0
  return float(covariance / np.sqrt(variance_true * variance_pred))


def pearson(y_true, y_pred) -> float:
  """Pearson's r; 0 (not NaN) when either side is constant, e.g. a collapsed regressor."""
  x, y = _pair(y_true, y_pred, np.float64)
  if np.all(x == x[0]) or np.all(y == y[0]):
    return 0.0
  x, y = x - x.mean(), y - y.mean()
  return float(np.clip(x @ y / np.sqrt((x @ x) * (y @ y)), -1.0, 1.0))


def spearman(y_true, y_pred) -> float:
  """Spearman's rho: Pearson's r of the ranks, ties sharing their mean rank."""
  x, y = _pair(y_true, y_pred, np.float64)
  return pearson(_average_ranks(x), _average_ranks(y))


def _average_ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks where tied values share their mean rank (scipy's 'average')."""
  order = np.argsort(values, kind='stable')
  ordered = values[order]
  starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
  ends = np.r_[starts[1:], len(values)]
  ranks = np.empty(len(values))
  ranks[order] = np.repeat((starts + 1 + ends) / 2, ends - starts)
  return ranks


def _flat_tags(true_tag_seqs, pred_tag_seqs):
  """Pairs of sentences, checked to have the same number of tags."""
  pairs = list(zip(true_tag_seqs, pred_tag_seqs, strict=True))
  for i, (true_tags, pred_tags) in enumerate(pairs):
    if len(true_tags) != len(pred_tags):
      raise ValueError(f'sentence {i}: {len(true_tags)} true tags but '
                       f'{len(pred_tags)} predicted')
  return pairs


def token_accuracy(true_tag_seqs, pred_tag_seqs) -> float:
  """Share of words tagged right, over all sentences together (POS tagging's accuracy)."""
  pairs = _flat_tags(true_tag_seqs, pred_tag_seqs)
  return accuracy([t for true, _ in pairs for t in true],
                  [t for _, pred in pairs for t in pred])


def entity_f1(true_tag_seqs, pred_tag_seqs) -> float:
  """Micro F1 over exactly matching entity chunks, as seqeval's default mode scores NER.

  Tags are strings such as 'B-PER', 'I-PER', 'O' (IOB1, IOB2 and IOBES all chunk); an
  I-X after O or after another type starts a new entity, as in conlleval.
  """
  true_chunks: set[tuple] = set()
  pred_chunks: set[tuple] = set()
  for i, (true_tags, pred_tags) in enumerate(_flat_tags(true_tag_seqs, pred_tag_seqs)):
    true_chunks.update((i, *chunk) for chunk in _chunks(true_tags))
    pred_chunks.update((i, *chunk) for chunk in _chunks(pred_tags))
  found = len(true_chunks & pred_chunks)
  return float(_ratio(2 * found, len(true_chunks) + len(pred_chunks)))


def _chunks(tags) -> list[tuple[str, int, int]]:
  """(type, first, last) of each chunk, by conlleval's rules as seqeval states them."""
  chunks, start, prev_tag, prev_type = [], 0, 'O', ''
  for i, label in enumerate([*tags, 'O']):
    tag, kind = label[0], label[1:].split('-', maxsplit=1)[-1] or '_'
    if _chunk_ends(prev_tag, tag, prev_type, kind):
      chunks.append((prev_type, start, i - 1))
    if _chunk_starts(prev_tag, tag, prev_type, kind):
      start = i
    prev_tag, prev_type = tag, kind
  return chunks


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
  return (prev_tag in 'ES' or (prev_tag in 'BI' and tag in 'BSO')
          or (prev_tag not in 'O.' and prev_type != kind))


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
  return (tag in 'BS' or (prev_tag in 'ESO' and tag in 'EI')
          or (tag not in 'O.' and prev_type != kind))


def normalize_answer(text: str) -> str:
  """Lowercase, drop punctuation, then articles, and squeeze whitespace (SQuAD v1.1)."""
  text = ''.join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return ' '.join(_ARTICLES.sub(' ', text).split())


def _exact(prediction: str, truth: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(truth))


def _token_f1(prediction: str, truth: str) -> float:
  predicted, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
  same = sum((collections.Counter(predicted) & collections.Counter(true)).values())
  if same == 0:
    return 0.0
  precision, recall = same / len(predicted), same / len(true)
  return 2 * precision * recall / (precision + recall)


def _best_over_truths(metric, ground_truths, predictions) -> float:
  """100 x the mean over questions of the best score against any of its answers."""
  pairs = list(zip(ground_truths, predictions, strict=True))
  if not pairs:
    raise ValueError('no questions to score')
  return 100.0 * sum(max(metric(p, t) for t in truths) for truths, p in pairs) / len(pairs)


def exact_match(ground_truths: list[list[str]], predictions: list[str]) -> float:
  """SQuAD exact match in percent: ground_truths holds each question's answer texts."""
  return _best_over_truths(_exact, ground_truths, predictions)


def squad_f1(ground_truths: list[list[str]], predictions: list[str]) -> float:
  """SQuAD token-overlap F1 in percent, the best over each question's answers."""
  return _best_over_truths(_token_f1, ground_truths, predictions)


_LABEL_METRICS = {
    'accuracy': accuracy, 'f1': f1, 'matthews': matthews_corrcoef, 'pearson': pearson,
    'spearman': spearman, 'token_accuracy': token_accuracy, 'entity_f1': entity_f1,
}
# Named as the official SQuAD script names its output.
_SPAN_METRICS = {'exact_match': exact_match, 'f1': squad_f1}


def compute(spec_metrics, y_true, y_pred) -> dict[str, float]:
  """The metrics a TaskSpec names; 'f1' next to 'exact_match' is SQuAD's token F1."""
  table = _SPAN_METRICS if 'exact_match' in spec_metrics else _LABEL_METRICS
  unknown = [name for name in spec_metrics if name not in table]
  if unknown:
    raise ValueError(f'unknown metric {unknown[0]!r}; known: {", ".join(table)}')
  return {name: float(table[name](y_true, y_pred)) for name in spec_metrics}


def glue_score(results: dict[str, dict[str, float]], partial: bool = False) -> float:
  """The GLUE benchmark's overall score, on the scale of the metrics given.

  GLUE (Wang et al., "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural
  Language Understanding", ICLR 2019, and its leaderboard at gluebenchmark.com) scores
  a system by the unweighted average over its nine tasks, a task with two metrics (MRPC
  and QQP F1/accuracy, STS-B Pearson/Spearman) counting as the mean of the two. MNLI is
  one of the nine: its score is the mean of the matched and mismatched accuracies
  (entries 'mnli_matched' and 'mnli_mismatched' in `results`). The leaderboard bears
  this out: BERT-large's row (CoLA 60.5, SST-2 94.9, MRPC 89.3/85.4, STS-B 87.6/86.5,
  QQP 72.1/89.3, MNLI 86.7/85.9, QNLI 92.7, RTE 70.1, WNLI 65.1) averages to its listed
  score, 80.5, this way, but to 81.1 if MNLI-m and MNLI-mm counted as two tasks. The
  diagnostic set (AX) is not part of the score.
  Other keys of each entry (losses, per-class figures) are ignored. With `partial`, the
  same average over the tasks present (not the GLUE score: say so where it is shown).
  """
  wanted = {task: [(entry, metric) for entry in _GLUE_ENTRIES.get(task, (task,))
                   for metric in spec.metrics]
            for task, spec in readers.GLUE.items()}
  missing = [f'{entry}[{metric}]' for pairs in wanted.values() for entry, metric in pairs
             if metric not in results.get(entry, {})]
  if missing and not partial:
    raise ValueError(f'the GLUE score needs all nine tasks; missing {", ".join(missing)}')
  present = [pairs for pairs in wanted.values()
             if all(metric in results.get(entry, {}) for entry, metric in pairs)]
  if not present:
    raise ValueError('no GLUE task has all its metrics in the results')
  return float(np.mean([np.mean([results[entry][metric] for entry, metric in pairs])
                        for pairs in present]))
