"""Fixed-length pretraining examples from tokenized documents, one builder per objective.

Each example is a dict of length-`seq_len` int32 arrays (`word_start` is bool):
  input_ids      token ids, [PAD] after the end
  segment_ids    0 for `[CLS] A [SEP]`, 1 for `B [SEP]`; all 0 for mlm and clm
  positions      0..L-1; for clm 0..n-1 within each packed piece
  doc_ids        tokens attend only to tokens of the same nonzero doc_id; 0 on padding,
                 so `doc_ids > 0` marks the real tokens
  word_start     the token begins a word (special tokens count as one)
  sentence_label (scalar) NSP: 0 IsNext, 1 NotNext (Hugging Face's convention);
                 SOP: 0 in order, 1 swapped; 0 for mlm and clm

Examples are random access and built a batch of indices at a time with array operations
(no Python per example: a host feeds an accelerator tens of thousands of examples a
second). Their randomness is a hash of (seed, example index, draw), so a run resumes from
a step count without replaying data, and a batch holds the same examples however it is cut.
"""

import numpy as np

from ssljax.config import OBJECTIVES
from ssljax.errors import UserError
from ssljax.tokenizers import Tokenizer

MIN_SEQ_LEN = 8


class Examples:
  """One epoch of examples: `len`, `batch(indices)` -> dict of [n, ...] arrays, and
  `[i]` (one example) or `[slice]` (a sub-epoch) for inspection and tests."""

  def __init__(self, size: int, build):
    self._size, self._build = size, build

  def __len__(self):
    return self._size

  def batch(self, index_N) -> dict[str, np.ndarray]:
    return self._build(np.asarray(index_N, np.int64))

  def __getitem__(self, item):
    if isinstance(item, slice):
      chosen = np.arange(self._size)[item]
      return Examples(len(chosen), lambda index: self._build(chosen[index]))
    if not -self._size <= item < self._size:
      raise IndexError(f'example {item} of {self._size}')
    return {k: v[0] for k, v in self.batch([item % self._size]).items()}


def build_examples(token_docs: list[np.ndarray], tokenizer: Tokenizer, objective: str,
                   seq_len: int, seed: int) -> Examples:
  """One epoch of `objective` examples of length `seq_len` from token documents."""
  builders = {'mlm': _mlm, 'mlm_nsp': _nsp, 'mlm_sop': _sop, 'clm': _clm}
  if objective not in builders:
    raise UserError(f'objective={objective!r} is not one of {", ".join(OBJECTIVES)}')
  if seq_len < MIN_SEQ_LEN:
    raise UserError(f'data.seq_len={seq_len} is too short; use at least {MIN_SEQ_LEN}')
  docs = [np.asarray(d, np.int32).reshape(-1) for d in token_docs]
  examples = builders[objective](docs, tokenizer, seq_len, seed % 2**32)
  if not len(examples):
    raise UserError(f'the corpus gives no {objective} examples: its documents are '
                    'empty after tokenization; add text')
  return examples


