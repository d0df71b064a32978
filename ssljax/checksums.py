"""Checksums of a checkpoint step's files, so that bytes that rot are found, not used.

Orbax 0.12 verifies no array data (its zarr3 layout checksums only the shard index, and
ssljax writes OCDBT), and an overwritten byte inside an array decodes to a finite, wrong
number. So once a step is committed, `seal` writes `STEP/ssljax-checksums.json` (each file's
size and CRC32, written whole) and `verify` compares them before any array is read. A step
that does not match is damaged: the restore sets it aside like an unreadable one.

Sealed are steps in a local folder (and an s3:// run's local staging copy, before upload);
a gs:// step would have to be read back over the network, and the store keeps its own
object checksums. A step without the file (written by an older ssljax, or one whose process
died between the commit and the seal) is restored unverified.
"""

import json
import os
import zlib

from ssljax import paths

NAME = 'ssljax-checksums.json'
_CHUNK = 1 << 24


class Damaged(ValueError):
  """A step's file is missing or differs from the checksum recorded when it was written."""


def _crc32(file: paths.Path) -> int:
  crc = 0
  with file.open('rb') as f:
    while chunk := f.read(_CHUNK):
      crc = zlib.crc32(chunk, crc)
  return crc


def _files(step_dir: paths.Path) -> list[paths.Path]:
  """The files of the step's items (state, data, meta). Orbax's step-level metadata file
  is left out: its metadata store may rewrite it after the commit."""
  return [f for item in step_dir.iterdir() if item.is_dir() for f in paths.rglob(item, '*')]


def seal(step_dir: paths.Path):
  """Writes the checksums of the committed step `step_dir`, unless it has them already."""
  step_dir = paths.path(step_dir)
  record = step_dir / NAME
  if paths.is_remote(step_dir) or record.exists() or not step_dir.is_dir():
    return
  try:
    sums = {os.path.relpath(f, step_dir): [f.stat().length, _crc32(f)]
            for f in _files(step_dir)}
  except FileNotFoundError:  # the step was deleted meanwhile (train.keep_checkpoints)
    return
  paths.write_whole(record, json.dumps({'crc32': sums}, sort_keys=True))


def verify(step_dir: paths.Path, item: str | None = None):
  """Raises Damaged naming the first file that is missing or differs; nothing when the step
  has no checksums (see the module docstring). `item` checks that item's files alone (its
  metadata, read before any array)."""
  step_dir = paths.path(step_dir)
  record = step_dir / NAME
  if not record.exists():
    return
  try:
    sums = json.loads(record.read_text())['crc32']
  except (ValueError, KeyError, TypeError):
    raise Damaged(f'{record} does not decode') from None
  for name, (size, crc) in sorted(sums.items()):
    if item is not None and not name.startswith(item + os.sep):
      continue
    file = step_dir / name
    if not file.exists():
      raise Damaged(f'{file} is missing (checksum recorded when it was written)')
    if file.stat().length != size or _crc32(file) != crc:
      raise Damaged(f'{file} does not match its checksum: its bytes changed after it was '
                    'written')
