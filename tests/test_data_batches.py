"""ssljax.data.batches: shuffled epochs, exact resume, per-process shards, eval batches."""

import json

import numpy as np
import pytest

from ssljax.data import batches as batches_lib, examples as examples_lib
from ssljax.errors import UserError

import data_fixtures
from data_fixtures import KEYS

tok, docs = data_fixtures.tok, data_fixtures.docs  # fixtures


def _take(batches, count):
  return [next(batches) for _ in range(count)]


def _assert_batches_equal(left, right):
  assert len(left) == len(right)
  for x, y in zip(left, right):
    assert set(x) == set(KEYS)
    for key in KEYS:
      np.testing.assert_array_equal(x[key], y[key])


def test_batches_shapes_and_epochs(tok, docs):
  examples = examples_lib.build_examples(docs, tok, 'mlm', 32, seed=0)[:40]
  batches = batches_lib.Batches(examples, 8, seed=1)
  first_epoch = _take(batches, 5)
  assert first_epoch[0]['input_ids'].shape == (8, 32)
  assert first_epoch[0]['sentence_label'].shape == (8,)
  rows = [r.tobytes() for b in first_epoch for r in b['input_ids']]
  expected = [examples[i]['input_ids'].tobytes() for i in range(40)]
  assert sorted(rows) == sorted(expected) and rows != expected  # a shuffled epoch
  second_epoch = [r.tobytes() for b in _take(batches, 5) for r in b['input_ids']]
  assert sorted(second_epoch) == sorted(expected) and second_epoch != rows


def test_batches_resume_from_state(tok, docs):
  examples = examples_lib.build_examples(docs, tok, 'mlm_nsp', 24, seed=0)
  batches = batches_lib.Batches(examples, 16, seed=3)
  _take(batches, 7)
  state = json.loads(json.dumps(batches.get_state()))
  expected = _take(batches, 5)
  restored = batches_lib.Batches(examples, 16, seed=3)
  restored.set_state(state)
  _assert_batches_equal(_take(restored, 5), expected)


def test_process_batches_concatenate_to_the_global_batch(tok, docs):
  examples = examples_lib.build_examples(docs, tok, 'mlm_sop', 24, seed=0)[:50]
  steps = 9  # crosses epoch boundaries: 50 examples, 12 per step
  global_batches = _take(batches_lib.Batches(examples, 12, seed=2), steps)
  local = [_take(batches_lib.Batches(examples, 12, seed=2, process_index=p, process_count=3), steps)
           for p in range(3)]
  joined = [{k: np.concatenate([local[p][t][k] for p in range(3)]) for k in KEYS}
            for t in range(steps)]
  assert local[0][0]['input_ids'].shape == (4, 24)
  _assert_batches_equal(joined, global_batches)


def test_batches_errors(tok, docs):
  examples = examples_lib.build_examples(docs, tok, 'mlm', 32, seed=0)
  with pytest.raises(UserError, match='batch_size=10 is not divisible by the 4 processes'):
    batches_lib.Batches(examples, 10, seed=0, process_index=0, process_count=4)
  with pytest.raises(UserError, match='corpus too small: 5 examples for batch 8'):
    batches_lib.Batches(examples[:5], 8, seed=0)


def test_eval_batches_are_in_order_and_wrap(tok, docs):
  examples = examples_lib.build_examples(docs, tok, 'clm', 32, seed=0)[:10]
  batches = batches_lib.eval_batches(examples, 4, 3)
  assert len(batches) == 3 and batches[0]['input_ids'].shape == (4, 32)
  rows = np.concatenate([b['input_ids'] for b in batches])
  expected = [examples[i % 10]['input_ids'] for i in range(12)]
  np.testing.assert_array_equal(rows, expected)
