"""The `model` section of a config as a frozen dataclass that modules can hold as static data."""

import dataclasses

import jax.numpy as jnp

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The `model` part of the config, frozen so that modules can hold it as static data."""
  arch: str
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  max_len: int
  type_vocab_size: int = 2
  embed_size: int = 0
  share_layers: bool = False
  pre_ln: bool = False
  activation: str = 'gelu'
  use_bias: bool = True
  positions: str = 'learned'
  norm: str = 'layer'  # layer (LayerNorm) | rms (RMSNorm, Llama)
  rope_base: float = 10000.0
  first_attention_norm: bool = True  # False: block 0 reads the embedding norm's output (ModernBERT)
  tie_embeddings: bool = True  # False: the output projection is its own V x E table
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  attention: str = 'auto'  # the attention kernel (models.attention.KERNELS)
  layer_norm_eps: float = 1e-12
  position_offset: int = 0
  scan_layers: bool = False
  remat: bool = False
  dtype: str = 'float32'
  patch_len: int = 0  # patch models: time steps per patch (models.patches)
  channels: int = 0  # patch models: values per time step

  @property
  def context_length(self) -> int:
    """The positions a row may use: the table's `max_len` less the `position_offset` that
    RoBERTa-style tables reserve."""
    return self.max_len - self.position_offset

  @classmethod
  def from_config(cls, model_cfg, **overrides):
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in model_cfg.items() if k in fields} | overrides
    if values['arch'] == 'gpt':
      values['pre_ln'] = True
    return cls(**values)
