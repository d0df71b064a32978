"""`ssljax compile`: the train step `pretrain` runs, compiled for a TPU topology's
compile-only devices (libtpu on any machine) or a GPU node's (the CUDA plugin's compiler,
from XLA's target config of the GPU: no GPU or driver needed), and what the compiler says.

Nothing is allocated and no corpus or tokenizer is read: the state and the batch are
ShapeDtypeStructs with their shardings, the vocabulary size comes from the config
(model.vocab_size, else tokenizer.vocab_size) and the special ids are ssljax's fixed 0-4.
A series config's batch is the series data path's (`series.batch_shapes`); its channels
are read from the data unless model.channels gives them.
Memory per chip comes from `memory_analysis()`; collective bytes and FLOPs from the
optimized HLO that XLA dumps (loop bodies counted as often as they run, see `hlo`).
"""

import contextlib
import dataclasses
import glob
import importlib.resources
import importlib.util
import os
import re
import tempfile
import time

import jax
import numpy as np

from ssljax import chips, errors, models
from ssljax.aot import hlo
from ssljax.data import images, series
from ssljax.errors import UserError, require
from ssljax.models import attention
from ssljax.pretrain import loop, metrics, optimizer, parallel, step as step_lib

GiB = chips.GiB
# What the figures of each platform leave out, said with them.
APPROXIMATE = {
    'tpu': [],
    'gpu': ['no autotuning without a GPU: default GEMM tiles, cuDNN workspaces of 0 bytes '
            '(memory may be low by those)',
            'no cost analysis from the CUDA compiler: FLOPs are the matmuls and cuDNN '
            'attention of the optimized HLO, masked blocks counted'],
}
SETTINGS = ('train.batch_size', 'train.grad_accum', 'mesh.fsdp', 'model.remat')


def topology_devices(name: str):
  """(chip, compile-only devices) of a topology name (see `chips.topology`)."""
  chip, jax_name = chips.topology(name)
  if chip.platform == 'gpu':
    return chip, _gpu_devices(name, chip, jax_name)
  require('libtpu', f'--topology {name}')
  from jax.experimental import topologies
  # Compile-only: no chip is opened, so another process using libtpu is no conflict.
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  if not chips.present(chips.TPU_FILES):
    # Off a TPU VM libtpu asks for this host's slice and workers and prints six lines of
    # errors when no metadata server answers; the topology asked for is unaffected.
    os.environ.setdefault('TPU_ACCELERATOR_TYPE', 'v5litepod-4')
    os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
  try:
    topo = topologies.get_topology_desc(topology_name=jax_name, platform='tpu')
  except (RuntimeError, ValueError) as e:  # no libtpu, or a shape libtpu does not know
    detail = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
    raise UserError(f'--topology {name}: libtpu cannot build {jax_name} ({detail})') from None
  return per_device(chip, topo.devices), topo.devices


def _gpu_devices(name, chip, jax_name):
  """Compile-only CUDA devices of `jax_name` (slices x hosts x GPUs) from the target config
  ssljax ships for `chip`. The plugin registers its compiler while jax starts; where jax
  tried the GPU backend first on a machine without one, it failed and did not."""
  require('jax_cuda12_plugin', f'--topology {name}')
  from jax.experimental import topologies
  try:
    topo = topologies.get_topology_desc(platform='cuda', topology=jax_name,
                                        target_config=_target_config(chip))
  except NotImplementedError:
    raise UserError(f'--topology {name}: the CUDA plugin did not start in this process; '
                    'on a machine without a GPU set JAX_PLATFORMS=cpu before jax is imported '
                    '(the ssljax command does)') from None
  except RuntimeError as e:  # a target config this jax's XLA cannot read
    detail = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
    raise UserError(f'--topology {name}: the CUDA plugin cannot build {jax_name} from '
                    f'{chip.target_config} ({detail})') from None
  return topo.devices


def _target_config(chip: chips.Chip) -> str:
  """The GpuTargetConfig text ssljax ships for `chip` (ssljax/aot/gpus/)."""
  return (importlib.resources.files('ssljax.aot') / 'gpus' / chip.target_config).read_text()


