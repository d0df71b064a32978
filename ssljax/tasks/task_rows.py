"""Task examples as padded int32 rows for the model, with the targets of each task kind.

Rows are `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, segment ids 0 up to the first [SEP]
and 1 after it (a GPT tokenizer's end-of-text stands in for both specials). Token tasks
label the first sub-token of each word and put -1 elsewhere, so losses skip the rest.
QA rows are `[CLS] question [SEP] window [SEP]`: a context longer than the row is cut
into windows `doc_stride` tokens apart, and each context token keeps the character span
of its word, so a predicted token span maps back to text. Words are tokenized one at a
time, which any tokenizer with `encode(texts)` supports.

A split is stored padded to its longest row (at most `max_len`); each batch is cut to its
own longest row rounded up (`data.rows.padded_length`), so 15-token POS sentences run at
length 16, not 128, and a split compiles a handful of programs, one per width. Evaluation
visits rows shortest first; training draws batches of similar length (`epoch_order` with
`lengths`). Batches keep a fixed size by appending empty rows (doc ids 0, targets -1 or
NaN), which every loss and metric skips.
"""

import dataclasses
import logging
import re

import numpy as np

from ssljax.data.rows import LENGTH_STEP, bert_row, pad, padded_length
from ssljax.errors import UserError

log = logging.getLogger(__name__)

INPUTS = ('input_ids', 'positions', 'segment_ids', 'doc_ids')
# Batches that `epoch_order` sorts by length together: wide enough that batches are near
# uniform in length, narrow enough that an epoch's early and late batches still mix.
GROUP_BATCHES = 32


@dataclasses.dataclass
class Rows:
  """One split as arrays indexed by row, with what maps rows back to examples."""
  arrays: dict[str, np.ndarray]  # INPUTS (N x L) and the targets of the task kind
  example: np.ndarray  # N: the example each row encodes (QA: one row per window)
  words: np.ndarray | None = None  # tokens: W x 3 (row, position, word) of each word start
  offsets: np.ndarray | None = None  # span: N x L x 2 character span in the context, or -1

  def __len__(self):
    return len(self.example)

  def lengths(self) -> np.ndarray:
    """N: the real tokens of each row."""
    return self.arrays['doc_ids'].sum(axis=1)


def max_length(model_cfg, max_len: int) -> int:
  """Row length: `max_len`, within the model's `context_length`."""
  if max_len < 8:
    raise UserError(f'max_len={max_len} leaves no room for text; use at least 8')
  return min(max_len, model_cfg.context_length)


def build(tokenizer, spec, examples, max_len: int, doc_stride: int = 64) -> Rows:
  """Rows of `examples` for the task `spec` (a readers.TaskSpec), at most `max_len` long."""
  return _ENCODERS[spec.kind](tokenizer, spec, examples, max_len, doc_stride)


def _sequences(tok, spec, examples, max_len, doc_stride) -> Rows:
  del doc_stride
  firsts = tok.encode([e.text for e in examples])
  pair = spec.pair and all(e.text_b is not None for e in examples)
  seconds = tok.encode([e.text_b for e in examples]) if pair else [None] * len(examples)
  ids, segments, cut = [], [], 0
  for a, b in zip(firsts, seconds):
    a, b, lost = _fit(a, b, max_len - (3 if pair else 2))
    cut += lost
    row_ids, row_segments = bert_row(tok, a, b)
    ids.append(row_ids)
    segments.append(row_segments)
  _warn_cut(cut, len(examples), max_len)
  regression = spec.kind == 'regression'
  labels = np.array([np.nan if e.label is None else e.label for e in examples] if regression
                    else [-1 if e.label is None else e.label for e in examples],
                    np.float32 if regression else np.int32)
  arrays = _pad_inputs(ids, segments, max_len)
  arrays['labels'] = labels
  return Rows(arrays, np.arange(len(examples)))


def _fit(a, b, room):
  """Cuts the longer text a token at a time until both fit in `room` (BERT's rule)."""
  if b is None:
    return a[:room], None, len(a) > room
  lost = len(a) + len(b) > room
  while len(a) + len(b) > room:
    if len(a) > len(b):
      a = a[:-1]
    else:
      b = b[:-1]
  return a, b, lost


def _warn_cut(cut, total, max_len):
  if cut:
    log.warning('%d of %d examples were cut to max_len=%d tokens', cut, total, max_len)


def _word_pieces(tok, words) -> list[np.ndarray]:
  """Sub-tokens of each word; a word the tokenizer drops becomes [UNK], so it keeps a slot."""
  return [p if len(p) else np.array([tok.unk_id], np.int32) for p in tok.encode(words)]


