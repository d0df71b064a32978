"""Token shard files: documents back to back behind a document index, one file a shard.

Layout (little-endian): a 32-byte header (magic `SSLJAXT1`, the token width in bytes,
the document and token counts), the document offsets (int64, [docs + 1] from 0), then
the tokens. One file per shard makes a shard appear whole or not at all (one rename, or
one object upload). Local shards are memory-mapped side by side (`local_parts`): opening
them reads nothing, and a batch touches only the pages of its spans. On gs:// or s3://
(`RemoteParts`) the index is read once per shard and token spans are fetched by byte
range.

A chunk index (`NAME.chunks-SIZE-MIN`, int64 [docs + 1]) beside a shard holds the
cumulative chunk counts (`store.chunk_counts`) of one (chunk size, shortest chunk), so an
MLM/NSP/SOP run finds chunk i's document without a pass over the shard's documents.
"""

import functools
import hashlib
import os
import uuid

import fsspec
import numpy as np

from ssljax import paths
from ssljax.data import region, store as store_lib
from ssljax.errors import UserError

MAGIC = b'SSLJAXT1'
HEADER = 32
_WIDTHS: dict[int, np.dtype] = {2: np.dtype('<u2'), 4: np.dtype('<u4')}


def token_dtype(vocab_size: int) -> np.dtype:
  """The narrowest width that holds every id: 2 bytes up to 65,536 ids, else 4."""
  return _WIDTHS[2] if vocab_size <= 2**16 else _WIDTHS[4]


