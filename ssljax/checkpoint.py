"""Orbax checkpoints of a pretraining run: state, data position and run metadata together.

`WORKDIR/checkpoints/STEP/` holds `state` (a TrainState: params, optimizer state, step),
`data` (the grain iterator position) and `meta` (config, seed, tokenizer and its kind). Saves
are async and atomic (Orbax writes to a temporary directory and renames it when complete), so
an interrupted save never replaces a good checkpoint.

A read that fails is not taken for corruption: I/O errors (a bucket that does not answer, a
file the process cannot read for now) are retried with backoff and then stop the run with
one line, and a state of another shape (another config or version) stops it too. Only a
step whose own files are proven bad is set aside as `unreadable-STEP` (renamed, never
deleted) and the previous one used. Proof is a fact, never an error's wording: its files
differ from their checksums (`checksums.verify`, before Orbax reads them), a part is missing
(FileNotFoundError, KeyError) or its JSON does not decode. A read of files that match their
checksums failed for another cause than their bytes; TensorStore's ValueError says no more
than that a read failed, so it counts as I/O, for a step without checksums too (an older
ssljax's, or a gs:// one): retried, then one line, and the step is kept.
"""

import base64
import contextlib
import json
import logging
import os
import tempfile
import time

import fsspec
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from ssljax import checksums, paths
from ssljax.errors import UserError

log = logging.getLogger(__name__)


ITEMS = ('state', 'data', 'meta')
UPLOADED = 'ssljax-uploaded'  # written last into an s3:// step directory
RETRY_WAITS = (1.0, 4.0, 16.0)  # seconds before each retry of a read that failed on I/O
# Exceptions of a step whose own files are bad: a part that is missing, does not decode or
# differs from its checksum. Anything else may pass (I/O) or is not the files' fault
# (`ShapeMismatch`).
BAD_FILES = (FileNotFoundError, KeyError, json.JSONDecodeError, UnicodeDecodeError,
             checksums.Damaged)


class ShapeMismatch(Exception):
  """The run builds another array than the checkpoint holds: another config or version."""

  def __init__(self, key: str, wanted, stored):
    super().__init__(f'{key}: this run builds {_described(wanted)}, not compatible with the '
                     f'stored shape {_described(stored)}')
    self.key, self.wanted, self.stored = key, wanted, stored


def manager(workdir, keep: int, async_save: bool = True) -> ocp.CheckpointManager:
  """WORKDIR/checkpoints: local and gs:// through Orbax itself, s3:// through `Staged`."""
  directory = paths.local_absolute(workdir) / 'checkpoints'
  if paths.scheme(directory) == 's3':
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    return Staged(directory, options=options, item_names=ITEMS)
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
  return Sealed(directory, options=options, item_names=ITEMS)


class Sealed(ocp.CheckpointManager):
  """A CheckpointManager that writes the checksums of each step it saved (`checksums.seal`).

  Every save (Orbax's `save` first waits for the one before), `close` and an explicit
  wait end in `wait_until_finished`; once it returns, no save is in flight and every step
  saved is committed (or deleted by max_to_keep), so that is where they get their checksums.
  Steps this manager did not write are left alone: a reader writes nothing.
  """

  def __init__(self, *args, **kwargs):
    self._unsealed: set[int] = set()
    super().__init__(*args, **kwargs)

  def save(self, step, *args, **kwargs):
    with self._disk_full(step):
      saved = super().save(step, *args, **kwargs)
    self._unsealed.add(step)
    return saved

  def wait_until_finished(self):
    with self._disk_full(max(self._unsealed, default=None)):
      super().wait_until_finished()
    steps, self._unsealed = self._unsealed, set()
    if jax.process_index() == 0:
      for step in sorted(steps):
        checksums.seal(paths.path(self.directory) / str(step))


  @contextlib.contextmanager
  def _disk_full(self, step):
    """A full disk inside Orbax's writer threads (an OSError, or TensorStore's ValueError
    that carries errno 28) as one line; Orbax commits a step by a rename, so the steps
    before it are intact and its unfinished directory is removed by the next manager."""
    try:
      yield
    except Exception as e:
      if not _disk_full(e, self.directory):
        raise
      kept = (f'the steps saved before ({", ".join(map(str, self.all_steps()))}) are intact'
              if self.all_steps() else 'no step was committed')
      raise UserError(f'{self.directory}: no space left on the device while saving '
                      f'checkpoint {step}; {kept}. Free some space (or pass a path on another '
                      'disk) and rerun') from None


