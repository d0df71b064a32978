"""The train state: parameters, optimizer state and step, as one typed pytree.

`TrainState.create` is the one way to make a fresh state; checkpoints store its fields
under the same names ({params, opt_state, step}), so a state saved by any strategy or
device layout restores into any other.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
  params: dict  # nnx.to_pure_dict of the model's parameters
  opt_state: Any  # optax state of `tx`
  # an int32 scalar jax.Array: optimizer updates applied so far (the same tree also holds a
  # state's shardings and shapes: `parallel` builds TrainState(params_sh, opt_sh, rep))
  step: Any

  @classmethod
  def create(cls, params: dict, tx: optax.GradientTransformation) -> 'TrainState':
    return cls(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))