def status_code(e: Exception) -> str:
  """XLA's status code of a JaxRuntimeError (an absl::StatusCode name: RESOURCE_EXHAUSTED,
  INVALID_ARGUMENT, ...), which jaxlib gives only as the message's first field."""
  code = str(e).split(':', 1)[0].strip()
  return code if code.isupper() and code.replace('_', '').isalpha() else ''


@contextlib.contextmanager
def _capability_of(chip: chips.Chip):
  """jax's cuDNN attention asks the local backend which GPU it traces for (its packed
  layout needs Hopper); compiling on a CPU, the answer is the target config's."""
  if chip.platform != 'gpu' or importlib.util.find_spec('nvidia.cudnn') is None:
    yield
    return
  from jax._src.cudnn import fused_attention_stablehlo as cudnn
  block = re.search(r'cuda_compute_capability\s*\{([^}]*)\}', _target_config(chip))
  assert block is not None, chip.target_config
  numbers = dict(re.findall(r'(major|minor):\s*(\d+)', block.group(1)))
  target = (int(numbers.get('major', 0)), int(numbers.get('minor', 0)))
  parse = lambda capability: tuple(int(x) for x in capability.split('.'))
  saved = cudnn.check_compute_capability, cudnn.is_cuda_compute_capability_equal
  cudnn.check_compute_capability = lambda capability: target >= parse(capability)
  cudnn.is_cuda_compute_capability_equal = lambda capability: target == parse(capability)
  try:
    yield
  finally:
    cudnn.check_compute_capability, cudnn.is_cuda_compute_capability_equal = saved


