"""ssljax.checkpoint: state, data position and meta round trip; a corrupt latest
checkpoint is set aside and the previous one used; a read failing on I/O is retried and never
taken for corruption; parameters alone can be read. No read is left in flight by one that
fails (Orbax's closed event loop prints "Event loop is closed" for those when collected)."""

import errno
import gc
import json
import logging
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ssljax import checkpoint, checksums
from ssljax.errors import UserError
from ssljax.pretrain.state import TrainState

DEVICE = jax.sharding.SingleDeviceSharding(jax.devices()[0])
pytestmark = pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')


def _state(scale):
  params = {'dense': {'kernel': scale * jnp.arange(6.0).reshape(2, 3), 'bias': jnp.ones(3)}}
  return TrainState.create(params, optax.adam(1e-3))


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=DEVICE), tree)


def _meta(seed):
  config = ml_collections.ConfigDict({'train': {'seed': seed}})
  return checkpoint.make_meta(config, b'\x00proto\xff', 'hf')


@pytest.fixture(autouse=True)
def no_waits(monkeypatch):
  monkeypatch.setattr(checkpoint, 'RETRY_WAITS', (0.0, 0.0, 0.0), raising=False)
  yield
  gc.collect()  # a read stranded by this test is reported now, as this test's failure


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
  assert [(s, m['seed']) for s, m in checkpoint.metas(_manager(workdir)).items()] == [
      (4, 4), (2, 2)]


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


def _flip_array_bytes(workdir, step):
  """Overwrites bytes inside the largest file of the step's arrays, keeping its size: a
  rotten disk block, which decodes to finite, wrong numbers without a checksum."""
  files = [f for f in (workdir / 'checkpoints' / str(step) / 'state').rglob('*') if f.is_file()]
  biggest = max(files, key=lambda f: f.stat().st_size)
  data = bytearray(biggest.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 4] = bytes(b ^ 0x10 for b in data[middle:middle + 4])
  biggest.write_bytes(bytes(data))
  return biggest


def test_every_committed_step_is_sealed_with_checksums(workdir):
  for step in (2, 4):
    sums = (workdir / 'checkpoints' / str(step) / checksums.NAME).read_text()
    assert '"state/' in sums and '"meta/' in sums and '"data/' in sums
    checksums.verify(workdir / 'checkpoints' / str(step))


def test_overwritten_array_bytes_are_found_and_the_step_set_aside(workdir, caplog):
  damaged = _flip_array_bytes(workdir, 4)
  with pytest.raises(UserError) as raised:
    checkpoint.restore_params(_manager(workdir), 4, _abstract(_state(1).params))
  message = str(raised.value)
  assert '\n' not in message and f'{damaged} does not match its checksum' in message
  mgr = _manager(workdir)
  with caplog.at_level(logging.WARNING):
    step, state, data, _ = checkpoint.restore_latest(mgr, _abstract(_state(1)))
  assert step == 2 and data == {'position': 2}  # the previous good step, exactly
  jax.tree.map(np.testing.assert_array_equal, state, _state(2))
  assert 'does not match its checksum' in caplog.text
  assert (workdir / 'checkpoints' / 'unreadable-4').is_dir() and mgr.all_steps() == [2]


def test_a_step_without_checksums_restores_unverified(workdir):
  """Steps written before checksums existed keep restoring."""
  (workdir / 'checkpoints' / '4' / checksums.NAME).unlink()
  step, state, _, _ = checkpoint.restore_latest(_manager(workdir), _abstract(_state(1)))
  assert step == 4
  jax.tree.map(np.testing.assert_array_equal, state, _state(4))


