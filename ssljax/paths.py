"""Every path a user gives: local, `gs://` or `s3://`, as one `etils.epath.Path`.

`pathlib.Path('gs://bucket/run')` is the local folder `gs:/bucket/run`, so nothing in ssljax
wraps a user's path in pathlib. `etils.epath` (Orbax's own path type) reaches object
storage through fsspec: `gcsfs` for gs:// and `s3fs` for s3://, installed by the `gcs` and
`s3` extras. Object stores have no append and no atomic rename; `append_lines` and the
checkpoint layer (see `checkpoint.py`) are written for that.
"""

import contextlib
import errno
import io
import os
import pathlib
import shutil
import tempfile

import fsspec
import numpy as np
from etils import epath

from ssljax.errors import UserError, require

Path = epath.Path
BACKENDS = {'gs': 'gcsfs', 's3': 's3fs'}  # scheme -> its fsspec back-end (an extra)


def scheme(path) -> str:
  """'gs', 's3', ... for a URL; '' for a local path."""
  text = os.fspath(path)
  return text.split('://', 1)[0] if '://' in text else ''


def is_remote(path) -> bool:
  return bool(scheme(path))


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the errnos of a full disk or quota
FULL_BYTES = 1 << 20  # a local disk with less free than this is full


def disk_full(folder) -> bool:
  """Whether `folder`'s local disk has less than FULL_BYTES free (False for a bucket): how a
  failure whose error carries no errno (TensorStore's, a Beam worker's) is told to be one."""
  if is_remote(folder):
    return False
  folder = os.path.abspath(os.fspath(folder))
  while not os.path.isdir(folder):  # the nearest folder that exists is on the same disk
    folder = os.path.dirname(folder)
  return shutil.disk_usage(folder).free < FULL_BYTES


def path(p) -> epath.Path:
  """`p` as an epath.Path: `~` expanded when local; a URL checked for its back-end."""
  text = os.fspath(p)
  kind = scheme(text)
  if not kind:
    return epath.Path(text).expanduser()
  if kind in BACKENDS:
    require(BACKENDS[kind], f'{text}: a {kind}:// path')
  return epath.Path(text)


def local_absolute(p) -> epath.Path:
  """A local path made absolute (Orbax requires it), a URL unchanged."""
  p = path(p)
  return p if is_remote(p) else epath.Path(os.path.abspath(os.fspath(p)))


def append_lines(file: epath.Path, lines: list[str]):
  """Appends lines to a text file. Object stores cannot append: there the file is rewritten
  whole, which is cheap for a metrics log and keeps it readable at every moment."""
  if not lines:
    return
  text = ''.join(line + '\n' for line in lines)
  if not is_remote(file):
    with file.open('a') as f:
      f.write(text)
    return
  previous = file.read_bytes() if file.exists() else b''
  file.write_bytes(previous + text.encode())


def save_npz(file: epath.Path, **arrays):
  """np.savez into memory, then written whole (`write_whole`), so that `file` may be a URL."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_whole(file, buffer.getvalue())


def load_npz(file: epath.Path) -> dict:
  """Every array of an .npz file (read whole: object-store files are not memory-mapped)."""
  with np.load(io.BytesIO(file.read_bytes())) as stored:
    return dict(stored)


def save_figure(fig, out: epath.Path, dpi: int = 100) -> epath.Path:
  """fig.savefig through a file object, so that `out` may be a URL; the suffix is the format."""
  fig.tight_layout()
  with out.open('wb') as f:
    fig.savefig(f, format=out.suffix.lstrip('.') or 'png', dpi=dpi)
  return out


def read_utf8(file: epath.Path) -> str:
  """A UTF-8 text file without its byte-order mark and with \\n line ends, or one error
  naming the file (epath's read_text ignores `encoding`, so the bytes are decoded here)."""
  try:
    data = file.read_bytes()
  except FileNotFoundError:
    raise UserError(f'{file} does not exist; check the path') from None
  except OSError as e:
    raise UserError(f'cannot read {file}: {e.strerror or e}') from None
  try:
    text = data.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    line = data.count(b'\n', 0, e.start) + 1
    raise UserError(f'{file} is not valid UTF-8 (byte {e.start}, line {line}); '
                    'convert it, e.g. iconv -f latin1 -t utf-8') from None
  return text.replace('\r\n', '\n').replace('\r', '\n')


def input_lines(name, purpose: str) -> list[str]:
  """The lines of a user's `--input` file, for `purpose` (e.g. 'encode'); a missing or
  empty file is one UserError."""
  source = path(name)
  if not source.is_file():
    what = 'is a folder; pass a text file' if source.is_dir() else 'does not exist'
    raise UserError(f'--input {source} {what}')
  lines = read_utf8(source).splitlines()
  if not lines:
    raise UserError(f'--input {source} has no lines to {purpose}')
  return lines


def rglob(folder: epath.Path, pattern: str) -> list[epath.Path]:
  """Files matching `pattern` anywhere below `folder`, sorted (epath refuses `**`)."""
  fs, root = fsspec.core.url_to_fs(os.fspath(folder))
  found = fs.glob(f'{root.rstrip("/")}/**/{pattern}', detail=True)  # types in one listing
  prefix = f'{scheme(folder)}://' if is_remote(folder) else ''
  return sorted(epath.Path(prefix + f) for f, info in found.items() if info['type'] == 'file')


def upload(local_dir, target: epath.Path):
  """Copies every file below the local folder `local_dir` to `target`, keeping their
  relative paths: what a writer that needs a real file system spooled locally goes up."""
  for file in sorted(pathlib.Path(local_dir).rglob('*')):
    if file.is_file():
      dest = target / file.relative_to(local_dir).as_posix()
      dest.parent.mkdir(parents=True, exist_ok=True)
      dest.write_bytes(file.read_bytes())


def write_whole(file: epath.Path, text: str | bytes):
  """Writes `text` (or bytes) so that a reader never sees half of it: locally beside the
  file and renamed over it; on object storage in one upload, which is atomic already (a
  rename there is a copy and a delete)."""
  write = 'write_bytes' if isinstance(text, bytes) else 'write_text'
  if is_remote(file):
    getattr(file, write)(text)
    return
  partial = file.with_name(file.name + '.partial')
  getattr(partial, write)(text)
  partial.replace(file)


# Files that mark a folder as complete (a loader checks for them): moved in last.
LAST = ('meta.json', 'config.json')


@contextlib.contextmanager
def staged(folder):
  """A fresh folder to write files for `folder` into; only when the block ends without an
  error are they moved in, each file whole: locally by a rename on the same file system,
  on object storage by one upload each, the files of LAST last. A failure (a full disk, a
  crash) leaves `folder` as it was, so a rerun that fails never destroys the last good
  result."""
  folder = path(folder)
  if is_remote(folder):
    stage = epath.Path(tempfile.mkdtemp(prefix='ssljax-stage-'))
  else:
    folder.mkdir(parents=True, exist_ok=True)
    stage = epath.Path(tempfile.mkdtemp(prefix=f'.{folder.name}.partial-', dir=folder.parent))
  try:
    yield stage
    for file in sorted((f for f in pathlib.Path(stage).rglob('*') if f.is_file()),
                       key=lambda f: (f.name in LAST, f.as_posix())):
      dest = folder / file.relative_to(stage).as_posix()
      dest.parent.mkdir(parents=True, exist_ok=True)
      if is_remote(folder):
        dest.write_bytes(file.read_bytes())
      else:
        os.replace(file, dest)
  finally:
    shutil.rmtree(stage, ignore_errors=True)
