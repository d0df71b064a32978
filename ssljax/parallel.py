"""Devices: multi-host start-up, the (data, fsdp, tensor) mesh and logical-axis rules.

Parameters name their axes logically ('embed', 'heads', 'mlp', 'vocab', 'layers'); RULES
map those names to mesh axes. The batch is split over data and fsdp; fsdp also shards
parameters and optimizer state along 'embed'; tensor shards attention heads and MLP units.
"""

import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from ssljax.errors import UserError

AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')
RULES = (
    ('embed', 'fsdp'),
    ('heads', 'tensor'),
    ('mlp', 'tensor'),
    ('vocab', None),
    ('layers', None),
)


def initialize_distributed(cfg):
  """Starts jax.distributed when the config or SSLJAX_DISTRIBUTED / SSLJAX_COORDINATOR ask.

  On a TPU pod slice `jax.distributed.initialize()` finds its peers itself; elsewhere give
  distributed.coordinator_address, num_processes and process_id.
  """
  coordinator = cfg.coordinator_address or os.environ.get('SSLJAX_COORDINATOR', '')
  if not (cfg.initialize or coordinator or os.environ.get('SSLJAX_DISTRIBUTED')):
    return
  if jax.distributed.is_initialized():
    return
  # Only CPU collectives read this; set before the backend starts (as initialize must be).
  jax.config.update('jax_cpu_collectives_implementation', cfg.cpu_collectives)
  kwargs = {}
  if coordinator:
    num = cfg.num_processes or int(os.environ.get('SSLJAX_NUM_PROCESSES', '0'))
    pid = cfg.process_id if cfg.process_id >= 0 else int(os.environ.get('SSLJAX_PROCESS_ID', '-1'))
    if num < 1 or pid < 0:
      raise UserError('distributed.coordinator_address is set but distributed.num_processes '
                      'and distributed.process_id are not (or SSLJAX_NUM_PROCESSES and '
                      'SSLJAX_PROCESS_ID)')
    kwargs = dict(coordinator_address=coordinator, num_processes=num, process_id=pid)
  jax.distributed.initialize(**kwargs)


def mesh_shape(cfg, num_devices):
  """(data, fsdp, tensor) sizes; one of them may be -1: every device the others leave."""
  sizes = {'data': cfg.data, 'fsdp': cfg.fsdp, 'tensor': cfg.tensor}
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
  return tuple(sizes[a] for a in AXES)


def make_mesh(cfg) -> jax.sharding.Mesh:
  shape = mesh_shape(cfg, jax.device_count())
  devices = np.asarray(jax.devices()[:int(np.prod(shape))])
  auto = (jax.sharding.AxisType.Auto,) * len(AXES)
  return jax.sharding.Mesh(devices.reshape(shape), AXES, axis_types=auto)


def check_divisible(config, mesh):
  """Batch and model dimensions must split evenly over the mesh axes that shard them."""
  batch_shards = mesh.shape['data'] * mesh.shape['fsdp']
  micro = config.train.batch_size // config.train.grad_accum
  if micro % batch_shards:
    raise UserError(f'train.batch_size/train.grad_accum={micro} is not divisible by '
                    f'mesh data*fsdp={batch_shards}')
  m = config.model
  for name, size, axis in (('model.hidden_size', m.hidden_size, 'fsdp'),
                           ('model.num_heads', m.num_heads, 'tensor'),
                           ('model.mlp_dim', m.mlp_dim, 'tensor')):
    if size % mesh.shape[axis]:
      raise UserError(f'{name}={size} is not divisible by mesh.{axis}={mesh.shape[axis]}')


def logical_to_mesh(spec: P) -> P:
  rules = dict(RULES)
  return P(*(rules.get(name) if isinstance(name, str) else name for name in spec))


def param_shardings(abstract_state: nnx.State, mesh) -> dict:
  """NamedShardings for a pure-dict of parameters, from their logical axis names."""
  specs = nnx.to_pure_dict(nnx.get_partition_spec(abstract_state))
  return jax.tree.map(lambda s: NamedSharding(mesh, logical_to_mesh(s)), specs,
                      is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local_batch: dict, mesh) -> dict:
  """Each process's rows -> one global array per field (multi-host safe)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local_batch.items()}
