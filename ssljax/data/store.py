"""Token documents back to back, in parts: what the example builders read.

A store is a list of parts, each a flat token array with document offsets. The in-memory
path makes one part from a list of token arrays; a prepared folder makes one part per
shard file (`data/shards.py`). Documents are numbered globally in part order, and a
token's global coordinate is its part's base plus its place in the part, so the builders
never see the parts. A span read by the builders never crosses a document, so it never
crosses a part either.

A batch of a large corpus touches a different part in almost every row, so a store never
steps through parts in Python: the parts' data are read through `Parts`, which gathers
from all of them at once (`FlatParts`: one array per kind of data, in memory or mapped),
or, on object storage, groups the requests by part (`data/shards.py`).
"""

import numpy as np

from ssljax.errors import UserError

# What a reader's error about a prepared folder's files says to do: prepare checks every
# file against the sizes and checksums it recorded and rewrites what is missing or damaged.
REPAIR = ('rerun the ssljax prepare command that wrote the folder (the same --config, --set '
          'and --out): it checks every shard and rewrites what is missing or damaged')


def chunk_counts(lengths_D, size: int, min_len: int) -> np.ndarray:
  """[D + 1] cumulative chunk counts: a document of n tokens gives ceil(n / size) chunks,
  less its last one when that is shorter than `min_len`."""
  lengths_D = np.asarray(lengths_D, np.int64)
  full, rest = np.divmod(lengths_D, size)
  counts = full + (rest >= min_len)
  return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def chunk_key(size: int, min_len: int) -> str:
  return f'{size}-{min_len}'


class Table:
  """Per part, a vector of int64 held at `values[at_P[p]:]` (offsets, chunk ends): one
  gather reads entries of any parts."""

  def __init__(self, values: np.ndarray, at_P):
    self.values, self.at_P = values, np.asarray(at_P, np.int64)

  def take(self, part_N, i_N) -> np.ndarray:
    return np.asarray(self.values[self.at_P[part_N] + i_N], np.int64)


class FlatParts:
  """Parts laid out in flat arrays: part p's tokens from `tokens[token_at_P[p]]`, its
  document offsets from `offsets.values[offsets.at_P[p]]`, its chunk index for (size,
  min_len) in `ends[chunk_key]` when one was written. `check(part_N, tokens)` may reject
  what a batch read (a corrupt shard)."""

  def __init__(self, tokens: np.ndarray, token_at_P, offsets: Table,
               ends: dict[str, Table] | None = None, check=None):
    self.tokens_flat, self.token_at_P = tokens, np.asarray(token_at_P, np.int64)
    self.offsets, self._ends = offsets, ends or {}
    self._check = check

  def tokens(self, part_N, start_N, length_N, width: int) -> np.ndarray:
    """[N, width]: tokens [start, start + length) of each row's part, 0 after."""
    at_1xW = np.arange(width)[None, :]
    inside = at_1xW < length_N[:, None]
    first_N = self.token_at_P[part_N] + start_N
    values = self.tokens_flat[np.where(inside, first_N[:, None] + at_1xW, 0)]
    out = np.where(inside, values, 0).astype(np.int32)
    if self._check is not None:
      self._check(part_N, out)
    return out

  def ends(self, size: int, min_len: int) -> Table | None:
    return self._ends.get(chunk_key(size, min_len))


