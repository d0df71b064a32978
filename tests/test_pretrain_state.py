"""ssljax.pretrain.state.TrainState: a fresh state, and a pytree that keeps its type."""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import config as config_lib
from ssljax.pretrain import optimizer
from ssljax.pretrain.state import TrainState


def _params():
  return {'dense': {'kernel': jnp.arange(6, dtype=jnp.float32).reshape(2, 3),
                    'bias': jnp.ones(3)},
          'norm': {'scale': jnp.ones(3)}}


def _tx():
  return optimizer.build(config_lib.base().optimizer, 10)


def test_create_starts_at_step_zero_with_the_optimizer_state_of_tx():
  params, tx = _params(), _tx()
  state = TrainState.create(params, tx)
  assert state.params is params
  expected = tx.init(params)
  assert jax.tree.structure(state.opt_state) == jax.tree.structure(expected)
  jax.tree.map(np.testing.assert_array_equal, state.opt_state, expected)
  assert state.step.shape == () and state.step.dtype == jnp.int32 and int(state.step) == 0


def test_it_is_a_pytree_that_keeps_its_type():
  state = TrainState.create(_params(), _tx())
  leaves, treedef = jax.tree.flatten(state)
  assert len(leaves) == 3 + len(jax.tree.leaves(state.opt_state)) + 1
  assert isinstance(jax.tree.unflatten(treedef, leaves), TrainState)
  moved = jax.tree.map(lambda x: x + 1, state)
  assert isinstance(moved, TrainState) and int(moved.step) == 1
  np.testing.assert_array_equal(moved.params['dense']['bias'], 2)
  jitted = jax.jit(lambda s: s)(state)
  assert isinstance(jitted, TrainState) and jitted.step.dtype == jnp.int32
  names = {jax.tree_util.keystr(path[:1]) for path, _ in
           jax.tree_util.tree_leaves_with_path(state)}
  assert names == {'.params', '.opt_state', '.step'}  # the names checkpoints store
