"""Loading a pretrained model for use: the entry point of evaluation and export.

`load(path)` takes a pretraining workdir (its latest checkpoint) or one `checkpoints/STEP`
directory and returns the model with its parameters, tokenizer and config, on the default
device, whatever device layout wrote the checkpoint.
"""

import dataclasses
import pathlib

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from ssljax import checkpoint, model, optimizer, strategy, tokenizer as tokenizer_lib
from ssljax.errors import UserError


@dataclasses.dataclass
class Pretrained:
  config: ml_collections.ConfigDict  # the run's full config
  model_cfg: model.ModelConfig
  model: nnx.Module  # parameters included
  tokenizer: object  # tokenizer.Tokenizer (sentencepiece) or hf_tokenizer.HFTokenizer
  step: int


def _locate(path) -> tuple[pathlib.Path, int | None]:
  path = pathlib.Path(path).expanduser()
  if (path / 'checkpoints').is_dir():
    return path, None
  if path.name.isdigit() and path.parent.name == 'checkpoints':
    return path.parent.parent, int(path.name)
  raise UserError(f'{path} is neither a pretraining workdir (with checkpoints/) nor a '
                  'checkpoints/STEP directory; pass the --workdir of `ssljax pretrain`')


def load(path) -> Pretrained:
  workdir, step = _locate(path)
  mgr = checkpoint.manager(workdir, keep=1, async_save=False)
  step = mgr.latest_step() if step is None else step
  if step is None or step not in mgr.all_steps():
    raise UserError(f'no checkpoint {"" if step is None else step} in {workdir}/checkpoints')
  where = f'{workdir}/checkpoints/{step}'
  try:
    meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    tokenizer = tokenizer_lib.from_proto(checkpoint.tokenizer_kind(meta),
                                         checkpoint.tokenizer_proto(meta),
                                         origin=f'the tokenizer in {where}')
  except (KeyError, ValueError, FileNotFoundError) as e:
    raise UserError(f'{where} has no readable metadata or tokenizer ({e}); it was not '
                    'written by `ssljax pretrain`') from None
  config = ml_collections.ConfigDict(meta['config'])
  model_cfg = model.ModelConfig.from_config(
      config.model, vocab_size=config.model.vocab_size or tokenizer.vocab_size)
  tx = optimizer.build(config.optimizer, config.train.steps)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                          jax.eval_shape(strategy.init_fn(model_cfg, tx, model.build), 0))
  try:
    state = mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))['state']
  except Exception as e:  # a corrupt or foreign checkpoint: one line, not Orbax's traceback
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    raise UserError(f'{where} could not be restored ({type(e).__name__}: {first}); pass '
                    'another step directory') from None
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: model.build(model_cfg, nnx.Rngs(0))))
  return Pretrained(config, model_cfg, nnx.merge(graphdef, state['params']), tokenizer, step)
