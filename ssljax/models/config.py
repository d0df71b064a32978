"""The `model` section of a config as a frozen dataclass that modules can hold as static data."""

import dataclasses

import jax.numpy as jnp

from ssljax import config as config_lib

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelConfig(config_lib.Model):
  """The `model` section of the config (`ssljax.config.Model`: its keys, defaults and docs),
  frozen so that modules can hold it as static data."""

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