def _tagged(tok, spec, examples, max_len, doc_stride) -> Rows:
  del spec, doc_stride
  flat = _word_pieces(tok, [w for e in examples for w in e.words])
  ids, labels, words, cut, start = [], [], [], 0, 0
  for row, e in enumerate(examples):
    pieces, start = flat[start:start + len(e.words)], start + len(e.words)
    body: list[int] = []
    row_labels = [-1]  # [CLS] takes position 0
    for number, p in enumerate(pieces):
      if len(body) + len(p) > max_len - 2:
        cut += 1
        break
      words.append((row, len(body) + 1, number))
      row_labels += [-1 if e.tags is None else e.tags[number]] + [-1] * (len(p) - 1)
      body += list(p)
    ids.append(bert_row(tok, np.asarray(body, np.int32))[0])
    labels.append(np.asarray(row_labels + [-1]))
  _warn_cut(cut, len(examples), max_len)
  arrays = _pad_inputs(ids, [np.zeros(len(i)) for i in ids], max_len)
  arrays['labels'] = pad(labels, arrays['input_ids'].shape[1], -1)
  return Rows(arrays, np.arange(len(examples)), words=np.asarray(words, np.int32))


def _windows(tok, spec, examples, max_len, doc_stride) -> Rows:
  del spec
  questions = tok.encode([e.question for e in examples])
  contexts = {}  # SQuAD asks several questions of each context: tokenize it once
  ids, segments, offsets, starts, ends, owner = [], [], [], [], [], []
  for index, (e, question) in enumerate(zip(examples, questions)):
    if e.context not in contexts:
      contexts[e.context] = _context_tokens(tok, e.context)
    spans, context, token_word, token_span = contexts[e.context]
    answer = _answer_tokens(e, spans, token_word)
    question = question[:max_len // 2]
    head = len(question) + 2
    room = max_len - head - 1
    for begin in _window_starts(len(context), room, doc_stride):
      window = slice(begin, begin + room)
      body = context[window]
      row_ids, row_segments = bert_row(tok, question, body)
      ids.append(row_ids)
      segments.append(row_segments)
      offsets.append(np.concatenate([np.full((head, 2), -1), token_span[window],
                                     [[-1, -1]]]))
      start, end = _in_window(answer, begin, len(body), head)
      starts.append(start)
      ends.append(end)
      owner.append(index)
  arrays = _pad_inputs(ids, segments, max_len)
  arrays['start'] = np.asarray(starts, np.int32)
  arrays['end'] = np.asarray(ends, np.int32)
  width = arrays['input_ids'].shape[1]
  padded = np.full((len(ids), width, 2), -1, np.int32)
  for row, o in enumerate(offsets):
    padded[row, :len(o)] = o
  return Rows(arrays, np.asarray(owner, np.int32), offsets=padded)


def _context_tokens(tok, context):
  """Word spans, token ids, each token's word and each token's word's character span."""
  spans = [(m.start(), m.end()) for m in re.finditer(r'\S+', context)]
  pieces = _word_pieces(tok, [context[s:t] for s, t in spans])
  ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
  token_word = np.repeat(np.arange(len(pieces)), [len(p) for p in pieces])
  token_span = np.asarray(spans, np.int32).reshape(-1, 2)[token_word]
  return spans, ids, token_word, token_span


def _answer_tokens(example, spans, token_word):
  """First and last context token of the first answer, or None for an unlabelled example."""
  if not example.answers:
    return None
  text, char = example.answers[0]
  word_starts = np.asarray([s for s, _ in spans])
  first = np.searchsorted(word_starts, char, side='right') - 1
  last = np.searchsorted(word_starts, char + max(len(text), 1) - 1, side='right') - 1
  tokens = np.flatnonzero((token_word >= max(first, 0)) & (token_word <= last))
  if not len(tokens):
    raise UserError(f'{example.where}: answer {text!r} lies in no word of its context; '
                    'check its answer_start')
  return tokens[0], tokens[-1]


def _window_starts(length, room, doc_stride):
  """Offsets of windows of `room` tokens, `doc_stride` apart, that cover `length` tokens."""
  if doc_stride < 1 or room < 1:
    raise UserError(f'doc_stride={doc_stride} and the context room {room} (max_len minus '
                    'the question) must both be at least 1: raise max_len')
  begin = 0
  while True:
    yield begin
    if begin + room >= length:
      return
    begin += min(room, doc_stride)


def _in_window(answer, begin, size, head):
  """Row positions of the answer's tokens, [CLS] (0, 0) when it is not wholly inside."""
  if answer is None:
    return -1, -1
  first, last = answer
  if begin <= first and last < begin + size:
    return first - begin + head, last - begin + head
  return 0, 0


_ENCODERS = {'classification': _sequences, 'regression': _sequences, 'tokens': _tagged,
             'span': _windows}


def _pad_inputs(ids, segments, max_len) -> dict[str, np.ndarray]:
  """Inputs padded to the longest row rounded up, never past `max_len`: a position beyond
  the model's table would embed as NaN, which attention spreads to the real tokens."""
  length = padded_length(max(len(i) for i in ids), max_len)
  input_ids = pad(ids, length, 0)
  return {'input_ids': input_ids,
          'positions': np.broadcast_to(np.arange(length, dtype=np.int32), input_ids.shape),
          'segment_ids': pad(segments, length, 0),
          'doc_ids': pad([np.ones(len(i)) for i in ids], length, 0)}


def take(rows: Rows, index) -> Rows:
  """Rows `index` (sorted) of a split with one row per example, as examples 0, 1, ..."""
  words = None
  if rows.words is not None:
    words = rows.words[np.isin(rows.words[:, 0], index)].copy()
    words[:, 0] = np.searchsorted(index, words[:, 0])
  return Rows({k: v[index] for k, v in rows.arrays.items()}, np.arange(len(index)), words)


def gather(rows: Rows, index) -> dict[str, np.ndarray]:
  """Rows `index` as a batch, each per-position array cut to the longest of them rounded up
  to LENGTH_STEP: a batch of short rows runs short, whatever the split's width."""
  width = rows.arrays['input_ids'].shape[1]
  longest = int(rows.arrays['doc_ids'][index].sum(axis=1).max(initial=1))
  length = padded_length(longest, width)
  return {k: v[index, :length] if v.ndim > 1 and v.shape[1] == width else v[index]
          for k, v in rows.arrays.items()}


def batches(rows: Rows, batch_size: int, order=None):
  """Batches of `batch_size` rows in `order` (default: all, in turn), each cut by `gather`;
  the last is filled up with empty rows: inputs 0 (doc ids 0 mark padding), integer targets
  -1, float NaN."""
  order = np.arange(len(rows)) if order is None else np.asarray(order)
  for start in range(0, len(order), batch_size):
    index = order[start:start + batch_size]
    batch = gather(rows, index)
    if len(index) < batch_size:
      batch = {k: _fill(k, v, batch_size) for k, v in batch.items()}
    yield batch


def _fill(name, array, size):
  blank = 0 if name in INPUTS else (np.nan if array.dtype.kind == 'f' else -1)
  extra = np.full((size - len(array),) + array.shape[1:], blank, array.dtype)
  return np.concatenate([array, extra])


def epoch_order(num_rows: int, batch_size: int, epochs: int, seed: int,
                lengths=None) -> np.ndarray:
  """steps x batch_size row indices: a fresh permutation per pass, the last batch of an
  epoch topped up from the next, so every step has a full batch of real rows.

  With `lengths` (N), each run of GROUP_BATCHES batches of an epoch is re-cut into batches
  of rows of the same padded width, in random order (Hugging Face's group_by_length,
  fairseq's buckets): the epoch holds the same rows, and `gather` cuts each batch short.
  Rows are grouped by width, not sorted by exact length, so that within a width a batch
  stays a random draw: where length tracks the label, sorted batches would hold one class.
  """
  steps_per_epoch = -(-num_rows // batch_size)
  total = steps_per_epoch * epochs * batch_size
  rng = np.random.default_rng(seed)
  passes = -(-total // num_rows) + 1
  order = np.concatenate([rng.permutation(num_rows) for _ in range(passes)])[:total]
  order = order.reshape(-1, batch_size)
  if lengths is None:
    return order
  lengths = np.asarray(lengths)
  for epoch in range(epochs):
    for start in range(0, steps_per_epoch, GROUP_BATCHES):
      group = slice(epoch * steps_per_epoch + start,
                    epoch * steps_per_epoch + min(start + GROUP_BATCHES, steps_per_epoch))
      flat = order[group].ravel()
      width = -(-lengths[flat] // LENGTH_STEP)
      by_length = flat[np.argsort(width, kind='stable')].reshape(-1, batch_size)
      order[group] = by_length[rng.permutation(len(by_length))]
  return order
