"""Token documents back to back, in parts: what the example builders read.

A store is a list of parts, each a flat token array with document offsets. The in-memory
path makes one part from a list of token arrays; a prepared folder makes one part per
shard file, opened only when a batch first touches it (`data/shards.py`). Documents are
numbered globally in part order, and a token's global coordinate is its part's base plus
its place in the part, so the builders never see the parts. A span read by the builders
never crosses a document, so it never crosses a part either.
"""

import functools

import numpy as np


class ArrayPart:
  """A part held in memory: `tokens` (flat) and `offsets` ([docs + 1], from 0)."""

  def __init__(self, tokens: np.ndarray, offsets: np.ndarray, name: str = 'memory'):
    self.tokens, self.offsets, self.name = tokens, offsets, name

  @property
  def num_docs(self) -> int:
    return len(self.offsets) - 1

  @property
  def num_tokens(self) -> int:
    return int(self.offsets[-1])

  def read(self, start_N, length_N, width: int) -> np.ndarray:
    """[N, width]: tokens [start, start + length) of the part in each row, 0 after."""
    at_NxW = np.arange(width)[None, :]
    inside = at_NxW < length_N[:, None]
    return np.where(inside, self.tokens[np.where(inside, start_N[:, None] + at_NxW, 0)],
                    0).astype(np.int32)

  def chunk_ends(self, size: int, min_len: int) -> np.ndarray:
    """[docs + 1] cumulative counts of the `size`-token chunks of at least `min_len`
    tokens that each document gives (see `chunk_counts`)."""
    return chunk_counts(np.diff(self.offsets), size, min_len)


def chunk_counts(lengths_D, size: int, min_len: int) -> np.ndarray:
  """[D + 1] cumulative chunk counts: a document of n tokens gives ceil(n / size) chunks,
  less its last one when that is shorter than `min_len`."""
  lengths_D = np.asarray(lengths_D, np.int64)
  full, rest = np.divmod(lengths_D, size)
  counts = full + (rest >= min_len)
  return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


class Store:
  """Parts (opened lazily through `open_part(i)`) with their document and token counts."""

  def __init__(self, docs_P, tokens_P, open_part):
    self.docs_P = np.asarray(docs_P, np.int64)
    self.tokens_P = np.asarray(tokens_P, np.int64)
    self.doc_base = np.concatenate([[0], np.cumsum(self.docs_P)])
    self.token_base = np.concatenate([[0], np.cumsum(self.tokens_P)])
    self._open = functools.lru_cache(maxsize=None)(open_part)

  @classmethod
  def from_docs(cls, token_docs) -> 'Store':
    """One in-memory part; empty documents are left out (they give no example)."""
    docs = [np.asarray(d, np.int32).reshape(-1) for d in token_docs]
    docs = [d for d in docs if len(d)]
    lengths = np.array([len(d) for d in docs], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    part = ArrayPart(np.concatenate([np.zeros(0, np.int32)] + docs), offsets)
    return cls([part.num_docs], [part.num_tokens], lambda i: part)

  @property
  def num_docs(self) -> int:
    return int(self.doc_base[-1])

  @property
  def num_parts(self) -> int:
    return len(self.docs_P)

  def part(self, i: int):
    return self._open(int(i))

  @staticmethod
  def by_part(base, global_N):
    """(the part each global item falls in, given the parts' cumulative `base`; the parts
    present)."""
    part_N = np.searchsorted(base, global_N, side='right') - 1
    return part_N, np.unique(part_N)

  def docs(self, doc_N) -> tuple[np.ndarray, np.ndarray]:
    """(global start token, length) of each global document."""
    doc_N = np.asarray(doc_N, np.int64)
    start, length = np.zeros(len(doc_N), np.int64), np.zeros(len(doc_N), np.int64)
    part_N, parts = Store.by_part(self.doc_base, doc_N)
    for p in parts:
      rows = part_N == p
      offsets = self.part(p).offsets
      local = doc_N[rows] - self.doc_base[p]
      first = np.asarray(offsets[local], np.int64)
      start[rows] = self.token_base[p] + first
      length[rows] = np.asarray(offsets[local + 1], np.int64) - first
    return start, length

  def read(self, start_N, length_N, width: int) -> np.ndarray:
    """[N, width]: the global span [start, start + length) in each row, 0 after it."""
    start_N, length_N = np.asarray(start_N, np.int64), np.asarray(length_N, np.int64)
    out = np.zeros((len(start_N), width), np.int32)
    part_N, parts = Store.by_part(self.token_base, start_N)
    for p in parts:
      rows = part_N == p
      out[rows] = self.part(p).read(start_N[rows] - self.token_base[p], length_N[rows], width)
    return out


class Chunks:
  """The consecutive `size`-token chunks of every document (each at least `min_len`
  tokens), numbered in document order: `len`, and `lookup(index)` -> (doc, the doc's
  global start token, start, end) with start and end inside the document. Each part's
  cumulative counts come from `part.chunk_ends`, read when the part is first touched; `counts_P` (the chunks of each
  part) can be given so that nothing is opened to know the total."""

  def __init__(self, store: Store, size: int, min_len: int, counts_P=None):
    self.store, self.size, self.min_len = store, size, min_len
    if counts_P is None:
      counts_P = [self._ends(p)[-1] for p in range(store.num_parts)]
    self.base = np.concatenate([[0], np.cumsum(np.asarray(counts_P, np.int64))])

  def __len__(self):
    return int(self.base[-1])

  @functools.lru_cache(maxsize=None)
  def _ends(self, p: int) -> np.ndarray:
    return self.store.part(p).chunk_ends(self.size, self.min_len)

  def lookup(self, index_N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index_N = np.asarray(index_N, np.int64)
    doc, start = np.zeros(len(index_N), np.int64), np.zeros(len(index_N), np.int64)
    part_N, parts = Store.by_part(self.base, index_N)
    for p in parts:
      rows = part_N == p
      ends = self._ends(p)
      local = index_N[rows] - self.base[p]
      d = np.searchsorted(ends, local, side='right') - 1
      doc[rows] = self.store.doc_base[p] + d
      start[rows] = (local - np.asarray(ends[d], np.int64)) * self.size
    doc_start, length = self.store.docs(doc)
    return doc, doc_start, start, np.minimum(start + self.size, length)
