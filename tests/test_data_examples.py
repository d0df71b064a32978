"""ssljax.data.examples: the example layout of each objective, NSP/SOP pairs, determinism."""

import numpy as np
import pytest

from ssljax import config
from ssljax.data import examples as examples_lib
from ssljax.errors import UserError

import data_fixtures
from data_fixtures import GROUP, KEYS

tok, docs = data_fixtures.tok, data_fixtures.docs  # fixtures


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


def test_clm_caps_the_documents_of_a_row(tok, docs):
  """model.max_docs_per_row=2: a row keeps its first two pieces and pads the rest, the
  same rows otherwise (cuDNN's packed layout holds that many documents)."""
  seq_len = 40
  free = examples_lib.build_examples(docs, tok, 'clm', seq_len, seed=0)
  capped = examples_lib.build_examples(docs, tok, 'clm', seq_len, seed=0, max_docs=2)
  assert len(capped) == len(free)
  index = np.arange(len(free))
  free_rows, capped_rows = free.batch(index), capped.batch(index)
  kept = (free_rows['doc_ids'] > 0) & (free_rows['doc_ids'] <= 2)
  assert (free_rows['doc_ids'].max(axis=1) > 2).any()  # the cap bites somewhere
  assert capped_rows['doc_ids'].max() == 2
  for key in ('input_ids', 'positions', 'doc_ids'):
    np.testing.assert_array_equal(capped_rows[key], np.where(kept, free_rows[key],
                                                             tok.pad_id if key == 'input_ids'
                                                             else 0))
  for i in range(len(capped)):
    _check_layout(capped[i], tok, seq_len)


@pytest.mark.parametrize('objective', config.OBJECTIVES)
def test_examples_depend_only_on_seed_and_index(tok, docs, objective):
  first = examples_lib.build_examples(docs, tok, objective, 24, seed=5)
  second = examples_lib.build_examples(docs, tok, objective, 24, seed=5)
  other = examples_lib.build_examples(docs, tok, objective, 24, seed=6)
  indices = [7, 3, 7, len(first) - 1]
  together = first.batch(indices)  # a row does not depend on the batch it is built in
  for row, i in enumerate(indices):
    for key in KEYS:
      np.testing.assert_array_equal(first[i][key], second[i][key])
      np.testing.assert_array_equal(together[key][row], second[i][key])
  same = all(np.array_equal(first[i]['input_ids'], other[i]['input_ids'])
             for i in range(50))
  assert same == (objective in ('mlm', 'clm'))  # only NSP and SOP draw randomness


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