def encode(token_docs, dtype: np.dtype) -> bytes:
  """The bytes of a shard holding `token_docs` (token arrays, in order)."""
  lengths = np.array([len(d) for d in token_docs], np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype('<i8')
  header = (MAGIC + np.array([dtype.itemsize, 0], '<u4').tobytes()
            + np.array([len(lengths), offsets[-1]], '<u8').tobytes())
  tokens = np.concatenate([np.zeros(0, dtype)] + [np.asarray(d).astype(dtype)
                                                  for d in token_docs])
  return header + offsets.tobytes() + tokens.tobytes()


def write_atomic(file: paths.Path, data: bytes):
  """Writes `data` so that `file` is whole or absent: beside it then renamed locally, one
  upload on object storage."""
  if paths.is_remote(file):
    file.write_bytes(data)
    return
  partial = file.with_name(f'{file.name}.partial-{uuid.uuid4().hex[:8]}')
  with open(os.fspath(partial), 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(os.fspath(partial), os.fspath(file))


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _corrupt(name: str, what: str) -> UserError:
  return UserError(f'shard {name} is corrupt ({what}); {store_lib.REPAIR}')


def check_header(name: str, header: bytes, docs: int, tokens: int, dtype: np.dtype):
  """The header must be a shard's and agree with the manifest's counts."""
  if len(header) < HEADER or header[:8] != MAGIC:
    raise _corrupt(name, 'its header is not an ssljax token shard')
  width, _ = np.frombuffer(header[8:16], '<u4')
  counts = tuple(int(v) for v in np.frombuffer(header[16:32], '<u8'))
  if width != dtype.itemsize or counts != (docs, tokens):
    raise _corrupt(name, f'its header says {counts[0]} documents, {counts[1]} tokens of '
                   f'{width} bytes where the manifest says {docs}, {tokens} of '
                   f'{dtype.itemsize}')


def size_of(docs: int, tokens: int, dtype: np.dtype) -> int:
  return HEADER + 8 * (docs + 1) + tokens * dtype.itemsize


class _Checks:
  """What a batch read must pass: each shard's header on its first read, and ids inside
  the vocabulary (an id past it means a corrupt file), named in one line."""

  def __init__(self, names, docs_P, tokens_P, dtype, vocab_size: int, header):
    self.names, self.docs_P, self.tokens_P = names, docs_P, tokens_P
    self.dtype, self.vocab_size, self._header = dtype, vocab_size, header
    self.checked_P = np.zeros(len(names), bool)

  def __call__(self, part_N, tokens_NxW):
    if not self.checked_P[part_N].all():
      for p in np.unique(part_N[~self.checked_P[part_N]]):
        check_header(self.names[p], self._header(p), int(self.docs_P[p]),
                     int(self.tokens_P[p]), self.dtype)
        self.checked_P[p] = True
    if tokens_NxW.size and tokens_NxW.max() >= self.vocab_size:
      row = int(np.argmax(tokens_NxW.max(axis=1) >= self.vocab_size))
      raise _corrupt(self.names[part_N[row]], f'token id {tokens_NxW[row].max()} in a '
                     f'vocabulary of {self.vocab_size}')


def local_parts(folder: paths.Path, entries: list[dict], vocab_size: int,
                chunk_keys=()) -> store_lib.FlatParts:
  """Local shards (and their chunk indexes for `chunk_keys`) mapped side by side
  (`data/region.py`): every read of a batch is one gather, whatever shards it touches."""
  dtype = token_dtype(vocab_size)
  names = [os.fspath(folder / e['name']) for e in entries]
  docs_P = np.array([e['documents'] for e in entries], np.int64)
  tokens_P = np.array([e['tokens'] for e in entries], np.int64)
  files = [(n, size_of(int(d), int(t), dtype)) for n, d, t in zip(names, docs_P, tokens_P)]
  for key in chunk_keys:
    files += [(f'{n}.chunks-{key}', 8 * (int(d) + 1)) for n, d in zip(names, docs_P)]
  mapped = region.Region(files)
  starts = mapped.start[:len(files)].reshape(1 + len(chunk_keys), len(entries))
  as_bytes = mapped.view(np.uint8)
  offsets = store_lib.Table(mapped.view('<i8'), (starts[0] + HEADER) // 8)
  ends = {key: store_lib.Table(mapped.view('<i8'), at // 8)
          for key, at in zip(chunk_keys, starts[1:])}
  token_at = (starts[0] + HEADER + 8 * (docs_P + 1)) // dtype.itemsize
  header = lambda p: as_bytes[starts[0][p]:starts[0][p] + HEADER].tobytes()
  return store_lib.FlatParts(mapped.view(dtype), token_at, offsets, ends,
                             _Checks(names, docs_P, tokens_P, dtype, vocab_size, header))


class _RemoteTable:
  """A per-part int64 vector on object storage, each part's read whole on first use."""

  def __init__(self, read):
    self._read = functools.lru_cache(maxsize=None)(read)

  def take(self, part_N, i_N) -> np.ndarray:
    part_N, i_N = np.broadcast_arrays(part_N, i_N)
    out = np.zeros(i_N.shape, np.int64)
    for p in np.unique(part_N):
      rows = part_N == p
      out[rows] = self._read(int(p))[i_N[rows]]
    return out


class RemoteParts:
  """Shards on gs:// or s3://: document indexes read once per shard, token spans fetched
  by byte range, the requests of a batch grouped by shard and sent concurrently."""

  def __init__(self, folder: paths.Path, entries: list[dict], vocab_size: int,
               chunk_keys=()):
    self.dtype = token_dtype(vocab_size)
    self.names = [os.fspath(folder / e['name']) for e in entries]
    self._fs, root = fsspec.core.url_to_fs(os.fspath(folder))
    self._files = [f'{root}/{e["name"]}' for e in entries]
    self.docs_P = np.array([e['documents'] for e in entries], np.int64)
    tokens_P = np.array([e['tokens'] for e in entries], np.int64)
    self.offsets = _RemoteTable(lambda p: np.frombuffer(
        self._bytes(self.names[p], HEADER, 8 * (int(self.docs_P[p]) + 1)), '<i8'))
    self._ends = {key: _RemoteTable(lambda p, key=key: np.frombuffer(
        self._bytes(f'{self.names[p]}.chunks-{key}', 0, 8 * (int(self.docs_P[p]) + 1)), '<i8'))
        for key in chunk_keys}
    self._check = _Checks(self.names, self.docs_P, tokens_P, self.dtype, vocab_size,
                          lambda p: self._bytes(self.names[p], 0, HEADER))

  @staticmethod
  def _bytes(name: str, start: int, length: int) -> bytes:
    with paths.path(name).open('rb') as f:
      f.seek(start)
      return f.read(int(length))

  def ends(self, size: int, min_len: int):
    return self._ends.get(store_lib.chunk_key(size, min_len))

  def tokens(self, part_N, start_N, length_N, width: int) -> np.ndarray:
    """One byte-range request per row, sent concurrently (fsspec's cat_ranges)."""
    out = np.zeros((len(start_N), width), np.int32)
    if not len(start_N):
      return out
    size = self.dtype.itemsize
    tokens_at = HEADER + 8 * (self.docs_P[part_N] + 1)
    begin = tokens_at + start_N * size
    end = begin + np.clip(np.minimum(length_N, width), 0, None) * size
    files = [self._files[p] for p in part_N]
    for row, data in enumerate(self._fs.cat_ranges(files, begin.tolist(), end.tolist())):
      values = np.frombuffer(data, self.dtype)
      out[row, :len(values)] = values
    self._check(part_N, out)
    return out


def chunk_index_bytes(token_docs, size: int, min_len: int) -> bytes:
  return store_lib.chunk_counts([len(d) for d in token_docs], size,
                                min_len).astype('<i8').tobytes()
