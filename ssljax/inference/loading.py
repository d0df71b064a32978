"""Loading a pretrained model for use: the entry point of evaluation, export and encoding.

`load(path)` takes a pretraining workdir (its latest checkpoint), one `checkpoints/STEP`
directory, or a Hugging Face model folder (one with `config.json`), and returns the model
with its parameters, tokenizer and config on the default device, whatever device layout
wrote the checkpoint. Only parameters are read: the optimizer state is neither built nor
restored. Hugging Face folders go through `ssljax.interop`, imported only for them (its
safetensors and tokenizers are the `hf` extra); interop returns a `Pretrained` too, so it
imports nothing of this module.
"""

import contextlib

import jax
import ml_collections
from flax import nnx

from ssljax import checkpoint, models, paths, pretrained, tokenizers
from ssljax.errors import UserError
from ssljax.pretrained import Pretrained


def _locate(path: paths.Path) -> tuple[paths.Path, int | None]:
  if (path / 'checkpoints').is_dir():
    return path, None
  if path.name.isdigit() and path.parent.name == 'checkpoints':
    return path.parent.parent, int(path.name)
  if pretrained.holds_run(path):
    raise UserError(f'{path} holds a run that has saved no checkpoint yet (a run saves at '
                    'train.checkpoint_every and when it ends); wait for one, or resume it')
  raise UserError(f'{path} is neither a pretraining workdir (with checkpoints/), a '
                  'checkpoints/STEP directory, nor a Hugging Face folder (with config.json); '
                  'pass the --workdir of `ssljax pretrain`')


def load(path) -> Pretrained:
  """The model, tokenizer and config at `path` (see the module docstring)."""
  path = paths.path(path)
  # A pretraining workdir writes a config.json too (its run's config), and has checkpoints/
  # or, before its first checkpoint, a lock or metrics (`pretrained.holds_run`).
  if (path / 'config.json').is_file() and not pretrained.holds_run(path):
    from ssljax.interop import huggingface  # the hf extra: only for Hugging Face folders
    return huggingface.load_folder(path)[0]
  workdir, step = _locate(path)
  # Closing also removes the local staging copy of an s3:// checkpoint.
  with contextlib.closing(checkpoint.manager(workdir, keep=1, async_save=False)) as mgr:
    step = mgr.latest_step() if step is None else step
    if step is None:
      raise UserError(f'{workdir}/checkpoints holds no finished checkpoint yet (a run saves '
                      'at train.checkpoint_every and when it ends); pass a workdir whose run '
                      'has saved one')
    if step not in mgr.all_steps():
      raise UserError(f'no checkpoint {step} in {workdir}/checkpoints; it holds steps '
                      f'{mgr.all_steps()}')
    where = f'{workdir}/checkpoints/{step}'
    meta = checkpoint.read_meta(mgr, step)
    tokenizer = None  # a series model (tokenizer kind 'none') reads numbers
    try:
      if checkpoint.tokenizer_kind(meta) != 'none':
        tokenizer = tokenizers.from_proto(checkpoint.tokenizer_kind(meta),
                                          checkpoint.tokenizer_proto(meta),
                                          origin=f'the tokenizer in {where}')
    except (KeyError, ValueError) as e:
      raise UserError(f'{where} has no readable tokenizer ({e}); it was not written by '
                      '`ssljax pretrain`') from None
    config = ml_collections.ConfigDict(meta['config'])
    model_cfg = models.ModelConfig.from_config(
        config.model, vocab_size=config.model.vocab_size or (tokenizer.vocab_size if tokenizer
                                                             else 0))
    graphdef, abstract = models.abstract(model_cfg)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    params = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                          nnx.to_pure_dict(abstract))
    params = checkpoint.restore_params(mgr, step, params)
    checkpoint.check_finite(params, where)
  # tokenizer is None for a series model: Pretrained.tokenizer is typed for text models only
  return Pretrained(config, model_cfg, nnx.merge(graphdef, params), tokenizer,  # type: ignore[arg-type]
                    step)


def init_from(config: ml_collections.ConfigDict) -> Pretrained | None:
  """The model `train.init_from` names, loaded, for `pretrain(config, workdir, init=...)`;
  None when it names none."""
  return load(config.train.init_from) if config.train.init_from else None
