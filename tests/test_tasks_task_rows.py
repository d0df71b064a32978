"""ssljax.tasks.task_rows: single and pair rows, first-piece token labels, SQuAD windows, each
against an independent reference."""

import numpy as np
import pytest

from ssljax.errors import UserError
from ssljax.tasks import kinds, readers, task_rows
from ssljax.tasks.readers import Example

import adapt_helpers
from adapt_helpers import MRPC, SQUAD, SST2, WORDS, _ids, _text

tok, bert = adapt_helpers.tok, adapt_helpers.bert  # fixtures


def _bert_truncate(a, b, room):  # google-research/bert run_classifier._truncate_seq_pair
  a, b = list(a), list(b)
  while len(a) + len(b) > room:
    (a if len(a) > len(b) else b).pop()
  return a, b


def test_pair_and_single_rows(tok):
  cases = [(3, 2), (20, 4), (10, 10), (4, 20), (7, 8)]
  examples = [Example(text=_text(a), text_b=_text(b, 5), label=i % 2)
              for i, (a, b) in enumerate(cases)]
  rows = task_rows.build(tok, MRPC, examples, max_len=16)
  assert rows.arrays['input_ids'].shape == (len(cases), 16)
  np.testing.assert_array_equal(rows.arrays['labels'], [0, 1, 0, 1, 0])
  for row, e in enumerate(examples):
    a, b = _bert_truncate(_ids(tok, e.text), _ids(tok, e.text_b), 16 - 3)
    expected = [tok.cls_id] + a + [tok.sep_id] + b + [tok.sep_id]
    pad = [0] * (16 - len(expected))
    np.testing.assert_array_equal(rows.arrays['input_ids'][row], expected + pad)
    np.testing.assert_array_equal(rows.arrays['segment_ids'][row],
                                  [0] * (len(a) + 2) + [1] * (len(b) + 1) + pad)
    np.testing.assert_array_equal(rows.arrays['doc_ids'][row], [1] * len(expected) + pad)
  single = task_rows.build(tok, SST2, [Example(text=_text(30)), Example(text='a')], 24)
  assert single.arrays['input_ids'].shape == (2, 24)  # 32 rounded up, capped at max_len
  np.testing.assert_array_equal(single.arrays['input_ids'][0],
                                [tok.cls_id] + _ids(tok, _text(30))[:22] + [tok.sep_id])
  assert not single.arrays['segment_ids'].any()


def test_token_rows_label_first_pieces(tok):
  sentences = [['the', 'python', 'function', 'antidisestablishmentarianism', 'value'],
               ['python'] * 12]  # the second does not fit in max_len 32
  examples = [Example(words=w, tags=[i % 2 for i in range(len(w))]) for w in sentences]
  ner = readers.TaskSpec('ner', 'tokens', ('B-PY', 'O'), False, ('entity_f1',))
  rows = task_rows.build(tok, ner, examples, max_len=32)
  expected = []
  for row, words in enumerate(sentences):
    position = 1
    for number, pieces in enumerate(tok.encode(words)):
      if position + len(pieces) > 31:
        break
      expected.append((row, position, number))
      assert rows.arrays['input_ids'][row, position] == pieces[0]
      position += len(pieces)
  assert len(expected) < sum(map(len, sentences))  # some words were cut
  np.testing.assert_array_equal(rows.words, expected)
  labels = rows.arrays['labels']
  assert set(zip(*np.nonzero(labels >= 0))) == {(r, p) for r, p, _ in expected}
  assert [labels[r, p] for r, p, _ in expected] == [
      examples[r].tags[w] for r, _, w in expected]
  one_hot = np.eye(2)[[examples[r].tags[w] for r, _, w in expected]]
  decoded = kinds.KINDS['tokens'].decode(ner, rows, one_hot, examples)
  assert decoded[0] == [ner.labels[t] for t in examples[0].tags]
  kept = sum(r == 1 for r, _, _ in expected)  # words past max_len are outside entities
  assert decoded[1] == [ner.labels[t] if w < kept else 'O'
                        for w, t in enumerate(examples[1].tags)]


