"""ssljax.pretrain.checkpoint: state, data position and meta round trip; a corrupt latest
checkpoint is set aside and the previous one used; parameters alone can be read."""

import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ssljax.errors import UserError
from ssljax.pretrain import checkpoint
from ssljax.pretrain.state import TrainState

DEVICE = jax.sharding.SingleDeviceSharding(jax.devices()[0])


def _state(scale):
  params = {'dense': {'kernel': scale * jnp.arange(6.0).reshape(2, 3), 'bias': jnp.ones(3)}}
  return TrainState.create(params, optax.adam(1e-3))


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=DEVICE), tree)


def _meta(seed):
  config = ml_collections.ConfigDict({'train': {'seed': seed}})
  return checkpoint.make_meta(config, b'\x00proto\xff', 'hf')


@pytest.fixture
def workdir(tmp_path):
  """Checkpoints at steps 2 and 4 of states with parameters x2 and x4."""
  mgr = checkpoint.manager(tmp_path, keep=3, async_save=False)
  for step in (2, 4):
    checkpoint.save(mgr, step, _state(step), {'position': step}, _meta(step))
  mgr.close()
  return tmp_path


def _manager(workdir):
  """A reader's manager, as a resumed run or `pretrained.load` opens one."""
  return checkpoint.manager(workdir, keep=3)


def _corrupt(workdir, step):
  for f in (workdir / 'checkpoints' / str(step) / 'state').rglob('*'):
    if f.is_file():
      f.write_bytes(b'garbage')


def test_the_latest_restores_whole(workdir):
  step, state, data, meta = checkpoint.restore_latest(_manager(workdir), _abstract(_state(1)))
  assert step == 4 and data == {'position': 4} and meta['seed'] == 4
  jax.tree.map(np.testing.assert_array_equal, state, _state(4))
  assert checkpoint.tokenizer_proto(meta) == b'\x00proto\xff'
  assert checkpoint.tokenizer_kind(meta) == 'hf'
  assert checkpoint.tokenizer_kind({}) == 'sentencepiece'  # written before HF import
  assert checkpoint.latest_meta(_manager(workdir))['seed'] == 4


def test_parameters_alone(workdir):
  mgr = _manager(workdir)
  params = checkpoint.restore_params(mgr, 2, _abstract(_state(1).params))
  jax.tree.map(np.testing.assert_array_equal, params, _state(2).params)
  assert checkpoint.read_meta(mgr, 2)['seed'] == 2


def test_a_corrupt_latest_is_set_aside_and_the_previous_used(workdir, caplog):
  _corrupt(workdir, 4)
  with pytest.raises(UserError, match='could not be restored'):
    checkpoint.restore_params(_manager(workdir), 4, _abstract(_state(1).params))
  mgr = _manager(workdir)
  with caplog.at_level(logging.WARNING):
    step, state, data, _ = checkpoint.restore_latest(mgr, _abstract(_state(1)))
  assert step == 2 and data == {'position': 2}
  jax.tree.map(np.testing.assert_array_equal, state, _state(2))
  assert 'could not be restored' in caplog.text
  assert (workdir / 'checkpoints' / 'unreadable-4').is_dir() and mgr.all_steps() == [2]


def test_none_restores(workdir, tmp_path):
  _corrupt(workdir, 4)
  _corrupt(workdir, 2)
  with pytest.raises(UserError, match=r'none of the checkpoints \[4, 2\]'):
    checkpoint.restore_latest(_manager(workdir), _abstract(_state(1)))
  empty = checkpoint.manager(tmp_path / 'empty', keep=3)
  assert checkpoint.restore_latest(empty, _abstract(_state(1))) is None
  assert checkpoint.latest_meta(empty) is None
