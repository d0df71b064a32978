"""Trivial baselines that every adaptation result is read against, and what they flag.

A model that does not beat them has learnt nothing usable, however good its number looks:
the majority class of train for classification, each word's most frequent training tag for
tagging (the overall most frequent tag for words train never shows), the training mean for
regression (Pearson and Spearman score 0 for a constant, so its mean squared error is given
too) and the first k words of the context for extractive QA, k the median length in words
of the training answers. Each is scored on every evaluation split with the task's own
metrics. `warnings` names the runs whose median main metric does not beat its baseline and
the classifiers that collapsed to one class on every seed.
"""

import collections
import re

import numpy as np

from ssljax.tasks import kinds

NAMES = {'classification': 'majority class', 'regression': 'training mean',
         'tokens': 'most frequent tag per word', 'span': 'first words of the context'}


def _majority(spec, train):
  counts = np.bincount([e.label for e in train], minlength=len(spec.labels))
  label = int(np.argmax(counts))  # ties: the lowest id
  return lambda examples: [label] * len(examples)


def _mean(spec, train):
  del spec
  mean = float(np.mean([e.label for e in train]))
  return lambda examples: [mean] * len(examples)


def _tag_per_word(spec, train):
  by_word: dict[str, np.ndarray] = collections.defaultdict(
      lambda: np.zeros(len(spec.labels), np.int64))
  for e in train:
    for word, tag in zip(e.words, e.tags):
      by_word[word][tag] += 1
  overall = spec.labels[int(np.argmax(sum(by_word.values())))]
  best = {word: spec.labels[int(np.argmax(counts))] for word, counts in by_word.items()}
  return lambda examples: [[best.get(w, overall) for w in e.words] for e in examples]


def _first_words(spec, train):
  del spec
  k = max(int(round(np.median([len(e.answers[0][0].split()) for e in train if e.answers]
                              or [1]))), 1)

  def predict(examples):
    out = []
    for e in examples:
      words = [m.end() for m in re.finditer(r'\S+', e.context)][:k]
      out.append(e.context[:words[-1]].lstrip() if words else '')
    return out

  return predict


_PREDICTORS = {'classification': _majority, 'regression': _mean, 'tokens': _tag_per_word,
               'span': _first_words}


def predictions(spec, train, examples) -> list:
  """The baseline's prediction for each of `examples`, fitted on `train`, in the form
  kinds.score takes (class ids, scores, tag names per word, answer texts)."""
  return _PREDICTORS[spec.kind](spec, train)(examples)


def score(spec, train, evals: dict) -> dict:
  """{split: {metric: value}} of the baseline on each evaluation split; regression adds
  'mse', the mean's squared error."""
  predict = _PREDICTORS[spec.kind](spec, train)
  out = {}
  for split, examples in evals.items():
    guesses = predict(examples)
    out[split] = kinds.score(spec, examples, guesses)['metrics']
    if spec.kind == 'regression':
      truths = np.asarray([e.label for e in examples], np.float64)
      out[split]['mse'] = float(np.mean((truths - np.asarray(guesses)) ** 2))
  return out


def warnings(results, spec) -> list[str]:
  """One line per group and split whose median main metric does not beat the baseline, and
  per classifier that predicted one class for a whole split on every seed."""
  return _not_beaten(results, spec) + _collapsed(results, spec)


def _not_beaten(results, spec) -> list[str]:
  main, out = spec.metrics[0], []
  for group, splits in results['metrics'].items():
    for split, stats in splits.items():
      base = results['baseline'].get(split, {}).get(main)
      median = stats[main]['median']
      if base is not None and not median > base:
        out.append(f'{results["task"]} {results["method"]} {group} does not beat the '
                   f'{NAMES[spec.kind]} baseline on {split}: {main} {median:.4f} (median of '
                   f'{len(stats[main]["values"])} seeds) vs {base:.4f}')
  return out


# What to change when a method's predictions collapsed, by results.json's method.
ADVICE = {'finetune': 'try another finetune.lr or more finetune.epochs',
          'probe_linear': 'try another probe.lr, more probe.epochs or probe.kind=ridge',
          'probe_ridge': 'its features do not separate the targets: try another probe.layer '
                         'or pooling',
          'fewshot': 'try another fewshot.template or fewshot.verbalizers'}


def _collapsed(results, spec) -> list[str]:
  """Classifiers that predicted one class, and regressors one value, on every seed."""
  out = []
  advice = ADVICE.get(results['method'], 'try other settings')
  for group in dict.fromkeys(r['group'] for r in results['runs']):
    mine = [r for r in results['runs'] if r['group'] == group]
    seeds = 'its one seed' if len(mine) == 1 else f'all {len(mine)} seeds'
    for split in mine[0]['evals']:
      matrices = [r['evals'][split].get('confusion_matrix') for r in mine]
      spreads = [r['evals'][split].get('spread') for r in mine]
      if all(m is not None and _one_class(m) for m in matrices):
        names = sorted({spec.labels[int(np.argmax(np.sum(m, axis=0)))] for m in matrices})
        out.append(f'{results["task"]} {results["method"]} {group} collapsed: it predicted '
                   f'one class ({", ".join(names)}) for every {split} example on {seeds}; '
                   f'{advice}')
      elif all(s is not None and s['predictions'] <= 1e-3 * s['truths'] for s in spreads):
        out.append(f'{results["task"]} {results["method"]} {group} collapsed: it predicted '
                   f'one value for every {split} example on {seeds} (its correlations are '
                   f'0 by definition); {advice}')
  return out


def _one_class(confusion) -> bool:
  """All predictions one class while the truths hold two or more."""
  confusion = np.asarray(confusion)
  return (confusion.sum(axis=0) > 0).sum() == 1 and (confusion.sum(axis=1) > 0).sum() > 1