def test_a_damaged_step_without_checksums_is_kept(workdir, monkeypatch):
  """Array data cut short: without checksums nothing proves it bad (TensorStore's ValueError
  only says a read failed), so the read is retried, then one line, and the step is kept."""
  # TensorStore's reader threads call back into the event loop Orbax closed after each failed
  # read; Python reports those as unraisable, which is noise here, not the test's subject.
  monkeypatch.setattr(sys, 'unraisablehook', lambda unraisable: None)
  (workdir / 'checkpoints' / '4' / checksums.NAME).unlink()
  for chunk in (workdir / 'checkpoints' / '4' / 'state').glob('**/d/*'):
    chunk.write_bytes(chunk.read_bytes()[:chunk.stat().st_size // 2])
  with pytest.raises(UserError) as raised:
    checkpoint.restore_latest(_manager(workdir), _abstract(_state(1)))
  message = str(raised.value)
  assert '\n' not in message and '/checkpoints/4 could not be read after 4 attempts' in message
  assert 'nothing was set aside' in message
  assert checkpoint.held(workdir) == ['2', '4']
  gc.collect()  # the late callbacks, while the hook above is in place


def test_none_restores(workdir, tmp_path):
  _corrupt(workdir, 4)
  _corrupt(workdir, 2)
  mgr = _manager(workdir)
  assert checkpoint.restore_latest(mgr, _abstract(_state(1))) is None
  assert checkpoint.held(workdir) == ['unreadable-2', 'unreadable-4']
  empty = checkpoint.manager(tmp_path / 'empty', keep=3)
  assert checkpoint.restore_latest(empty, _abstract(_state(1))) is None
  assert checkpoint.metas(empty) == {} and checkpoint.held(tmp_path / 'empty') == []


def _flaky(monkeypatch, failures):
  """Orbax's restore fails on I/O `failures` times (as a bucket or a locked file does)."""
  real, calls = checkpoint.ocp.CheckpointManager.restore, []

  def restore(self, *args, **kwargs):
    calls.append(args[0])
    if len(calls) <= failures:
      raise OSError(errno.EIO, 'Input/output error')
    return real(self, *args, **kwargs)

  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, 'restore', restore)
  return calls


def test_a_read_that_fails_twice_resumes_from_the_latest(workdir, monkeypatch):
  calls = _flaky(monkeypatch, failures=2)
  step, state, _, _ = checkpoint.restore_latest(_manager(workdir), _abstract(_state(1)))
  assert step == 4 and calls == [4, 4, 4, 4, 4]  # failed twice; then meta, data, state
  jax.tree.map(np.testing.assert_array_equal, state, _state(4))
  assert checkpoint.held(workdir) == ['2', '4']


def test_a_read_that_always_fails_stops_and_keeps_every_step(workdir, monkeypatch):
  _flaky(monkeypatch, failures=10**6)
  with pytest.raises(UserError) as raised:
    checkpoint.restore_latest(_manager(workdir), _abstract(_state(1)))
  message = str(raised.value)
  assert '\n' not in message and '/checkpoints/4 could not be read after 4 attempts' in message
  assert 'Input/output error' in message and 'nothing was set aside' in message
  with pytest.raises(UserError, match='metadata of .*/checkpoints/4 could not be read'):
    checkpoint.metas(_manager(workdir))
  monkeypatch.undo()
  assert checkpoint.held(workdir) == ['2', '4']
  assert checkpoint.restore_latest(_manager(workdir), _abstract(_state(1)))[0] == 4


def test_another_shape_is_not_corruption(workdir):
  other = _abstract(TrainState.create({'dense': {'kernel': jnp.zeros((2, 5)),
                                                 'bias': jnp.ones(5)}}, optax.adam(1e-3)))
  with pytest.raises(UserError, match=r'/checkpoints/4 holds a state of another shape .*'
                     r'params.dense.bias: this run builds float32\[5\], not compatible with the '
                     r'stored shape float32\[3\]'):
    checkpoint.restore_latest(_manager(workdir), other)
  assert checkpoint.held(workdir) == ['2', '4']


def test_a_missing_part_is_set_aside(workdir):
  (workdir / 'checkpoints' / '4' / 'meta' / 'metadata').unlink()
  mgr = _manager(workdir)
  assert checkpoint.metas(mgr)[4] is None
  assert checkpoint.restore_latest(mgr, _abstract(_state(1)))[0] == 2
  assert checkpoint.held(workdir) == ['2', 'unreadable-4']


def _wrapped(cause):
  """An array read that failed, as Orbax raises it: its text dumps the TensorStore spec."""
  try:
    raise Exception('Encountered error while reading array index: (). See full TensorStore '
                    "details: {'dtype': 'float32', 'driver': 'zarr'}") from cause
  except Exception as e:  # pylint: disable=broad-except
    return e


@pytest.mark.parametrize('error, kind', [
    (OSError(errno.EIO, 'Input/output error'), 'io'),
    (PermissionError(errno.EACCES, 'Permission denied'), 'io'),
    (ValueError('UNAVAILABLE: the bucket did not answer'), 'io'),
    (ValueError('something new and unknown'), 'io'),  # not proven bad: never set aside
    (FileNotFoundError('meta/metadata not found'), 'bad'),
    (KeyError('Item "state" was not found in the checkpoint'), 'bad'),
    (json.JSONDecodeError('Expecting value', 'garbage', 0), 'bad'),
    (checksums.Damaged('state/d/0 does not match its checksum'), 'bad'),
    (_wrapped(checksums.Damaged('state/d/0 is missing')), 'bad'),  # unwrapped by type
    # TensorStore's words are not proof: by type, a read that failed (the checksums, checked
    # before it, found the bytes as written, or the step has none)
    (ValueError('DATA_LOSS: Error decoding chunk'), 'io'),
    (_wrapped(ValueError('FAILED_PRECONDITION: Error reading "params.k/0.0": Truncated '
                         'Zstd-compressed stream')), 'io'),
    (Exception('a bare Exception of its own'), 'io'),
    (checkpoint.ShapeMismatch('params.k', ((2, 4), 'float32'), ((2, 3), 'float32')),
     'mismatch'),
    (ValueError('params.k: not compatible with the stored shape'), 'io'),  # by type, not text
])
def test_what_counts_as_broken(error, kind):
  assert checkpoint._kind(error) == kind
