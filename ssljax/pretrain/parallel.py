"""Devices: multi-host start-up, the (data, fsdp, tensor) mesh, and the two strategies
that run a step over devices behind one small interface.

Parameters name their axes logically ('embed', 'heads', 'mlp', 'vocab', 'layers');
`ssljax.sharding` maps those names to mesh axes (the batch over data x fsdp, parameters and
optimizer state along 'embed' over fsdp, heads, MLP units and vocabulary over tensor).

`Jit`: one program over the mesh; parameters and optimizer state are sharded by their
logical axes, the batch over data x fsdp. Multi-host safe.
`Pmap`: classic data parallelism; state replicated on every local device, gradients summed
across devices. Both take the same per-process batch and return the same metrics.
"""

import dataclasses
import functools
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding

from ssljax import models, sharding
from ssljax.data import series
from ssljax.errors import UserError
from ssljax.models import attention
from ssljax.pretrain import preflight, step as step_lib
from ssljax.pretrain.state import TrainState

log = logging.getLogger(__name__)



def initialize_distributed(distributed):
  """Starts jax.distributed when the config or SSLJAX_DISTRIBUTED / SSLJAX_COORDINATOR ask.

  On a TPU pod slice `jax.distributed.initialize()` finds its peers itself; elsewhere give
  distributed.coordinator_address, num_processes and process_id.
  """
  coordinator = distributed.coordinator_address or os.environ.get('SSLJAX_COORDINATOR', '')
  if not (distributed.initialize or coordinator or os.environ.get('SSLJAX_DISTRIBUTED')):
    return
  if jax.distributed.is_initialized():
    return
  # Only CPU collectives read this; set before the backend starts (as initialize must be).
  jax.config.update('jax_cpu_collectives_implementation', distributed.cpu_collectives)
  kwargs: dict = {}
  if coordinator:
    num = distributed.num_processes or int(os.environ.get('SSLJAX_NUM_PROCESSES', '0'))
    pid = (distributed.process_id if distributed.process_id >= 0
           else int(os.environ.get('SSLJAX_PROCESS_ID', '-1')))
    if num < 1 or pid < 0:
      raise UserError('distributed.coordinator_address is set but distributed.num_processes '
                      'and distributed.process_id are not (or SSLJAX_NUM_PROCESSES and '
                      'SSLJAX_PROCESS_ID)')
    kwargs = dict(coordinator_address=coordinator, num_processes=num, process_id=pid)
  jax.distributed.initialize(**kwargs)


def mesh_shape(mesh_sizes, num_devices):
  """(data, fsdp, tensor) sizes; one of them may be -1: every device the others leave."""
  sizes = {axis: mesh_sizes[axis] for axis in sharding.AXES}  # config key = axis name
  shown = ' '.join(f'mesh.{k}={v}' for k, v in sizes.items())
  free = [k for k, v in sizes.items() if v == -1]
  if len(free) > 1 or any(v == 0 or v < -1 for v in sizes.values()):
    raise UserError(f'mesh sizes must be positive, with at most one -1: {shown}')
  fixed = int(np.prod([v for v in sizes.values() if v != -1]))
  if free:
    if num_devices % fixed:
      raise UserError(f'{shown}: the fixed sizes (product {fixed}) do not divide the '
                      f'{num_devices} devices')
    sizes[free[0]] = num_devices // fixed
  size = int(np.prod(list(sizes.values())))
  if num_devices % size:
    raise UserError(f'{shown}: data*fsdp*tensor={size} does not divide the {num_devices} '
                    'devices; choose sizes whose product divides it')
  return tuple(sizes[a] for a in sharding.AXES)


def make_mesh(mesh_sizes, devices=None) -> jax.sharding.Mesh:
  """The (data, fsdp, tensor) mesh over `devices` (default: all of them; `ssljax compile`
  passes a TPU topology's compile-only devices)."""
  devices = jax.devices() if devices is None else list(devices)
  shape = mesh_shape(mesh_sizes, len(devices))
  devices = np.asarray(devices[:int(np.prod(shape))])
  auto = (jax.sharding.AxisType.Auto,) * len(sharding.AXES)
  return jax.sharding.Mesh(devices.reshape(shape), sharding.AXES, axis_types=auto)


def param_shardings(abstract_state: nnx.State, mesh) -> dict:
  """NamedShardings for a pure-dict of parameters, from their logical axis names."""
  specs = nnx.to_pure_dict(nnx.get_partition_spec(abstract_state))
  return jax.tree.map(lambda s: NamedSharding(mesh, sharding.to_mesh(s)), specs,
                      is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(sharding.BATCH))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def abstract_batch(config, batch_sh) -> dict:
  """The global batch as ShapeDtypeStructs: what `ssljax compile` lowers the step on (a
  series config's model.channels set, as pretrain sets it from the data)."""
  rows, length = config.train.batch_size, config.data.seq_len
  field = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sh)
  if config.data.source == 'series':
    shapes = series.batch_shapes(config.data, config.model.patch_len, config.model.channels,
                                 rows)
    return {k: field(shape, dtype) for k, (shape, dtype) in shapes.items()}
  batch = {k: field((rows, length), jnp.int32)
           for k in ('input_ids', 'segment_ids', 'positions', 'doc_ids')}
  return batch | {'word_start': field((rows, length), jnp.bool_),
                  'sentence_label': field((rows,), jnp.int32)}


