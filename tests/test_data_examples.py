"""Tests for ssljax.data: example layout per objective, NSP/SOP pairs, batches, resume."""

import json
import pathlib

import numpy as np
import pytest

from ssljax import config
from ssljax import tokenizers as tokenizer_lib
from ssljax.data import batches as batches_lib, corpus, examples as examples_lib
from ssljax.errors import UserError

SYNTHETIC = pathlib.Path(__file__).parent / 'fixtures' / 'synthetic.txt'

KEYS = ('input_ids', 'segment_ids', 'positions', 'doc_ids', 'word_start',
        'sentence_label')
GROUP = 4  # token ids per synthetic document: a token names the document it came from


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  data_cfg = config.base().data
  data_cfg.update(source='text', path=str(SYNTHETIC))
  prefix = tmp_path_factory.mktemp('tok') / 'sp'
  return tokenizer_lib.train(corpus.load_documents(data_cfg), 200, prefix)


@pytest.fixture(scope='module')
def docs(tok):
  """Random token documents over disjoint id sets; the set of a token is its document."""
  rng = np.random.default_rng(0)
  count = len(tok.normal_ids) // GROUP
  lengths = rng.integers(1, 1200, count)
  lengths[:3] = [1, 2, 29]  # shorter than one pair, the shortest pair, one exact chunk
  groups = tok.normal_ids[:count * GROUP].reshape(count, GROUP)
  return [rng.choice(g, n).astype(np.int32) for g, n in zip(groups, lengths)]


def _owner(tok, ids):
  """The document of each token id, as the `docs` fixture built it."""
  return (np.asarray(ids) - tok.normal_ids[0]) // GROUP


def _contains(haystack, needle):
  windows = np.lib.stride_tricks.sliding_window_view(haystack, len(needle))
  return bool((windows == needle).all(axis=1).any())


def _check_layout(example, tok, seq_len):
  assert set(example) == set(KEYS)
  for key in KEYS[:-1]:
    assert example[key].shape == (seq_len,), key
    assert example[key].dtype == (bool if key == 'word_start' else np.int32), key
  assert np.shape(example['sentence_label']) == ()
  assert example['sentence_label'].dtype == np.int32
  np.testing.assert_array_equal(example['word_start'], tok.word_start[example['input_ids']])
  real = example['doc_ids'] > 0
  np.testing.assert_array_equal(example['input_ids'][~real], tok.pad_id)
  assert real[0] and np.all(np.diff(real.astype(int)) <= 0)  # real tokens, then padding


def _pair(example, tok):
  """Checks `[CLS] A [SEP] B [SEP] [PAD]...` and returns A and B."""
  ids = example['input_ids'][example['doc_ids'] > 0]
  assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
  (sep,) = np.flatnonzero(ids[:-1] == tok.sep_id)
  a, b = ids[1:sep], ids[sep + 1:-1]
  assert len(a) and len(b) and not np.isin(ids[1:-1], tok.special_ids[[0, 1, 2, 4]]).any()
  expected_segments = np.zeros(len(example['input_ids']), np.int32)
  expected_segments[sep + 1:len(ids)] = 1
  np.testing.assert_array_equal(example['segment_ids'], expected_segments)
  np.testing.assert_array_equal(example['positions'], np.arange(len(example['positions'])))
  return a, b


def test_mlm_chunks_each_document_in_order(tok, docs):
  seq_len = 32
  examples = examples_lib.build_examples(docs, tok, 'mlm', seq_len, seed=0)
  index = 0
  for doc in docs:
    for start in range(0, len(doc), seq_len - 2):
      example = examples[index]
      _check_layout(example, tok, seq_len)
      chunk = doc[start:start + seq_len - 2]
      n = len(chunk) + 2
      np.testing.assert_array_equal(example['input_ids'][:n],
                                    [tok.cls_id, *chunk, tok.sep_id])
      np.testing.assert_array_equal(example['doc_ids'], np.arange(seq_len) < n)
      np.testing.assert_array_equal(example['segment_ids'], 0)
      np.testing.assert_array_equal(example['positions'], np.arange(seq_len))
      assert example['sentence_label'] == 0
      index += 1
  assert index == len(examples)


def _pairs(docs, tok, objective, seq_len=24):
  """(A, B, label) of every example of two seeds, each checked for layout on the way."""
  for seed in (0, 1):
    examples = examples_lib.build_examples(docs, tok, objective, seq_len, seed=seed)
    for i in range(len(examples)):
      _check_layout(examples[i], tok, seq_len)
      yield (*_pair(examples[i], tok), int(examples[i]['sentence_label']))


def _assert_balanced(labels):
  assert len(labels) >= 2000
  assert abs(np.mean(labels) - 0.5) < 0.05


