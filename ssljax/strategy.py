"""The two ways a step runs over devices, behind one small interface.

`Jit`: one program over a (data, fsdp, tensor) mesh; parameters and optimizer state are
sharded by their logical axes, the batch over data x fsdp. Multi-host safe.
`Pmap`: classic data parallelism; state replicated on every local device, gradients summed
across devices. Both take the same per-process batch and return the same metrics.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import SingleDeviceSharding

from ssljax import parallel, step as step_lib
from ssljax.errors import UserError


def init_fn(model_cfg, tx, build_model):
  """state = {params, opt_state, step} for a seed, as a pure function to jit."""

  def init(seed):
    params = nnx.to_pure_dict(nnx.state(build_model(model_cfg, nnx.Rngs(jax.random.key(seed)))))
    return {'params': params, 'opt_state': tx.init(params), 'step': jnp.zeros((), jnp.int32)}

  return init


class Jit:
  """jit over a mesh with explicit in/out shardings and donated state."""

  def __init__(self, spec: step_lib.StepSpec, init, abstract_params_state, config):
    self.mesh = parallel.make_mesh(config.mesh)
    parallel.check_divisible(config, self.mesh)
    self.spec = spec
    params_sh = parallel.param_shardings(abstract_params_state, self.mesh)
    shapes = jax.eval_shape(init, 0)
    rep = parallel.replicated(self.mesh)
    opt_sh = optax.tree_map_params(spec.tx, lambda _, s: s, shapes['opt_state'], params_sh,
                                   transform_non_params=lambda _: rep)
    self.shardings = {'params': params_sh, 'opt_state': opt_sh, 'step': rep}
    self.abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes,
        self.shardings)
    self._init = jax.jit(init, out_shardings=self.shardings)
    batch_sh = parallel.batch_sharding(self.mesh)
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
    return parallel.global_batch(local_batch, self.mesh)

  def step(self, state, batch):
    return self._step(state, batch)

  def evaluate(self, state, batch, index):
    return self._eval(state['params'], batch, jnp.asarray(index, jnp.int32))

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
    per_process = config.train.batch_size // jax.process_count()
    if per_process % (len(self.devices) * config.train.grad_accum):
      raise UserError(f'train.batch_size={config.train.batch_size} gives {per_process} rows '
                      f'per process, not divisible by {len(self.devices)} local devices x '
                      f'train.grad_accum={config.train.grad_accum}')
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
    return jax.tree.map(lambda m: m[0], self._eval(state['params'], batch, index))

  def from_saved(self, state):
    return self._replicate(state)

  def to_save(self, state):
    return jax.device_get(jax.tree.map(lambda x: x[0], state))
