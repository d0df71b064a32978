"""ssljax.data.rows: the one token-row layout and the one padding rule, worked by hand."""

import types

import numpy as np
import pytest

from ssljax.data import rows

TOK = types.SimpleNamespace(cls_id=2, sep_id=3)  # the ids ssljax tokenizers fix


def test_bert_row_of_one_text():
  ids, segments = rows.bert_row(TOK, [10, 11, 12])
  np.testing.assert_array_equal(ids, [2, 10, 11, 12, 3])
  np.testing.assert_array_equal(segments, [0, 0, 0, 0, 0])
  assert ids.dtype == segments.dtype == np.int32


def test_bert_row_of_two_texts():
  ids, segments = rows.bert_row(TOK, np.array([10, 11]), np.array([20, 21, 22]))
  np.testing.assert_array_equal(ids, [2, 10, 11, 3, 20, 21, 22, 3])
  np.testing.assert_array_equal(segments, [0, 0, 0, 0, 1, 1, 1, 1])
  assert ids.dtype == segments.dtype == np.int32


def test_bert_row_of_empty_texts():
  ids, segments = rows.bert_row(TOK, [])
  np.testing.assert_array_equal(ids, [2, 3])
  np.testing.assert_array_equal(segments, [0, 0])
  ids, segments = rows.bert_row(TOK, [], [])
  np.testing.assert_array_equal(ids, [2, 3, 3])
  np.testing.assert_array_equal(segments, [0, 0, 1])


@pytest.mark.parametrize('longest, limit, expected', [
    (1, None, 16), (16, None, 16), (17, None, 32), (33, None, 48), (500, None, 512),
    (10, 24, 16), (17, 24, 24), (24, 24, 24), (40, 32, 32), (5, 8, 8),
])
def test_padded_length_rounds_up_to_the_step_and_stops_at_the_limit(longest, limit,
                                                                   expected):
  assert rows.LENGTH_STEP == 16
  assert rows.padded_length(longest, limit) == expected


def test_pad_cuts_and_fills():
  seqs = [[1, 2, 3], np.array([4]), []]
  np.testing.assert_array_equal(rows.pad(seqs, 2, 0), [[1, 2], [4, 0], [0, 0]])
  padded = rows.pad(seqs, 5, -1)
  np.testing.assert_array_equal(padded, [[1, 2, 3, -1, -1], [4, -1, -1, -1, -1], [-1] * 5])
  assert padded.dtype == np.int32 and padded.shape == (3, 5)
  mask = rows.pad([[True, True], [True]], 3, False, bool)
  np.testing.assert_array_equal(mask, [[True, True, False], [True, False, False]])
  assert mask.dtype == bool
  assert rows.pad([], 4, 0).shape == (0, 4)
  assert seqs[0] == [1, 2, 3]  # the inputs are left alone
