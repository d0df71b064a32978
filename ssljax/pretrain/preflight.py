"""The checks a run passes before its first step, each one line naming the fix.

They run where the fact they need is first known (the held-out split once the documents
are split, the vocabulary once the tokenizer is loaded, the mesh once it is built, every
checkpoint's config before any array is read), so a run that cannot train stops before it
reads, builds or writes what the check would have spared. The messages of the resume
checks are the typed exceptions of `ssljax.errors`.
"""

import numpy as np

from ssljax import checkpoint, config as config_lib, sharding
from ssljax.errors import InexactResume, ResumeMismatch, UserError

# Sections that must match to continue a run from its checkpoint.
RESUME_KEYS = ('objective', 'model', 'mlm', 'data', 'tokenizer', 'optimizer')
# train keys that must match too: they set the data order, masks and dropout bits, so a
# change mid-run would make the resumed run another one than the run it continues.
RESUME_TRAIN_KEYS = ('seed', 'batch_size', 'grad_accum', 'dropout_rng')


def held_out(config, documents: list, eval_docs: list):
  """NSP draws a pair's other sentence from another document: one held-out document of
  several gives no evaluation pairs."""
  if config.objective == 'mlm_nsp' and len(eval_docs) == 1 and len(documents) > 1:
    raise UserError(f'data.eval_fraction={config.data.eval_fraction} holds out 1 of the '
                    f'{len(documents)} documents, and NSP pairs need two; raise '
                    'data.eval_fraction, add documents, or set data.eval_fraction=0')


def channels(config, found: int):
  """model.channels is the data's, or 0 to take it from the data."""
  if config.model.channels not in (0, found):
    raise UserError(f'model.channels={config.model.channels} but {config.data.path} has '
                    f'{found} channels; set model.channels=0 to take them from the data')


def vocabulary(vocab_size: int, tokenizer):
  """Every id the tokenizer gives has a row in the embedding."""
  if tokenizer is not None and vocab_size < tokenizer.vocab_size:
    raise UserError(f'model.vocab_size={vocab_size} is smaller than the tokenizer '
                    f'vocabulary ({tokenizer.vocab_size}); set model.vocab_size=0')


def mesh(config, device_mesh):
  """Batch and model dimensions must split evenly over the mesh axes that shard them."""
  batch_shards = int(np.prod([device_mesh.shape[a] for a in sharding.BATCH]))
  micro = config.train.batch_size // config.train.grad_accum
  if micro % batch_shards:
    raise UserError(f'train.batch_size/train.grad_accum={micro} is not divisible by '
                    f'mesh data*fsdp={batch_shards}')
  m = config.model
  for name, size, logical in (('model.hidden_size', m.hidden_size, 'embed'),
                              ('model.num_heads', m.num_heads, 'heads'),
                              ('model.mlp_dim', m.mlp_dim, 'mlp')):
    axis = sharding.RULES[logical]
    if size % device_mesh.shape[axis]:
      raise UserError(f'{name}={size} is not divisible by mesh.{axis}='
                      f'{device_mesh.shape[axis]}')


def local_rows(config, process_count: int, local_devices: int):
  """pmap splits each process's rows over its devices, then over train.grad_accum."""
  per_process = config.train.batch_size // process_count
  if per_process % (local_devices * config.train.grad_accum):
    raise UserError(f'train.batch_size={config.train.batch_size} gives {per_process} rows '
                    f'per process, not divisible by {local_devices} local devices x '
                    f'train.grad_accum={config.train.grad_accum}')


def resumable(config, saved: dict[int, dict | None], workdir):
  """Every step's metadata (`checkpoint.metas`) against the config, before any array is
  read: a run with another config is refused by any step, without touching the others."""
  for step, meta in saved.items():
    if meta is not None:
      resumable_from(config, meta, workdir, step)


def resumable_from(config, meta: dict, workdir, step: int):
  """Raises ResumeMismatch for another model, data or objective; InexactResume for train
  settings under which the run would not continue exactly."""
  saved: dict = meta['config'] if isinstance(meta.get('config'), dict) else {}
  current, defaults = config.to_dict(), config_lib.base().to_dict()
  for key, value in saved.items():  # a key added since the run was written has its default,
    if isinstance(value, dict) and isinstance(defaults.get(key), dict):  # as it had then
      saved[key] = defaults[key] | value
  for key in RESUME_KEYS:
    if saved.get(key) != current[key]:
      old: dict = saved[key] if isinstance(saved.get(key), dict) else {}
      diffs = [f'{key}.{k}: {old.get(k)!r} -> {v!r}'
               for k, v in (current[key].items() if isinstance(current[key], dict) else ())
               if old.get(k) != v]
      raise ResumeMismatch(workdir, step,
                           diffs or [f'{key}: {saved.get(key)!r} -> {current[key]!r}'])
  if step == 0:  # import-hf's step 0 trained nothing: any train settings start from it
    return
  trained: dict = saved['train'] if isinstance(saved.get('train'), dict) else {}
  changed = {k: (trained[k], current['train'][k]) for k in RESUME_TRAIN_KEYS
             if k in trained and trained[k] != current['train'][k]}
  if changed:
    raise InexactResume(f'{workdir}/checkpoints/{step}', changed)


def fresh_start(config, workdir):
  """When no step restores: a run never starts from step 0 while checkpoints/ holds any
  step, set aside or not, unless train.fresh_start says so."""
  held = checkpoint.held(workdir)
  if held and not config.train.fresh_start:
    raise UserError(f'{workdir}/checkpoints holds {", ".join(held)} but no step '
                    'restores; nothing was deleted. Rerun with --set train.fresh_start=true '
                    'to start from step 0 beside them, or use a new --workdir')
