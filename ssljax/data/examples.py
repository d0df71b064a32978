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
from ssljax.data.store import Chunks, Store, last_at_or_before
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
                   seq_len: int, seed: int, max_docs: int = 0) -> Examples:
  """One epoch of `objective` examples of length `seq_len` from token documents."""
  return from_store(Store.from_docs(token_docs), tokenizer, objective, seq_len, seed,
                    max_docs=max_docs)


def chunking(objective: str, seq_len: int) -> tuple[int, int] | None:
  """(chunk size, shortest chunk) that `objective`'s examples cut documents into, or None
  for clm, which packs documents instead."""
  return {'mlm': (seq_len - 2, 1), 'mlm_nsp': (seq_len - 3, 2),
          'mlm_sop': (seq_len - 3, 2)}.get(objective)


def from_store(store: Store, tokenizer: Tokenizer, objective: str, seq_len: int, seed: int,
               chunk_counts_P=None, max_docs: int = 0) -> Examples:
  """One epoch of `objective` examples from a store (see `data/store.py`); `chunk_counts_P`
  (the chunks of each part, when known) spares opening every part to count them;
  `max_docs` caps clm's packed rows (model.max_docs_per_row)."""
  builders = {'mlm': _mlm, 'mlm_nsp': _nsp, 'mlm_sop': _sop}
  if objective not in builders and objective != 'clm':
    raise UserError(f'objective={objective!r} is not one of {", ".join(OBJECTIVES)}')
  if seq_len < MIN_SEQ_LEN:
    raise UserError(f'data.seq_len={seq_len} is too short; use at least {MIN_SEQ_LEN}')
  if objective == 'clm':
    examples = _clm(store, tokenizer, seq_len, max_docs)
  else:
    cut = chunking(objective, seq_len)
    assert cut is not None  # only clm packs documents instead of cutting them
    chunks = Chunks(store, *cut, chunk_counts_P)
    examples = builders[objective](store, chunks, tokenizer, seq_len, seed % 2**32)
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


def _bert_rows(tokenizer, seq_len, store, a_start, a_len, b_start=None, b_len=None,
               label_N=None):
  """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` per row, padded to `seq_len`; spans are
  (global start token, length) in `store`."""
  n = len(a_start)
  j_1xL = np.arange(seq_len)[None, :]
  a_len_1 = a_len[:, None]
  a_NxL = store.read(a_start, a_len, seq_len)
  ids = np.where((j_1xL >= 1) & (j_1xL <= a_len_1),
                 np.take_along_axis(a_NxL, np.clip(j_1xL - 1, 0, seq_len - 1).repeat(n, 0), 1),
                 0)
  ids = np.where(j_1xL == 0, tokenizer.cls_id, ids)
  ids = np.where(j_1xL == a_len_1 + 1, tokenizer.sep_id, ids)
  total_N = a_len + 2
  segments = np.zeros((n, seq_len), np.int32)
  if b_start is not None:
    b_first_1 = a_len_1 + 2
    in_b = (j_1xL >= b_first_1) & (j_1xL < b_first_1 + b_len[:, None])
    b_NxL = store.read(b_start, b_len, seq_len)
    ids = np.where(in_b, np.take_along_axis(b_NxL, np.clip(j_1xL - b_first_1, 0, seq_len - 1),
                                            1), ids)
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


def _mlm(store, chunks, tokenizer, seq_len, seed):
  """`[CLS] chunk [SEP]` over consecutive chunks of each document."""
  del seed  # chunking is deterministic; masking happens later

  def build(index_N):
    d, doc_start, start, end = chunks.lookup(index_N)
    return _bert_rows(tokenizer, seq_len, store, doc_start + start, end - start)

  return Examples(len(chunks), build)


def _split(seed, index_N, start, end):
  """A split point strictly inside each chunk, so A and B are both non-empty."""
  return start + 1 + _below(seed, index_N, 0, end - start - 1)


def _nsp(store, chunks, tokenizer, seq_len, seed):
  """BERT: A and B split one chunk; half the time B comes from another document."""
  if store.num_docs < 2:
    raise UserError(f'NSP needs at least two documents, got {store.num_docs} non-empty; '
                    'add documents (blank lines separate them in .txt files) or use '
                    'objective=mlm_sop')

  def build(index_N):
    d, doc_start, start, end = chunks.lookup(index_N)
    split = _split(seed, index_N, start, end)
    not_next = uniform(seed, index_N, 1) >= 0.5
    pick = _below(seed, index_N, 2, np.full(len(index_N), store.num_docs - 1))
    other = pick + (pick >= d)  # never d itself
    other_start, other_len = store.docs(other)
    size = end - split
    room = np.maximum(other_len - size, 0) + 1
    offset = _below(seed, index_N, 3, room)
    b_start = np.where(not_next, other_start + offset, doc_start + split)
    b_len = np.where(not_next, np.minimum(size, other_len - offset), size)
    return _bert_rows(tokenizer, seq_len, store, doc_start + start, split - start,
                      b_start, b_len, not_next)

  return Examples(len(chunks), build)