def test_nsp_pairs(tok, docs):
  labels = []
  for a, b, label in _pairs(docs, tok, 'mlm_nsp'):
    assert len(a) + len(b) <= 24 - 3
    doc_a, doc_b = np.unique(_owner(tok, a)), np.unique(_owner(tok, b))
    assert len(doc_a) == 1 and len(doc_b) == 1
    if label == 0:  # IsNext: B continues A in A's document
      assert doc_a == doc_b and _contains(docs[doc_a[0]], np.concatenate([a, b]))
    else:  # NotNext: B is a span of another document, never A's own
      assert label == 1 and doc_a != doc_b and _contains(docs[doc_b[0]], b)
    labels.append(label)
  _assert_balanced(labels)


def test_sop_pairs(tok, docs):
  labels = []
  for a, b, label in _pairs(docs, tok, 'mlm_sop'):
    (doc,) = np.unique(_owner(tok, np.concatenate([a, b])))
    assert _contains(docs[doc], np.concatenate([b, a] if label else [a, b]))
    labels.append(label)
  _assert_balanced(labels)


def test_clm_packs_documents_with_restarting_positions(tok, docs):
  seq_len = 40
  examples = examples_lib.build_examples(docs, tok, 'clm', seq_len, seed=0)
  rows = [examples[i] for i in range(len(examples))]
  stream = []
  for row in rows:
    _check_layout(row, tok, seq_len)
    real = row['doc_ids'] > 0
    ids, doc_ids, positions = (row[k][real] for k in ('input_ids', 'doc_ids', 'positions'))
    np.testing.assert_array_equal(row['doc_ids'][~real], 0)
    np.testing.assert_array_equal(row['segment_ids'], 0)
    assert tok.cls_id not in ids
    new_piece = np.concatenate([[True], ids[:-1] == tok.sep_id])
    np.testing.assert_array_equal(doc_ids, np.cumsum(new_piece))
    for piece in np.unique(doc_ids):
      np.testing.assert_array_equal(positions[doc_ids == piece],
                                    np.arange(np.sum(doc_ids == piece)))
    stream.extend(ids)
  assert all((r['doc_ids'] > 0).all() for r in rows[:-1])  # only the last row is padded
  expected = np.concatenate([np.append(d, tok.sep_id) for d in docs])
  np.testing.assert_array_equal(stream, expected)


@pytest.mark.parametrize('objective', config.OBJECTIVES)
def test_examples_depend_only_on_seed_and_index(tok, docs, objective):
  first = examples_lib.build_examples(docs, tok, objective, 24, seed=5)
  second = examples_lib.build_examples(docs, tok, objective, 24, seed=5)
  other = examples_lib.build_examples(docs, tok, objective, 24, seed=6)
  indices = [7, 3, 7, len(first) - 1]
  for i in indices:
    for key in KEYS:
      np.testing.assert_array_equal(first[i][key], second[i][key])
  same = all(np.array_equal(first[i]['input_ids'], other[i]['input_ids'])
             for i in range(50))
  assert same == (objective in ('mlm', 'clm'))  # only NSP and SOP draw randomness


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


def test_split_documents():
  docs = [f'doc {i}' for i in range(100)]
  train, held = corpus.split_documents(docs, 0.05, seed=0)
  assert len(held) == 5 and sorted(train + held) == sorted(docs)
  assert [d for d in docs if d in train] == train  # order kept
  assert corpus.split_documents(docs, 0.05, seed=0) == (train, held)
  assert corpus.split_documents(docs, 0.05, seed=1)[1] != held
  assert len(corpus.split_documents(docs[:3], 0.01, seed=0)[1]) == 1  # at least one
  assert len(corpus.split_documents(docs[:3], 0.99, seed=0)[0]) == 1  # never all
  assert corpus.split_documents(docs, 0.0, seed=0) == (docs, [])
  assert corpus.split_documents(['0123456789'], 0.2, seed=0) == (['01234567'], ['89'])


def test_nsp_needs_two_documents(tok, docs):
  with pytest.raises(UserError, match='NSP needs at least two documents'):
    examples_lib.build_examples([docs[5], np.zeros(0, np.int32)], tok, 'mlm_nsp', 24, seed=0)


def test_build_errors(tok, docs):
  with pytest.raises(UserError, match="objective='mlm_xyz' is not one of"):
    examples_lib.build_examples(docs, tok, 'mlm_xyz', 24, seed=0)
  with pytest.raises(UserError, match='data.seq_len=4 is too short'):
    examples_lib.build_examples(docs, tok, 'mlm', 4, seed=0)
  with pytest.raises(UserError, match='gives no clm examples'):
    examples_lib.build_examples([np.zeros(0, np.int32)] * 3, tok, 'clm', 24, seed=0)
