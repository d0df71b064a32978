"""Many local files mapped back to back into one range of addresses.

A batch of a large corpus reads a few tokens from hundreds of shard files. Mapped one
range per file, each read would be a numpy call of its own; mapped side by side in one
reserved range (`MAP_FIXED` inside a `PROT_NONE` reservation, as allocators reserve
memory), all of a batch's reads are one numpy gather over one array. Only the pages a
batch touches are read, and the kernel may drop them again (they are the files' pages,
not the process's memory). Advised random: a fault reads its page, not a read-ahead
window. Linux and macOS.
"""

import ctypes
import errno
import mmap
import os
from typing import Any

import numpy as np

from ssljax.data.store import REPAIR
from ssljax.errors import UserError

_MAP_FIXED = 0x10  # the same on Linux and macOS; Python's mmap module does not export it
_PROT_NONE = 0
_MAP_NORESERVE = getattr(mmap, 'MAP_NORESERVE', 0x4000 if os.uname().sysname == 'Linux' else 0x40)
_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def _page_round(n: int) -> int:
  return -(-n // mmap.PAGESIZE) * mmap.PAGESIZE


class _Mapping:
  """Owns the reserved range; unmapped when the last array over it is gone."""

  def __init__(self, size: int):
    self.size = size
    self.address = _libc.mmap(None, size, _PROT_NONE,
                              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
    if self.address in (None, _FAILED):
      raise OSError(ctypes.get_errno(), 'cannot reserve address space')

  def __del__(self):
    if self.address not in (None, _FAILED):
      _libc.munmap(self.address, self.size)


class Region:
  """`files` (name, size) mapped read-only in order; `start[i]` is file i's first byte in
  the region and `view(dtype)` one array over all of it. Reading outside the files'
  bytes is an error of the caller: the gaps are not readable."""

  def __init__(self, files: list[tuple[str, int]]):
    sizes = [int(size) for _, size in files]
    self.start = np.concatenate([[0], np.cumsum([_page_round(s) for s in sizes])])
    self._mapping = _Mapping(max(int(self.start[-1]), mmap.PAGESIZE))
    for (name, size), at in zip(files, self.start):
      if size:
        self._map(name, size, self._mapping.address + int(at))
    _libc.madvise(self._mapping.address, self._mapping.size, mmap.MADV_RANDOM)
    self._buffer: Any = (ctypes.c_char * self._mapping.size).from_address(self._mapping.address)
    # arrays over the buffer keep the range mapped (ctypes arrays take attributes)
    self._buffer.owner = self._mapping  # type: ignore[attr-defined]

  @staticmethod
  def _map(name: str, size: int, address: int):
    fd = os.open(name, os.O_RDONLY)
    try:
      if os.fstat(fd).st_size < size:
        raise UserError(f'{name} is shorter than the {size} bytes listed for it; it was '
                        f'changed after prepare: {REPAIR}')
      got = _libc.mmap(address, size, mmap.PROT_READ, mmap.MAP_SHARED | _MAP_FIXED, fd, 0)
    finally:
      os.close(fd)
    if got != address:
      code = ctypes.get_errno()
      hint = (': the process has too many maps; prepare with a larger --split-mb (fewer, '
              'larger shards) or raise vm.max_map_count' if code == errno.ENOMEM else '')
      raise UserError(f'cannot map {name} ({os.strerror(code)}){hint}')

  def view(self, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    return np.frombuffer(self._buffer, dtype, self._mapping.size // dtype.itemsize)