def _disk_full(e: BaseException | None, directory) -> bool:
  """Whether a failed save ran out of space: an OSError with ENOSPC or EDQUOT in the chain,
  or (TensorStore's full disk is a ValueError without an errno) a local disk with almost
  nothing free."""
  while e is not None:
    if isinstance(e, OSError) and e.errno in paths.DISK_FULL:
      return True
    e = e.__cause__ or e.__context__
  return paths.disk_full(directory)


class Staged(Sealed):
  """Checkpoints of an s3:// workdir, written locally and uploaded step by step.

  Orbax 0.12 writes arrays to local paths and gs:// only (google/orbax#2739 adds S3), so
  here Orbax writes to a local staging folder and each finished step is uploaded to
  s3://.../checkpoints/STEP with the file `ssljax-uploaded` last. A new manager first fills
  a fresh staging folder with the bucket's uploaded steps; an upload cut short has no marker
  and is removed then. Saves are synchronous; one process only (use gs:// on a pod slice).
  """

  def __init__(self, remote: paths.Path, **kwargs):
    if jax.process_count() > 1:
      raise UserError(f'{remote}: s3:// checkpoints are written by one process; on several '
                      'hosts use a gs:// workdir')
    self.remote = remote
    self._fs, self._root = fsspec.core.url_to_fs(os.fspath(remote))
    self._staging = paths.Path(tempfile.mkdtemp(prefix='ssljax-staging-'))
    self._download(self._staging)
    super().__init__(self._staging, **kwargs)

  def _remote_steps(self) -> dict[int, bool]:
    """step -> whether its upload finished."""
    self._fs.invalidate_cache()
    if not self._fs.exists(self._root):
      return {}
    found = {}
    for entry in self._fs.ls(self._root, detail=False):
      name = entry.rstrip('/').rsplit('/', 1)[-1]
      if name.isdigit():
        found[int(name)] = self._fs.exists(f'{entry.rstrip("/")}/{UPLOADED}')
    return found

  def _download(self, staging: paths.Path):
    for step, uploaded in self._remote_steps().items():
      if uploaded:
        self._fs.get(f'{self._root}/{step}', os.fspath(staging / str(step)), recursive=True)
      else:
        log.warning('removing %s/%d: its upload did not finish', self.remote, step)
        self._fs.rm(f'{self._root}/{step}', recursive=True)

  def save(self, step, *args, **kwargs):
    saved = super().save(step, *args, **kwargs)
    self.wait_until_finished()
    kept = set(self.all_steps())
    remote = self._remote_steps()
    for step_kept in sorted(kept):
      if not remote.get(step_kept, False):
        target = f'{self._root}/{step_kept}'
        self._fs.put(os.fspath(self._staging / str(step_kept)), target, recursive=True)
        self._fs.pipe(f'{target}/{UPLOADED}', b'')
    for gone in set(remote) - kept:
      self._fs.rm(f'{self._root}/{gone}', recursive=True)
    return saved

  def close(self):
    super().close()
    self._staging.rmtree(missing_ok=True)


def save(mgr, step, state, data_state, meta):
  mgr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=ocp.args.JsonSave(data_state),
      meta=ocp.args.JsonSave(meta)))


def make_meta(config, tokenizer_proto: bytes, tokenizer_kind: str = 'sentencepiece',
              schedule: list | None = None) -> dict:
  """`schedule`: the learning rate's segments (`loop.Run.schedule`), which pretraining
  saves; without them a resume takes the config's train.steps as the whole schedule."""
  meta = {'config': config.to_dict(), 'seed': config.train.seed,
          'tokenizer': base64.b64encode(tokenizer_proto).decode('ascii'),
          'tokenizer_kind': tokenizer_kind}
  return meta | ({'schedule': schedule} if schedule else {})