def usable_bytes(chip: chips.Chip) -> int:
  """The memory a step may use per device: a TPU's HBM; on a GPU what jax's allocator
  takes at start, XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.75) of it."""
  if chip.platform == 'tpu':
    return chip.hbm_bytes
  fraction = float(os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION', 0.75))
  return int(chip.hbm_bytes * fraction)


def per_device(chip: chips.Chip, devices) -> chips.Chip:
  """The chip's figures shared among the compile-only devices on it: libtpu 0.0.52 gives
  v4 one device per TensorCore (8 for v4:2x2x1's 4 chips), each with half the HBM (the
  compiler's own limit there is 15.25 GiB), where v5p, also two cores a chip, gets one."""
  share = len(devices) // len({tuple(d.coords) for d in devices})
  if share == 1:
    return chip
  return dataclasses.replace(
      chip, peak_flops=chip.peak_flops / share, hbm_bytes=chip.hbm_bytes // share,
      hbm_bandwidth=chip.hbm_bandwidth / share, ici_bandwidth=chip.ici_bandwidth / share)


def _shard_bytes(tree) -> int:
  return int(sum(np.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
                 for x in jax.tree.leaves(tree)))


# XLA's OOM error, old wording ("Used 30.4G of 15.75G hbm") and new ("... required for HLO
# temporaries (30.42G) exceeds available HBM (15.75G)").
_OOM_USED = (re.compile(r'[Uu]sed ([\d.]+[KMGT]?) of ([\d.]+[KMGT]?) hbm'),
             re.compile(r'\(([\d.]+[KMGT]?)\) exceeds available HBM \(([\d.]+[KMGT]?)\)'))
# A row of XLA's memory-usage report: cumulative; size; offset; values; shapes.
_REPORT_ROW = re.compile(r'\s*[\d.]+\w*\(\s*\d+%\);\s*([\d.]+\w*);\s*\d+;\s*\d+;\s*(.*)')


def _tpu_need(error) -> str:
  text = str(error)
  used = next((m for m in (r.search(text) for r in _OOM_USED) if m), None)
  return f'needs {used.group(1)} of {used.group(2)} HBM per chip' if used else 'does not fit'


def _oom_line(need, dump, config, name) -> str:
  """One line: what the program needs, its three largest allocations (XLA's memory-usage
  report in `dump`) and the settings that would lower them."""
  report = sorted(glob.glob(os.path.join(dump, '*memory-usage-report*')))
  biggest = []
  for line in open(report[-1]).read().splitlines() if report else ():
    m = _REPORT_ROW.match(line)
    if m:
      size, shapes = m.groups()
      parts = shapes.split(', ')
      shown = ', '.join(parts[:2]) + (', ...' if len(parts) > 2 else '')
      biggest.append(f'{size} ({shown})')
    if len(biggest) == 3:
      break
  largest = f'; largest allocations: {"; ".join(biggest)}' if biggest else ''
  return f'{name} {need}{largest}; {_oom_fixes(config)}'


def _oom_fixes(config) -> str:
  """The settings that lower memory per chip, leaving out those already in effect."""
  fixes = ['raise train.grad_accum', 'lower train.batch_size']
  if config.mesh.fsdp != -1:
    fixes.append('shard over more chips (mesh.fsdp=-1)')
  if not config.model.remat:
    fixes.append('set model.remat=true')
  return ', '.join(fixes[:-1]) + ' or ' + fixes[-1]


def with_data_channels(config):
  """`config` with model.channels as pretrain sets it: the one figure of a series batch
  that no key need hold, so read from the data unless model.channels gives it."""
  if config.data.source != 'series' or config.model.channels:
    return config
  try:
    found = series.load(config.data.path, config.model.patch_len,
                        images.Reading.of(config.data)).values.shape[2]
  except UserError as e:
    raise UserError(f'{e} (ssljax compile reads series data for its channels only: set '
                    'model.channels to skip it)') from None
  return loop.with_channels(config, found)


def _vocabulary(config) -> tuple[int, dict]:
  """(vocabulary size, special ids) the step is built with: a text config's, or none for
  series, as pretrain builds them."""
  if config.data.source == 'series':
    return config.model.vocab_size, {}
  vocab_size = config.model.vocab_size or config.tokenizer.vocab_size
  return vocab_size, step_lib.fixed_vocab_ids(vocab_size)


def _compiler_failure(error, name, chip) -> str:
  """One line for an error of XLA's compiler that is not out-of-memory (the patch decoder in
  float32 on GPUs met one: no GEMM tiles found for a fusion)."""
  detail = str(error).strip().splitlines()[0][:200]
  offline = ('; off a GPU XLA compiles without autotuning, with its default GEMM tiles: '
             'another model.dtype (bfloat16) or shape may compile' if chip.platform == 'gpu'
             else '')
  return f"{name}: XLA's compiler failed ({detail}){offline}"


def compile_step(config, topology: str) -> dict:
  """Compiles the train step of `config` for `topology`; returns the figures `ssljax
  compile` prints (fits False with `error` on OOM)."""
  config = with_data_channels(config)
  chip, devices = topology_devices(topology)
  vocab_size, vocab = _vocabulary(config)
  m = config.model
  # Tracing runs on this machine's CPU: the kernel is chosen for the TPU or GPU here.
  kernel = attention.resolve(m.attention, chip.platform, dropout=m.attention_dropout_rate > 0,
                             length=config.data.seq_len, dtype=m.dtype)
  model_cfg = models.ModelConfig.from_config(m, vocab_size=vocab_size, attention=kernel)
  graphdef, abstract_params = models.abstract(model_cfg)
  tx = optimizer.build(config.optimizer, config.train.steps)
  spec = step_lib.build_spec(config, graphdef, tx, vocab)
  strategy = parallel.Jit(spec, parallel.init_fn(model_cfg, tx), abstract_params, config,
                          devices=devices)
  started = time.perf_counter()
  name = f'{config.model.arch} on {topology}'
  if kernel == 'cudnn' and importlib.util.find_spec('nvidia.cudnn') is None:
    raise UserError(f'{name}: model.attention=cudnn needs cuDNN, from the gpu-compile extra: '
                    f"{errors.install_line('gpu-compile')} (or set model.attention=xla)")
  with _capability_of(chip):
    lowered = strategy.lower_step(config)
  mesh = dict(strategy.mesh.shape)
  out = {'topology': topology, 'chip': chip.name, 'platform': chip.platform,
         'chips': len(devices), 'mesh': mesh, 'hbm_bytes': chip.hbm_bytes,
         'usable_bytes': usable_bytes(chip), 'attention': kernel,
         'train_steps': config.train.steps}
  with tempfile.TemporaryDirectory(prefix='ssljax-compile-') as dump:
    try:
      compiled = lowered.compile({'xla_dump_to': dump, 'xla_dump_hlo_as_text': True,
                                  'xla_dump_hlo_pass_re': '^$'})
    except jax.errors.JaxRuntimeError as e:
      if status_code(e) != 'RESOURCE_EXHAUSTED':
        raise UserError(_compiler_failure(e, name, chip)) from None
      return out | {'fits': False, 'error': _oom_line(_tpu_need(e), dump, config, name),
                    'compile_seconds': time.perf_counter() - started}
    texts = sorted(glob.glob(os.path.join(dump, '*after_optimizations.txt')),
                   key=os.path.getsize)
    program = hlo.parse(open(texts[-1]).read()) if texts else None
    mem = compiled.memory_analysis()
    per_chip = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
                + mem.temp_size_in_bytes + mem.generated_code_size_in_bytes)
    # XLA for GPU compiles whatever the size (it checks at run time): the verdict is ours.
    need = f"needs {per_chip / GiB:.2f}G of {out['usable_bytes'] / GiB:.2f}G " + (
        'HBM per chip' if chip.platform == 'tpu' else 'usable per GPU')
    error = _oom_line(need, dump, config, name) if per_chip > out['usable_bytes'] else None
  seconds = time.perf_counter() - started
  cost = compiled.cost_analysis() or {}
  cost = cost[0] if isinstance(cost, list) else cost
  state = strategy.abstract
  opt_bytes = _shard_bytes(state.opt_state)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  tokens = config.train.batch_size * config.data.seq_len
  model_flops = tokens * metrics.model_flops_per_token(config, state.params, model_cfg)
  # One chip's FLOPs with loops unrolled: cost_analysis counts each loop body once, the
  # HLO's matmuls say how much more often they run. HBM traffic is the HLO's own count
  # (loops as they run, slices as sliced): loops differ in bytes per FLOP (a windowed
  # matmul's loop has few FLOPs and whole-activation buffers), so no FLOP ratio scales it.
  factor = program['loop_factor'] if program else 1.0
  flops = float(cost.get('flops', 0.0)) * factor
  if not cost and program:  # GPU: no cost analysis; the HLO's matmuls and cuDNN attention
    flops = program['flops']
  collective = program['collectives'] if program else {}
  hbm_traffic = (program['hbm_traffic'] if program
                 else float(cost.get('bytes accessed', 0.0)) * factor)
  n = len(devices)
  t_compute = flops / chip.peak_flops
  t_hbm = hbm_traffic / chip.hbm_bandwidth  # per chip: the cost analysis is per device
  link, bandwidth = 'ici', chip.ici_bandwidth
  if chip.platform == 'gpu':  # across hosts every ring crosses the network
    hosts = len({d.process_index for d in devices})
    link, bandwidth = ('network', chip.network_bandwidth) if hosts > 1 else ('nvlink', bandwidth)
  t_link = sum(collective.values()) / bandwidth
  t_step = max(t_compute, t_hbm, t_link)
  return out | {
      'fits': error is None,
      **({'error': error} if error else {}),
      'bytes_per_chip': int(per_chip),
      'memory': {'parameters': _shard_bytes(state.params), 'optimizer': opt_bytes,
                 'arguments': int(mem.argument_size_in_bytes),
                 'temporaries': int(mem.temp_size_in_bytes)},
      'parameters': n_params,
      'flops_per_step': flops * n,  # all chips
      'model_flops_per_step': model_flops,
      'cost_analysis_flops_per_step': float(cost.get('flops', 0.0)) * n,  # loops once
      'collective_bytes': {k: int(v) for k, v in collective.items()},
      'largest_collective': (program or {}).get('largest', {}),
      'all_reduced_shapes': (program or {}).get('all_reduced', []),
      'hbm_traffic_bytes': hbm_traffic,  # per chip and step, loops as they run
      'roofline_seconds': {'compute': t_compute, 'hbm': t_hbm, link: t_link},
      'roofline_step_seconds': t_step,
      'roofline_mfu': model_flops / (chip.peak_flops * n) / t_step if t_step else 0.0,
      # train.steps at that bound: hours of the whole slice, so x its hourly price = cost floor
      'run_hours_bound': t_step * config.train.steps / 3600,
      'attention_kernels': (program or {}).get('kernels', []),  # as found in the program
      # Dropout and masking bits: uint32 element-ops per chip and step (0: no RNG work).
      'random_bit_ops': (program or {}).get('random_bit_ops', 0.0),
      'compile_seconds': seconds,
      'approximate': APPROXIMATE[chip.platform],
  }