def uniform(seed: int, index_N, draw: int) -> np.ndarray:
  """[0, 1) floats, a pure function of (seed, index, draw): splitmix64's finaliser over a
  mix of the three, so any batch of indices draws its numbers at once."""
  with np.errstate(over='ignore'):
    x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
         + np.asarray(index_N, np.uint64) * np.uint64(0xD1B54A32D192ED03)
         + np.uint64(draw) * np.uint64(0x8CB92BA72F3D8DD7))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
  return (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _below(seed, index_N, draw, high_N) -> np.ndarray:
  """Integers uniform in [0, high) per index."""
  return np.minimum((uniform(seed, index_N, draw) * high_N).astype(np.int64), high_N - 1)


def _chunks(docs: list[np.ndarray], size: int, min_len: int) -> np.ndarray:
  """[N, 3] (doc, start, end) of consecutive `size`-token chunks, each in one doc."""
  lengths = np.array([len(d) for d in docs], np.int64)
  counts = -(-lengths // size)
  doc = np.repeat(np.arange(len(docs)), counts)
  first = np.repeat(np.cumsum(counts) - counts, counts)
  start = (np.arange(len(doc)) - first) * size
  end = np.minimum(start + size, lengths[doc])
  table = np.stack([doc, start, end], axis=1)
  return table[end - start >= min_len]


class _Flat:
  """All documents back to back, so a span of any document is a slice of one array."""

  def __init__(self, docs):
    self.tokens = np.concatenate([np.zeros(1, np.int32)] + docs)  # a spare 0 for clipping
    self.lengths = np.array([len(d) for d in docs], np.int64)
    self.offsets = np.cumsum(self.lengths) - self.lengths + 1

  def gather(self, start_N, length_N, at_NxL):
    """Token `at` of each span [start, start + length), 0 outside it."""
    inside = (at_NxL >= 0) & (at_NxL < length_N[:, None])
    return np.where(inside, self.tokens[np.where(inside, start_N[:, None] + at_NxL, 0)], 0)


def _bert_rows(tokenizer, seq_len, flat, a_start, a_len, b_start=None, b_len=None,
               label_N=None):
  """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` per row, padded to `seq_len`; spans are
  (start in flat.tokens, length)."""
  n = len(a_start)
  j_1xL = np.arange(seq_len)[None, :]
  a_len_1 = a_len[:, None]
  ids = np.where((j_1xL >= 1) & (j_1xL <= a_len_1), flat.gather(a_start, a_len, j_1xL - 1), 0)
  ids = np.where(j_1xL == 0, tokenizer.cls_id, ids)
  ids = np.where(j_1xL == a_len_1 + 1, tokenizer.sep_id, ids)
  total_N = a_len + 2
  segments = np.zeros((n, seq_len), np.int32)
  if b_start is not None:
    b_first_1 = a_len_1 + 2
    in_b = (j_1xL >= b_first_1) & (j_1xL < b_first_1 + b_len[:, None])
    ids = np.where(in_b, flat.gather(b_start, b_len, j_1xL - b_first_1), ids)
    ids = np.where(j_1xL == b_first_1 + b_len[:, None], tokenizer.sep_id, ids)
    segments = ((j_1xL >= b_first_1) & (j_1xL <= b_first_1 + b_len[:, None])).astype(np.int32)
    total_N = total_N + b_len + 1
  real = j_1xL < total_N[:, None]
  ids = np.where(real, ids, tokenizer.pad_id).astype(np.int32)
  return {
      'input_ids': ids,
      'segment_ids': segments,
      'positions': np.broadcast_to(np.arange(seq_len, dtype=np.int32), (n, seq_len)).copy(),
      'doc_ids': real.astype(np.int32),
      'word_start': tokenizer.word_start[ids],
      'sentence_label': (np.zeros(n) if label_N is None else label_N).astype(np.int32),
  }


def _mlm(docs, tokenizer, seq_len, seed):
  """`[CLS] chunk [SEP]` over consecutive chunks of each document."""
  del seed  # chunking is deterministic; masking happens later
  table, flat = _chunks(docs, seq_len - 2, min_len=1), _Flat(docs)

  def build(index_N):
    d, start, end = table[index_N].T
    return _bert_rows(tokenizer, seq_len, flat, flat.offsets[d] + start, end - start)

  return Examples(len(table), build)


def _split(seed, index_N, start, end):
  """A split point strictly inside each chunk, so A and B are both non-empty."""
  return start + 1 + _below(seed, index_N, 0, end - start - 1)


def _nsp(docs, tokenizer, seq_len, seed):
  """BERT: A and B split one chunk; half the time B comes from another document."""
  nonempty = np.flatnonzero([len(d) > 0 for d in docs])
  if len(nonempty) < 2:
    raise UserError(f'NSP needs at least two documents, got {len(nonempty)} non-empty; '
                    'add documents (blank lines separate them in .txt files) or use '
                    'objective=mlm_sop')
  table, flat = _chunks(docs, seq_len - 3, min_len=2), _Flat(docs)

  def build(index_N):
    d, start, end = table[index_N].T
    split = _split(seed, index_N, start, end)
    not_next = uniform(seed, index_N, 1) >= 0.5
    pick = _below(seed, index_N, 2, np.full(len(index_N), len(nonempty) - 1))
    other = nonempty[pick + (pick >= np.searchsorted(nonempty, d))]  # never d itself
    size = end - split
    room = np.maximum(flat.lengths[other] - size, 0) + 1
    offset = _below(seed, index_N, 3, room)
    b_start = np.where(not_next, flat.offsets[other] + offset, flat.offsets[d] + split)
    b_len = np.where(not_next, np.minimum(size, flat.lengths[other] - offset), size)
    return _bert_rows(tokenizer, seq_len, flat, flat.offsets[d] + start, split - start,
                      b_start, b_len, not_next)

  return Examples(len(table), build)


def _sop(docs, tokenizer, seq_len, seed):
  """ALBERT: A and B are consecutive spans of one chunk, swapped half the time."""
  table, flat = _chunks(docs, seq_len - 3, min_len=2), _Flat(docs)

  def build(index_N):
    d, start, end = table[index_N].T
    split = _split(seed, index_N, start, end)
    swap = uniform(seed, index_N, 1) >= 0.5
    first, second = flat.offsets[d] + start, flat.offsets[d] + split
    return _bert_rows(tokenizer, seq_len, flat, np.where(swap, second, first),
                      np.where(swap, end - split, split - start),
                      np.where(swap, first, second), np.where(swap, split - start, end - split),
                      swap)

  return Examples(len(table), build)


def _clm(docs, tokenizer, seq_len, seed):
  """GPT: documents, each ended by [SEP], packed back to back into rows.

  A row holds consecutive pieces of documents; each piece is its own attention group
  with positions from 0, also when it continues a document from the row before.
  """
  del seed  # packing is deterministic
  sep = np.array([tokenizer.sep_id], np.int32)
  pieces = [np.concatenate([d, sep]) for d in docs if len(d)]
  stream = np.concatenate([np.zeros(0, np.int32)] + pieces)
  rows = -(-len(stream) // seq_len)
  lengths = np.array([len(p) for p in pieces], np.int64)
  starts = np.zeros(rows * seq_len, bool)
  starts[np.cumsum(lengths) - lengths] = True
  tokens_RxL = np.full(rows * seq_len, tokenizer.pad_id, np.int32)
  tokens_RxL[:len(stream)] = stream
  tokens_RxL, starts = tokens_RxL.reshape(rows, seq_len), starts.reshape(rows, seq_len)
  real_RxL = (np.arange(rows * seq_len) < len(stream)).reshape(rows, seq_len)

  def build(index_N):
    first = starts[index_N]
    first[:, 0] = True
    real = real_RxL[index_N]
    j = np.arange(seq_len)
    positions = j - np.maximum.accumulate(np.where(first, j, 0), axis=1)
    input_ids = tokens_RxL[index_N]
    return {
        'input_ids': input_ids,
        'segment_ids': np.zeros_like(input_ids),
        'positions': np.where(real, positions, 0).astype(np.int32),
        'doc_ids': np.where(real, np.cumsum(first, axis=1), 0).astype(np.int32),
        'word_start': tokenizer.word_start[input_ids],
        'sentence_label': np.zeros(len(index_N), np.int32),
    }

  return Examples(rows, build)