def tokenizer_proto(meta) -> bytes:
  return base64.b64decode(meta['tokenizer'])


def tokenizer_kind(meta) -> str:
  """'sentencepiece' or 'hf'; metadata written before Hugging Face import has no kind."""
  return meta.get('tokenizer_kind', 'sentencepiece')


def _first_line(e) -> str:
  return f'{type(e).__name__}: {(str(e).strip().splitlines() or [""])[0][:300]}'


def _kind(e) -> str:
  """'bad' (the step's own files), 'mismatch' (the code wants another tree) or 'io', by the
  exception's type.

  Orbax wraps a failed array read in a bare Exception raised from the error of the read,
  which is the one that says what happened.
  """
  while type(e) is Exception and e.__cause__ is not None:
    e = e.__cause__
  if isinstance(e, ShapeMismatch):
    return 'mismatch'
  return 'bad' if isinstance(e, BAD_FILES) else 'io'


class Unreadable(Exception):
  """A read that still failed on I/O after every retry: nothing is set aside."""


def read(fn, what: str):
  """fn(), retried with backoff while it fails on I/O (see `_kind`); other errors pass."""
  for wait in (*RETRY_WAITS, None):
    try:
      return fn()
    except Exception as e:
      if _kind(e) != 'io':
        raise
      if wait is None:
        raise Unreadable(f'{what} could not be read after {len(RETRY_WAITS) + 1} attempts '
                         f'({_first_line(e)})') from None
      log.warning('reading %s failed (%s); retrying in %.0f s', what, _first_line(e), wait)
      time.sleep(wait)


def _unreadable(e: Unreadable) -> UserError:
  return UserError(f'{e}; nothing was set aside or deleted: make the files readable and '
                   'rerun the same command (or move that step directory away to resume from '
                   'the one before)')


def _restore_meta(mgr, step: int) -> dict:
  """The metadata of `step`, its files verified first."""
  checksums.verify(paths.path(mgr.directory) / str(step), 'meta')
  return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']


def read_meta(mgr, step: int) -> dict:
  """The metadata of checkpoint `step`; a checkpoint without it is not ssljax's."""
  where = f'{mgr.directory}/{step}'
  try:
    return read(lambda: _restore_meta(mgr, step), f'the metadata of {where}')
  except Unreadable as e:
    raise _unreadable(e) from None
  except Exception as e:
    raise UserError(f'{where} has no readable metadata ({_first_line(e)}); it was not '
                    'written by `ssljax pretrain`') from None


def metas(mgr) -> dict[int, dict | None]:
  """step -> metadata of every step, newest first; None where its own files are bad (the
  restore sets that step aside). Read before any array, so that a run with another config
  is refused by any step's metadata without touching the checkpoints it cannot use."""
  found = {}
  for step in sorted(mgr.all_steps(), reverse=True):
    try:
      found[step] = read(lambda s=step: _restore_meta(mgr, s),
                         f'the metadata of {mgr.directory}/{step}')
    except Unreadable as e:
      raise _unreadable(e) from None
    except Exception:
      found[step] = None
  return found


def restore_params(mgr, step: int, abstract_params) -> dict:
  """Only the parameters of checkpoint `step` (no optimizer state is read), placed as the
  ShapeDtypeStructs of `abstract_params` say."""
  try:
    checksums.verify(paths.path(mgr.directory) / str(step))
    target = {'params': abstract_params}
    return mgr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)))['state']['params']
  except Exception as e:  # a corrupt or foreign checkpoint: one line, not Orbax's traceback
    raise UserError(f'{mgr.directory}/{step} could not be restored ({_first_line(e)}); pass '
                    'another step directory') from None


def held(workdir) -> list[str]:
  """The names of every step directory in WORKDIR/checkpoints, unreadable ones included."""
  directory = paths.local_absolute(workdir) / 'checkpoints'
  if not directory.exists():
    return []
  return sorted(p.name for p in directory.iterdir()
                if p.name.isdigit() or p.name.startswith('unreadable-'))