def _sop(store, chunks, tokenizer, seq_len, seed):
  """ALBERT: A and B are consecutive spans of one chunk, swapped half the time."""

  def build(index_N):
    d, doc_start, start, end = chunks.lookup(index_N)
    split = _split(seed, index_N, start, end)
    swap = uniform(seed, index_N, 1) >= 0.5
    first, second = doc_start + start, doc_start + split
    return _bert_rows(tokenizer, seq_len, store, np.where(swap, second, first),
                      np.where(swap, end - split, split - start),
                      np.where(swap, first, second), np.where(swap, split - start, end - split),
                      swap)

  return Examples(len(chunks), build)


def _clm(store, tokenizer, seq_len, max_docs=0):
  """GPT: the documents of each part, each ended by [SEP], packed back to back into rows.

  A row holds consecutive pieces of documents; each piece is its own attention group
  with positions from 0, also when it continues a document from the row before. Rows do
  not cross parts: a part's last row is padded. With `max_docs`, a row keeps its first
  `max_docs` pieces and pads the rest (fused kernels that take documents as offsets and
  lengths need the bound).
  """
  rows_P = -(-(store.tokens_P + store.docs_P) // seq_len)
  row_base = np.concatenate([[0], np.cumsum(rows_P)])

  def build(index_N):
    index_N = np.asarray(index_N, np.int64)
    part_N = Store.part_of(row_base, index_N)
    out = _clm_rows(store, part_N, index_N - row_base[part_N], tokenizer, seq_len, max_docs)
    return out | {'segment_ids': np.zeros_like(out['input_ids']),
                  'word_start': tokenizer.word_start[out['input_ids']],
                  'sentence_label': np.zeros(len(index_N), np.int32)}

  return Examples(int(row_base[-1]), build)


def _clm_rows(store, part_N, row_N, tokenizer, seq_len, max_docs=0):
  """Rows `row_N` of each part's packed stream, where document d's tokens start at stream
  position offsets[d] + d (one [SEP] after each document before it)."""
  docs_Nx1, part_Nx1 = store.docs_P[part_N][:, None], part_N[:, None]
  s_Nx1 = (row_N * seq_len)[:, None]
  d0_N = last_at_or_before(lambda d: store.offsets(part_N, d) + d,  # each row's first doc
                           np.maximum(docs_Nx1[:, 0] - 1, 0), s_Nx1[:, 0])
  k_1xK = np.arange(seq_len + 1)[None, :]
  later = np.minimum(d0_N[:, None] + k_1xK, docs_Nx1)  # the next documents' stream starts
  rel_NxK = store.offsets(part_Nx1, later) + later - s_Nx1
  begins = (k_1xK >= 1) & (later < docs_Nx1) & (rel_NxK < seq_len)
  marks = np.zeros((len(row_N), seq_len + 1), np.int64)
  np.put_along_axis(marks, np.where(begins, rel_NxK, seq_len), 1, axis=1)
  marks[:, seq_len] = 0
  j_1xL = np.arange(seq_len)[None, :]
  doc_NxL = np.minimum(d0_N[:, None] + np.cumsum(marks[:, :seq_len], axis=1), docs_Nx1 - 1)
  first_tok = store.offsets(part_Nx1, doc_NxL)
  length = store.offsets(part_Nx1, doc_NxL + 1) - first_tok
  within = s_Nx1 + j_1xL - first_tok - doc_NxL
  real = s_Nx1 + j_1xL < store.tokens_P[part_Nx1] + docs_Nx1
  flat_NxL = first_tok + np.minimum(within, length - 1)  # the token, or the doc's last
  f0 = flat_NxL[:, 0]
  span = store.parts.tokens(part_N, f0, np.minimum(seq_len, store.tokens_P[part_N] - f0),
                            seq_len)
  tokens = np.take_along_axis(span, np.clip(flat_NxL - f0[:, None], 0, seq_len - 1), 1)
  ids = np.where(within < length, tokens, tokenizer.sep_id)
  first = (within == 0) | (j_1xL == 0)
  piece_NxL = np.cumsum(first, axis=1)  # 1, 2, ...: the piece of the row each token is in
  if max_docs:
    real &= piece_NxL <= max_docs
  ids = np.where(real, ids, tokenizer.pad_id)
  positions = j_1xL - np.maximum.accumulate(np.where(first, j_1xL, 0), axis=1)
  return {'input_ids': ids.astype(np.int32),
          'positions': np.where(real, positions, 0).astype(np.int32),
          'doc_ids': np.where(real, piece_NxL, 0).astype(np.int32)}
