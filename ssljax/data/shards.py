"""Token shard files: documents back to back behind a document index, one file a shard.

Layout (little-endian): a 32-byte header (magic `SSLJAXT1`, the token width in bytes,
the document and token counts), the document offsets (int64, [docs + 1] from 0), then
the tokens. One file per shard makes a shard appear whole or not at all (one rename, or
one object upload), and lets a local shard be memory-mapped: opening one costs a header
read however large it is, and a batch touches only the pages of its spans. On gs:// or
s3:// the index is read once per shard and token spans are fetched by byte range.

A chunk index (`NAME.chunks-SIZE-MIN`, int64 [docs + 1]) beside a shard holds the
cumulative chunk counts (`store.chunk_counts`) of one (chunk size, shortest chunk), so an
MLM/NSP/SOP run finds chunk i's document without a pass over the shard's documents.
"""

import functools
import hashlib
import mmap
import os
import uuid

import fsspec
import numpy as np

from ssljax import paths
from ssljax.data import store as store_lib
from ssljax.errors import UserError

MAGIC = b'SSLJAXT1'
HEADER = 32
_WIDTHS = {2: np.dtype('<u2'), 4: np.dtype('<u4')}


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


class Shard:
  """A store part backed by one shard file (see the module docstring), opened on first
  use. `vocab_size` bounds the ids: an id past it means a corrupt file, named in one
  line."""

  def __init__(self, file: paths.Path, vocab_size: int, size: int | None = None):
    self.file, self.name, self.vocab_size = file, os.fspath(file), vocab_size
    header = self._bytes(0, HEADER)
    if len(header) < HEADER or header[:8] != MAGIC:
      raise self._corrupt('its header is not an ssljax token shard')
    width, _ = np.frombuffer(header[8:16], '<u4')
    docs, tokens = (int(v) for v in np.frombuffer(header[16:32], '<u8'))
    if width not in _WIDTHS:
      raise self._corrupt(f'token width {width}')
    self.dtype, self.docs, self.tokens = _WIDTHS[int(width)], docs, tokens
    self._index_at = HEADER
    self._tokens_at = HEADER + 8 * (docs + 1)
    expected = self._tokens_at + tokens * self.dtype.itemsize
    if size is not None and size != expected:
      raise self._corrupt(f'{size} bytes where its header promises {expected}')

  def _corrupt(self, what: str) -> UserError:
    return UserError(f'shard {self.name} is corrupt ({what}); run ssljax prepare again '
                     'with the same --out to rewrite missing or bad shards')

  def _bytes(self, start: int, length: int) -> bytes:
    with self.file.open('rb') as f:
      f.seek(start)
      return f.read(length)

  @property
  def num_docs(self) -> int:
    return self.docs

  @property
  def num_tokens(self) -> int:
    return self.tokens

  @functools.cached_property
  def offsets(self) -> np.ndarray:
    """[docs + 1] int64: memory-mapped locally, read once on object storage."""
    if paths.is_remote(self.file):
      return np.frombuffer(self._bytes(self._index_at, 8 * (self.docs + 1)), '<i8')
    return np.frombuffer(self._mapped, '<i8', self.docs + 1, self._index_at)

  @functools.cached_property
  def _mapped(self) -> mmap.mmap:
    return map_random(self.name)

  @functools.cached_property
  def _local_tokens(self) -> np.ndarray:
    return np.frombuffer(self._mapped, self.dtype, self.tokens, self._tokens_at)

  def read(self, start_N, length_N, width: int) -> np.ndarray:
    """[N, width]: tokens [start, start + length) of the shard per row, 0 after."""
    if paths.is_remote(self.file):
      out = self._remote_read(start_N, length_N, width)
    else:
      out = store_lib.ArrayPart(self._local_tokens, self.offsets).read(start_N, length_N, width)
    if out.size and out.max() >= self.vocab_size:
      raise self._corrupt(f'token id {out.max()} in a vocabulary of {self.vocab_size}')
    return out

  def _remote_read(self, start_N, length_N, width):
    """One byte-range request per row, sent concurrently (fsspec's cat_ranges)."""
    fs, path = fsspec.core.url_to_fs(self.name)
    size = self.dtype.itemsize
    begin = [self._tokens_at + int(s) * size for s in start_N]
    end = [b + int(n) * size for b, n in zip(begin, np.minimum(length_N, width))]
    out = np.zeros((len(begin), width), np.int32)
    for row, data in enumerate(fs.cat_ranges([path] * len(begin), begin, end)):
      values = np.frombuffer(data, self.dtype)
      out[row, :len(values)] = values
    return out

  def chunk_ends(self, size: int, min_len: int) -> np.ndarray:
    """The chunk index beside the shard when prepare wrote one for (size, min_len), else
    computed from the offsets (in memory: 8 bytes a document)."""
    index = paths.path(f'{self.name}.chunks-{size}-{min_len}')
    if not paths.is_remote(index) and index.exists():
      return np.frombuffer(map_random(os.fspath(index)), '<i8', self.docs + 1)
    return store_lib.chunk_counts(np.diff(self.offsets), size, min_len)


def map_random(name: str) -> mmap.mmap:
  """A read-only map of a local file, advised random: a page fault reads that page, not
  the read-ahead window around it, so memory follows what batches touch."""
  with open(name, 'rb') as f:
    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
  mapped.madvise(mmap.MADV_RANDOM)
  return mapped


def chunk_index_bytes(token_docs, size: int, min_len: int) -> bytes:
  return store_lib.chunk_counts([len(d) for d in token_docs], size,
                                min_len).astype('<i8').tobytes()
