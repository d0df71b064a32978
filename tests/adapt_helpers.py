"""Shared by the test_adapt_*.py method tests: a tokenizer and tiny BERT, task specs,
settings, and synthetic tasks and features with known answers.

Import the fixtures `tok` and `bert` into a test module to use them.
"""

import types

import numpy as np
import pytest
from flax import nnx

from ssljax import models as model, tokenizers as tokenizer_lib
from ssljax.adapt import probe
from ssljax.tasks import kinds, readers, task_rows
from ssljax.tasks.readers import Example

from conftest import tiny_config

# Words the test tokenizer keeps whole; 'python' splits into several pieces.
WORDS = ('the a of to is in and for that it be with as by this an object function value '
         'module name file return list').split()
SST2, MRPC, SQUAD = readers.GLUE['sst2'], readers.GLUE['mrpc'], readers.SQUAD
SPECS = {'classification': readers.TaskSpec('three', 'classification', ('x', 'y', 'z'), False,
                                          ('accuracy',)),
         'regression': readers.TaskSpec('score', 'regression', ('',), False,
                                      ('pearson', 'spearman')),
         'tokens': readers.TaskSpec('tags', 'tokens', ('other', 'python'), False,
                                  ('token_accuracy',))}


def _settings(**overrides):
  return types.SimpleNamespace(**{
      'pooling': 'mean', 'max_len': 32, 'batch_size': 8, 'val_fraction': 0.25,
      'lr': 1e-3, 'epochs': 1, 'weight_decay': 0.01, 'warmup': 0.1,
      'llrd': 1.0, 'doc_stride': 8, 'bucket_by_length': True, 'search': 'halving',
      'pooler': 'fresh', 'head': 'linear', 'min_steps': 0} | overrides)


def _build(corpus_file, tok, **overrides):
  config = tiny_config(corpus_file, **overrides)
  return model.build(model.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size),
                     nnx.Rngs(3))


@pytest.fixture(scope='module')
def tok(tokenizer_file):
  return tokenizer_lib.load(tokenizer_file)


@pytest.fixture(scope='module')
def bert(corpus_file, tok):
  return _build(corpus_file, tok)


def _text(n, start=0):
  return ' '.join(WORDS[(start + i) % len(WORDS)] for i in range(n))


def _ids(tok, text):
  return list(tok.encode([text])[0])


def _task(kind, n, seed):
  """Examples of a task a tiny model can learn: find the word 'python'."""
  rng, examples = np.random.default_rng(seed), []
  for i in range(n):
    words = [str(w) for w in rng.choice(WORDS, 6 if kind != 'span' else 14)]
    hit = i % 2 == 0 or kind == 'span'
    at = int(rng.integers(len(words)))
    if hit:
      words[at] = 'python'
    text = ' '.join(words)
    examples.append({
        'classification': lambda: Example(text=text, label=int(hit)),
        'regression': lambda: Example(text=text, label=float(words.count('the'))),
        'tokens': lambda: Example(words=words, tags=[int(w == 'python') for w in words]),
        'span': lambda: Example(context=text, question='where is python',
                                answers=[('python', len(' '.join(words[:at])) + (at > 0))]),
    }[kind]())
  return examples


def _features(kind, n, seed):
  """Features whose label is a linear function of them (classes: separated centres)."""
  rng, fixed = np.random.default_rng(seed), np.random.default_rng(0)
  if kind == 'regression':
    x = rng.normal(size=(n, 12))
    y = (x @ fixed.normal(size=12) + 0.5).astype(np.float32)
  else:
    y = rng.integers(0, 3, n).astype(np.int32)
    x = 3 * fixed.normal(size=(3, 12))[y] + rng.normal(size=(n, 12))
  examples = [Example(label=v.item()) for v in y]
  return probe.Features(x.astype(np.float32), task_rows.Rows({'labels': y}, np.arange(n)),
                        examples)


def _script_pearson(monkeypatch, script):
  """Makes `kinds.score` report script[i] as the pearson of its i-th call; returns the list
  that collects the predictions of every call."""
  seen, real = [], kinds.score

  def score(spec, examples, predictions):  # the script's pearson for each validation
    result = real(spec, examples, predictions)
    if len(seen) < len(script):
      result['metrics']['pearson'] = script[len(seen)]
    seen.append(predictions)
    return result

  monkeypatch.setattr(kinds, 'score', score)
  return seen