def global_batch(local_batch: dict, mesh) -> dict:
  """Each process's rows -> one global array per field (multi-host safe)."""
  batch_sh = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(batch_sh, v)
          for k, v in local_batch.items()}


def log_attention(config, platform) -> str:
  """Names the attention kernel the step runs on `platform` in the run's log (and checks
  model.attention: one line if it cannot run there)."""
  m = config.model
  kernel = attention.resolve(m.attention, platform, dropout=m.attention_dropout_rate > 0,
                             length=config.data.seq_len, dtype=m.dtype)
  log.info('attention: %s on %s (model.attention=%s)', kernel, platform, m.attention)
  return kernel


def init_fn(model_cfg, tx):
  """A fresh TrainState from a seed, as a pure function to jit."""

  def init(seed) -> TrainState:
    model = models.build(model_cfg, nnx.Rngs(jax.random.key(seed)))
    return TrainState.create(nnx.to_pure_dict(nnx.state(model)), tx)

  return init


class Jit:
  """jit over a mesh with explicit in/out shardings and donated state."""

  def __init__(self, spec: step_lib.StepSpec, init, abstract_params_state, config,
               devices=None):
    self.mesh = make_mesh(config.mesh, devices)
    preflight.mesh(config, self.mesh)
    self.attention = log_attention(config, self.mesh.devices.flat[0].platform)
    if spec.grad_accum > 1 and self.mesh.shape[sharding.ACCUMULATION] > 1:
      spec = dataclasses.replace(spec, shard_axis=sharding.ACCUMULATION)
    self.spec = spec
    params_sh = param_shardings(abstract_params_state, self.mesh)
    shapes = jax.eval_shape(init, 0)
    rep = replicated(self.mesh)
    opt_sh = optax.tree_map_params(spec.tx, lambda _, s: s, shapes.opt_state, params_sh,
                                   transform_non_params=lambda _: rep)
    self.shardings = TrainState(params_sh, opt_sh, rep)
    self.abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes,
        self.shardings)
    self._init = jax.jit(init, out_shardings=self.shardings)
    batch_sh = batch_sharding(self.mesh)
    self._step = jax.jit(functools.partial(step_lib.train_step, spec),
                         in_shardings=(self.shardings, batch_sh),
                         out_shardings=(self.shardings, rep), donate_argnums=0)
    self._eval = jax.jit(functools.partial(step_lib.eval_step, spec),
                         in_shardings=(params_sh, batch_sh, rep), out_shardings=rep)

  @property
  def num_devices(self):
    return self.mesh.size

  def init(self, seed):
    return self._init(seed)

  def put_batch(self, local_batch):
    return global_batch(local_batch, self.mesh)

  # Under the mesh, sharding.constrain_rows keeps activations split by rows.
  def step(self, state, batch):
    with jax.set_mesh(self.mesh):
      return self._step(state, batch)

  def lower_step(self, config):
    """The train step lowered on abstract state and batch (nothing is allocated)."""
    with jax.set_mesh(self.mesh):
      return self._step.lower(self.abstract, abstract_batch(config, batch_sharding(self.mesh)))

  def evaluate(self, state, batch, index):
    with jax.set_mesh(self.mesh):
      return self._eval(state.params, batch, jnp.asarray(index, jnp.int32))

  def from_saved(self, state):
    return state

  def to_save(self, state):
    return state


class Pmap:
  """jax.pmap over the local devices; gradients psum'd (= pmean of per-device means)."""

  AXIS = 'batch'

  def __init__(self, spec: step_lib.StepSpec, init, abstract_params_state, config):
    del abstract_params_state
    self.spec = spec = dataclasses.replace(spec, axis_name=self.AXIS)
    self.devices = jax.local_devices()
    self.attention = log_attention(config, self.devices[0].platform)
    preflight.local_rows(config, jax.process_count(), len(self.devices))
    one = SingleDeviceSharding(self.devices[0])
    self.abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=one),
                                 jax.eval_shape(init, 0))
    self._init = jax.jit(init)
    self._step = jax.pmap(functools.partial(step_lib.train_step, spec), axis_name=self.AXIS,
                          donate_argnums=0, devices=self.devices)
    self._eval = jax.pmap(functools.partial(step_lib.eval_step, spec), axis_name=self.AXIS,
                          in_axes=(0, 0, None), devices=self.devices)

  @property
  def num_devices(self):
    return jax.device_count()

  def _replicate(self, tree):
    n = len(self.devices)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), tree)

  def init(self, seed):
    return self._replicate(self._init(seed))

  def put_batch(self, local_batch):
    n = len(self.devices)
    return {k: np.reshape(v, (n, v.shape[0] // n) + v.shape[1:]) for k, v in local_batch.items()}

  def step(self, state, batch):
    state, metrics = self._step(state, batch)
    return state, jax.tree.map(lambda m: m[0], metrics)

  def evaluate(self, state, batch, index):
    return jax.tree.map(lambda m: m[0], self._eval(state.params, batch, index))

  def from_saved(self, state):
    return self._replicate(state)

  def to_save(self, state):
    return jax.device_get(jax.tree.map(lambda x: x[0], state))


STRATEGIES = {'jit': Jit, 'pmap': Pmap}