class Store:
  """Parts (read through a `Parts` such as `FlatParts`) with their document and token
  counts."""

  def __init__(self, docs_P, tokens_P, parts, names=None):
    self.docs_P = np.asarray(docs_P, np.int64)
    self.tokens_P = np.asarray(tokens_P, np.int64)
    self.doc_base = np.concatenate([[0], np.cumsum(self.docs_P)])
    self.token_base = np.concatenate([[0], np.cumsum(self.tokens_P)])
    self.parts, self._names = parts, names

  @classmethod
  def from_docs(cls, token_docs) -> 'Store':
    """One in-memory part; empty documents are left out (they give no example)."""
    docs = [np.asarray(d, np.int32).reshape(-1) for d in token_docs]
    docs = [d for d in docs if len(d)]
    lengths = np.array([len(d) for d in docs], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.concatenate([np.zeros(0, np.int32)] + docs)
    return cls([len(docs)], [len(tokens)], FlatParts(tokens, [0], Table(offsets, [0])))

  @property
  def num_docs(self) -> int:
    return int(self.doc_base[-1])

  @property
  def num_parts(self) -> int:
    return len(self.docs_P)

  def name(self, p: int) -> str:
    return self._names[p] if self._names else 'memory'

  @staticmethod
  def part_of(base, global_N) -> np.ndarray:
    """The part each global item falls in, given the parts' cumulative `base`."""
    return np.searchsorted(base, global_N, side='right') - 1

  def offsets(self, part_N, doc_N) -> np.ndarray:
    """Offset `doc` of each row's part (a document's first token; `docs` gives the end),
    checked to lie inside the part: a corrupt index must not send reads elsewhere."""
    values = self.parts.offsets.take(part_N, doc_N)
    bad = (values < 0) | (values > self.tokens_P[part_N])
    if np.any(bad):
      p = int(np.broadcast_to(part_N, bad.shape)[bad].flat[0])
      raise UserError(f'shard {self.name(p)} is corrupt (a document offset outside its '
                      f'{self.tokens_P[p]} tokens); {REPAIR}')
    return values

  def docs(self, doc_N) -> tuple[np.ndarray, np.ndarray]:
    """(global start token, length) of each global document."""
    doc_N = np.asarray(doc_N, np.int64)
    part_N = Store.part_of(self.doc_base, doc_N)
    local_N = doc_N - self.doc_base[part_N]
    first = self.offsets(part_N, local_N)
    return self.token_base[part_N] + first, self.offsets(part_N, local_N + 1) - first

  def read(self, start_N, length_N, width: int) -> np.ndarray:
    """[N, width]: the global span [start, start + length) in each row, 0 after it."""
    start_N, length_N = np.asarray(start_N, np.int64), np.asarray(length_N, np.int64)
    part_N = Store.part_of(self.token_base, start_N)
    return self.parts.tokens(part_N, start_N - self.token_base[part_N], length_N, width)

  def chunk_ends(self, size: int, min_len: int) -> Table:
    """Each part's cumulative chunk counts (`chunk_counts`): the index prepare wrote, else
    computed from every part's offsets (8 bytes a document, in memory)."""
    table = self.parts.ends(size, min_len)
    if table is not None:
      return table
    ends = [chunk_counts(np.diff(self.offsets(np.full(d + 1, p), np.arange(d + 1))),
                         size, min_len) for p, d in enumerate(self.docs_P)]
    at_P = np.concatenate([[0], np.cumsum([len(e) for e in ends])[:-1]])
    return Table(np.concatenate(ends), at_P)


def last_at_or_before(take, hi_N, target_N) -> np.ndarray:
  """Per row, the last i in [0, hi] with take(i) <= target, for nondecreasing take(i)
  and take(0) <= target: a bisection over all rows at once, so that a mapped index is
  read at a few places only."""
  lo, hi = np.zeros_like(hi_N), np.asarray(hi_N, np.int64).copy()
  while np.any(lo < hi):
    mid = (lo + hi + 1) // 2
    ok = take(mid) <= target_N
    lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid - 1)
  return lo


class Chunks:
  """The consecutive `size`-token chunks of every document (each at least `min_len`
  tokens), numbered in document order: `len`, and `lookup(index)` -> (doc, the doc's
  global start token, start, end) with start and end inside the document. `counts_P`
  (the chunks of each part) can be given so that no index is read to know the total."""

  def __init__(self, store: Store, size: int, min_len: int, counts_P=None):
    self.store, self.size, self.key = store, size, chunk_key(size, min_len)
    self.ends = store.chunk_ends(size, min_len)
    if counts_P is None:
      counts_P = self.ends.take(np.arange(store.num_parts), store.docs_P)
    self.base = np.concatenate([[0], np.cumsum(np.asarray(counts_P, np.int64))])

  def __len__(self):
    return int(self.base[-1])

  def lookup(self, index_N) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    index_N = np.asarray(index_N, np.int64)
    part_N = Store.part_of(self.base, index_N)
    local_N = index_N - self.base[part_N]
    d_N = last_at_or_before(lambda d: self.ends.take(part_N, d),
                            np.maximum(self.store.docs_P[part_N] - 1, 0), local_N)
    start = (local_N - self.ends.take(part_N, d_N)) * self.size
    doc = self.store.doc_base[part_N] + d_N
    doc_start, length = self.store.docs(doc)
    if np.any(bad := (start < 0) | (start >= length)):  # a chunk index that is not its shard's
      p = int(part_N[np.argmax(bad)])
      raise UserError(f'chunk index {self.store.name(p)}.chunks-{self.key} is corrupt (a '
                      f'chunk outside its document); {REPAIR}')
    return doc, doc_start, start, np.minimum(start + self.size, length)