def test_squad_windows_and_decoding(tok):
  words = [WORDS[i % 20] for i in range(40)]
  words[26] = 'python'
  context = ' '.join(words)
  char = lambda k: len(' '.join(words[:k])) + (k > 0)
  answers = [(25, 2), (3, 1)]  # (first word, word count): one late answer, one early
  examples = [Example(context=context, question='what is this',
                      answers=[(' '.join(words[k:k + n]), char(k))]) for k, n in answers]
  max_len, stride = 24, 6
  rows = task_rows.build(tok, SQUAD, examples, max_len, doc_stride=stride)
  pieces = tok.encode(words)
  flat = np.concatenate(pieces)
  question = _ids(tok, 'what is this')
  head, room = len(question) + 2, max_len - len(question) - 3
  windows = 1 + -(-(len(flat) - room) // stride)
  np.testing.assert_array_equal(rows.example, np.repeat([0, 1], windows))
  for index, (k, n) in enumerate(answers):
    first = sum(map(len, pieces[:k]))
    last = sum(map(len, pieces[:k + n])) - 1
    inside = 0
    for w in range(windows):
      row, begin = index * windows + w, w * stride
      body = list(flat[begin:begin + room])
      ids = [tok.cls_id] + question + [tok.sep_id] + body + [tok.sep_id]
      np.testing.assert_array_equal(rows.arrays['input_ids'][row, :len(ids)], ids)
      start, end = rows.arrays['start'][row], rows.arrays['end'][row]
      if begin <= first and last < begin + room:
        inside += 1
        assert (start, end) == (head + first - begin, head + last - begin)
        assert tok.decode(rows.arrays['input_ids'][row, start:end + 1]) == \
            examples[index].answers[0][0]
      else:
        assert (start, end) == (0, 0)
      spans = rows.offsets[row, head:head + len(body)]
      assert [context[s:t] for s, t in spans] == [
          words[i] for i in np.repeat(np.arange(40), list(map(len, pieces)))[begin:][:room]]
      assert (rows.offsets[row, :head] == -1).all()
    assert 0 < inside < windows
  width = rows.arrays['input_ids'].shape[1]
  start_NxL = np.eye(width)[rows.arrays['start']]
  end_NxL = np.eye(width)[rows.arrays['end']]
  assert kinds.best_spans(start_NxL, end_NxL, rows.offsets, rows.example, [context] * 2) == [
      e.answers[0][0] for e in examples]


def test_user_errors(bert):
  with pytest.raises(UserError, match='at least 8'):
    task_rows.max_length(bert.cfg, 4)


def _varied(kind, n=40):
  """Examples of 1 to 25 words, so rows fall in several LENGTH_STEP widths."""
  rng = np.random.default_rng(0)
  sizes = rng.integers(1, 26, n)
  if kind == 'tokens':
    return [Example(words=[WORDS[(i + j) % len(WORDS)] for j in range(k)], tags=[0] * k)
            for i, k in enumerate(sizes)]
  if kind == 'span':
    return [Example(question=_text(2), context=_text(k, i), answers=[(WORDS[i % len(
        WORDS)], 0)]) for i, k in enumerate(sizes)]
  return [Example(text=_text(k, i), label=i % 2) for i, k in enumerate(sizes)]


@pytest.mark.parametrize('kind', ['classification', 'tokens', 'span'])
def test_collect_on_cut_batches_equals_full_width(tok, kind):
  """kinds.collect runs short batches shortest first; what it returns must be, row for
  row (word for word), what full-width batches in row order give."""
  spec = {'classification': SST2, 'tokens': adapt_helpers.SPECS['tokens'], 'span': SQUAD}[kind]
  rows = task_rows.build(tok, spec, _varied(kind), max_len=64, doc_stride=16)
  widths = []

  def fn(batch):  # per position: id + 1000 * position; per row: their sum
    widths.append(batch['input_ids'].shape[1])
    value = batch['input_ids'] + 1000 * batch['positions'] * (batch['doc_ids'] > 0)
    return value[..., None] if spec.kind != 'classification' else value.sum(1)

  got = kinds.collect(fn, rows, 8, spec)
  full = rows.arrays['input_ids'] + 1000 * rows.arrays['positions'] * (
      rows.arrays['doc_ids'] > 0)
  if kind == 'tokens':
    expected = full[rows.words[:, 0], rows.words[:, 1]][:, None]
  elif kind == 'span':
    expected = full[..., None]
  else:
    expected = full.sum(1)
  np.testing.assert_array_equal(got, expected)
  assert len(set(widths)) > 1 and min(widths) < rows.arrays['input_ids'].shape[1]
  assert sorted(widths) == widths  # shortest first


def test_gather_cuts_per_position_arrays_to_the_longest_row(tok):
  rows = task_rows.build(tok, adapt_helpers.SPECS['tokens'], _varied('tokens'), max_len=64)
  lengths = rows.lengths()
  index = np.flatnonzero(lengths <= 10)[:5]
  batch = task_rows.gather(rows, index)
  assert batch['input_ids'].shape == batch['labels'].shape == (5, 16)
  np.testing.assert_array_equal(batch['input_ids'], rows.arrays['input_ids'][index, :16])
  assert not rows.arrays['doc_ids'][index, 16:].any()  # nothing real was cut


def test_epoch_order_by_length_keeps_each_epoch_and_groups_lengths():
  rng = np.random.default_rng(1)
  lengths = rng.integers(3, 120, 1000)
  plain = task_rows.epoch_order(1000, 10, 3, seed=4)
  bucketed = task_rows.epoch_order(1000, 10, 3, seed=4, lengths=lengths)
  assert bucketed.shape == plain.shape == (300, 10)
  for epoch in range(3):  # the same rows in each epoch, batches re-cut and reordered
    part = slice(epoch * 100, (epoch + 1) * 100)
    np.testing.assert_array_equal(np.sort(bucketed[part].ravel()), np.sort(plain[part].ravel()))
    assert (np.diff(lengths[bucketed[part]].mean(1)) < 0).any()  # not shortest first
  spread = lambda order: np.mean(np.ptp(-(-lengths[order] // task_rows.LENGTH_STEP), axis=1))
  assert spread(bucketed) < 0.1 * spread(plain)  # a batch holds one padded width
  np.testing.assert_array_equal(bucketed, task_rows.epoch_order(1000, 10, 3, 4, lengths))
