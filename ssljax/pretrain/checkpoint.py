"""Orbax checkpoints of a pretraining run: state, data position and run metadata together.

`WORKDIR/checkpoints/STEP/` holds `state` (a TrainState: params, optimizer state, step), `data` (the grain
iterator position) and `meta` (config, seed, tokenizer and its kind). Saves are async and atomic (Orbax
writes to a temporary directory and renames it when complete), so an interrupted save never
replaces a good checkpoint. A latest checkpoint that fails to restore is reported and the
previous one is used.
"""

import base64
import logging
import os
import tempfile

import fsspec
import jax
import orbax.checkpoint as ocp

from ssljax import paths
from ssljax.errors import UserError

log = logging.getLogger(__name__)


ITEMS = ('state', 'data', 'meta')
UPLOADED = 'ssljax-uploaded'  # written last into an s3:// step directory


def manager(workdir, keep: int, async_save: bool = True) -> ocp.CheckpointManager:
  """WORKDIR/checkpoints: local and gs:// through Orbax itself, s3:// through `Staged`."""
  directory = paths.local_absolute(workdir) / 'checkpoints'
  if paths.scheme(directory) == 's3':
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    return Staged(directory, options=options, item_names=ITEMS)
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(directory, options=options, item_names=ITEMS)


class Staged(ocp.CheckpointManager):
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


def make_meta(config, tokenizer_proto: bytes, tokenizer_kind: str = 'sentencepiece') -> dict:
  return {'config': config.to_dict(), 'seed': config.train.seed,
          'tokenizer': base64.b64encode(tokenizer_proto).decode('ascii'),
          'tokenizer_kind': tokenizer_kind}


def tokenizer_proto(meta) -> bytes:
  return base64.b64decode(meta['tokenizer'])


def tokenizer_kind(meta) -> str:
  """'sentencepiece' or 'hf'; metadata written before Hugging Face import has no kind."""
  return meta.get('tokenizer_kind', 'sentencepiece')


def read_meta(mgr, step: int) -> dict:
  """The metadata of checkpoint `step`; a checkpoint without it is not ssljax's."""
  try:
    return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
  except (KeyError, ValueError, FileNotFoundError) as e:
    raise UserError(f'{mgr.directory}/{step} has no readable metadata ({e}); it was not '
                    'written by `ssljax pretrain`') from None


def restore_params(mgr, step: int, abstract_params) -> dict:
  """Only the parameters of checkpoint `step` (no optimizer state is read), placed as the
  ShapeDtypeStructs of `abstract_params` say."""
  try:
    target = {'params': abstract_params}
    return mgr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)))['state']['params']
  except Exception as e:  # a corrupt or foreign checkpoint: one line, not Orbax's traceback
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    raise UserError(f'{mgr.directory}/{step} could not be restored ({type(e).__name__}: '
                    f'{first}); pass another step directory') from None


def latest_meta(mgr) -> dict | None:
  """The newest checkpoint's metadata alone (config, tokenizer), or None if unreadable.

  Read before any array is restored, so that a run with another config is refused without
  touching, or setting aside, the checkpoints it cannot use.
  """
  step = mgr.latest_step()
  if step is None:
    return None
  try:
    return read_meta(mgr, step)
  except Exception:  # an unreadable checkpoint is handled by restore_latest
    return None


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


def restore_latest(mgr, abstract_state):
  """(step, state, data_state, meta) of the newest checkpoint that restores; None if none.

  `abstract_state` is a tree of ShapeDtypeStructs with the wanted shardings, so a
  checkpoint written on 8 devices restores onto 1 and the reverse.
  """
  steps = sorted(mgr.all_steps(), reverse=True)
  for step in steps:
    try:
      restored = mgr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data=ocp.args.JsonRestore(),
          meta=ocp.args.JsonRestore()))
    except Exception as e:  # a torn or corrupt checkpoint: say so and try the previous one
      first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
      aside = _set_aside(mgr, step)
      log.warning('checkpoint %s/%d could not be restored (%s: %s); kept as %s, trying the '
                  'previous one', mgr.directory, step, type(e).__name__, first_line, aside)
      continue
    return step, restored['state'], restored['data'], restored['meta']
  if steps:
    raise UserError(f'none of the checkpoints {steps} in {mgr.directory} could be restored '
                    '(kept as unreadable-STEP); use a new --workdir to start afresh')
  return None
