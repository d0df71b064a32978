"""The architectures by name: `build` makes one, `abstract` gives its structure without
allocating parameters (for restoring checkpoints and planning shardings)."""

from flax import nnx

from ssljax.models.config import DTYPES, ModelConfig
from ssljax.models.decoder import Decoder
from ssljax.models.encoder import Encoder
from ssljax.models.patches import PatchAutoencoder, PatchTransformer

ARCHS = {'bert': Encoder, 'albert': Encoder, 'gpt': Decoder,
         'patch_encoder': PatchTransformer, 'patch_decoder': PatchTransformer,
         'patch_autoencoder': PatchAutoencoder}

__all__ = ['ARCHS', 'DTYPES', 'ModelConfig', 'abstract', 'build']


def build(cfg: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
  """The model that `cfg.arch` names, unsharded: `ssljax.pretrain.parallel` places its
  parameters."""
  with nnx.use_eager_sharding(False):
    return ARCHS[cfg.arch](cfg, rngs=rngs)


def abstract(cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, state of ShapeDtypeStructs carrying logical axis names) of `cfg`'s model."""
  return nnx.split(nnx.eval_shape(lambda: build(cfg, nnx.Rngs(0))))