def _set_aside(mgr, step) -> paths.Path:
  """Renames a broken step directory so the run can save that step again; nothing is deleted."""
  path = paths.path(mgr.directory) / str(step)
  aside = path.with_name(f'unreadable-{step}')
  n = 0
  while aside.exists():
    n += 1
    aside = path.with_name(f'unreadable-{step}.{n}')
  path.rename(aside)
  mgr.reload()
  return aside


def _shapes(tree) -> dict[str, tuple]:
  """'params.layer.kernel' -> (shape, dtype) of every array in a state or its metadata."""
  name = lambda k: str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
  return {'.'.join(map(name, path)): (tuple(leaf.shape), np.dtype(leaf.dtype))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_shapes(directory, abstract_state):
  """Raises `ShapeMismatch` naming the first array the run and the checkpoint disagree on.
  Read from the array metadata before any array: an array read that fails strands the
  others in Orbax's closed event loop, which print "Event loop is closed" when collected."""
  handler = ocp.StandardCheckpointHandler()
  try:
    stored = _shapes(getattr(handler.metadata(directory), 'tree', None) or {})
  finally:
    handler.close()
  wanted = _shapes(abstract_state)
  params_first = lambda key: (not key.startswith('params.'), key)  # before optimizer state
  for key in sorted(stored.keys() | wanted.keys(), key=params_first):
    if stored.get(key) != wanted.get(key):
      raise ShapeMismatch(key, wanted.get(key), stored.get(key))


def _described(shape_dtype) -> str:
  return 'nothing' if shape_dtype is None else f'{shape_dtype[1]}{list(shape_dtype[0])}'


def _restore_items(mgr, step, abstract_state) -> dict:
  """The step's items one at a time, the small JSON ones first, and the arrays once their
  shapes are known to fit: one that fails leaves no other read in flight."""
  checksums.verify(paths.path(mgr.directory) / str(step))
  items = {'meta': ocp.args.JsonRestore(), 'data': ocp.args.JsonRestore()}
  restored = {name: mgr.restore(step, args=ocp.args.Composite(**{name: args}))[name]
              for name, args in items.items()}
  _check_shapes(paths.path(mgr.directory) / str(step) / 'state', abstract_state)
  return restored | {'state': mgr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state)))['state']}


def restore_latest(mgr, abstract_state):
  """(step, state, data_state, meta) of the newest checkpoint that restores; None if none.

  `abstract_state` is a tree of ShapeDtypeStructs with the wanted shardings, so a
  checkpoint written on 8 devices restores onto 1 and the reverse. A read that keeps
  failing on I/O, or a state of another shape, is one UserError and nothing is set aside.
  """
  for step in sorted(mgr.all_steps(), reverse=True):
    where = f'{mgr.directory}/{step}'
    try:
      restored = read(lambda s=step: _restore_items(mgr, s, abstract_state),
                      f'checkpoint {where}')
    except Unreadable as e:
      raise _unreadable(e) from None
    except Exception as e:
      if _kind(e) == 'mismatch':
        raise UserError(f'checkpoint {where} holds a state of another shape than this run '
                        f'builds ({_first_line(e)}); it was written by another config or '
                        'version of ssljax and is kept as it is: resume with those, or use a '
                        'new --workdir') from None
      aside = _set_aside(mgr, step)
      log.warning('checkpoint %s could not be restored, a part is missing or broken (%s); '
                  'kept as %s, trying the previous one', where, _first_line(e), aside)
      continue
    return step, restored['state'], restored['data'], restored['meta']
  return None


def check_finite(params, where) -> None:
  """Parameters with NaN or inf (flipped bytes, a diverged run) would give NaN losses or
  features without a word: one line naming the tensor. Counted under jit, so sharded
  parameters of a multi-host run are checked where they lie."""
  def count(x):
    return jnp.sum(~jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.floating) else 0
  counts = jax.device_get(jax.jit(lambda p: jax.tree.map(count, p))(params))
  for key, bad in jax.tree_util.tree_flatten_with_path(counts)[0]:
    if bad:
      raise UserError(f'{where}: parameter {jax.tree_util.keystr(key)} holds {int(bad)} '
                      'non-finite values (NaN or inf); the file is damaged or the run '
                      'diverged: use another checkpoint')
