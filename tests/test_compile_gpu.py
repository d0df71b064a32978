"""`ssljax compile` for NVIDIA GPUs: the CUDA plugin's compiler builds compile-only devices
from the target configs ssljax ships, on this CPU, with no GPU or driver.

The compiles need the gpu-compile extra (in the test extra); the cuDNN kernel needs its
cuDNN. Each tiny compile takes seconds to tens of seconds on CI's cores.
"""

import importlib.resources
import importlib.util
import re
import subprocess
import sys

import pytest

from ssljax import chips, config as config_lib
from ssljax.aot import compile as compile_lib, hlo
from ssljax.cli import compile as compile_cli
from ssljax.errors import UserError

needs_plugin = pytest.mark.skipif(importlib.util.find_spec('jax_cuda12_plugin') is None,
                                  reason='the CUDA plugin (the gpu-compile extra) is not '
                                  'installed')
needs_cudnn = pytest.mark.skipif(importlib.util.find_spec('nvidia.cudnn') is None,
                                 reason='cuDNN (nvidia-cudnn-cu12, in the gpu-compile extra) '
                                 'is not installed: the fused kernel cannot be lowered')
TINY = ['train.batch_size=8', 'data.seq_len=128', 'model.max_len=128']


def test_gpu_topology_names():
  assert chips.topology('h100:8') == (chips.CHIPS['h100'], '1x1x8')
  assert chips.topology('h100:2x8') == (chips.CHIPS['h100'], '1x2x8')
  assert chips.topology('a100:1')[1] == '1x1x1'
  assert chips.topology('b200:4x8')[1] == '1x4x8'
  for bad in ('h100:9', 'h100:0', 'h100:0x8', 'h100:2x', 'x100:8', 'h100', 'h100-8'):
    with pytest.raises(UserError, match='topology') as e:
      chips.topology(bad)
    assert '\n' not in str(e.value) and 'h100:2x8' in str(e.value)


def test_each_gpu_ships_its_target_config_with_its_source():
  """The HBM that `ssljax compile` judges against is the device memory of the target
  config that XLA compiles for, and each file names where it came from."""
  for chip in chips.CHIPS.values():
    if chip.platform != 'gpu':
      continue
    text = (importlib.resources.files('ssljax.aot') / 'gpus' / chip.target_config
            ).read_text()
    assert re.search(r'^# From openxla/xla, \S+\.txtpb at commit [0-9a-f]{40}$', text, re.M)
    assert int(re.search(r'device_memory_size: (\d+)', text).group(1)) == chip.hbm_bytes
    assert chip.kind in re.search(r'device_description_str: "(.*)"', text).group(1)


def test_gpu_memory_is_what_jax_allocator_takes(monkeypatch):
  monkeypatch.delenv('XLA_PYTHON_CLIENT_MEM_FRACTION', raising=False)
  h100 = chips.CHIPS['h100']
  assert compile_lib.usable_bytes(h100) == int(0.75 * h100.hbm_bytes)
  monkeypatch.setenv('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.9')
  assert compile_lib.usable_bytes(h100) == int(0.9 * h100.hbm_bytes)
  assert compile_lib.usable_bytes(chips.CHIPS['v5e']) == chips.CHIPS['v5e'].hbm_bytes


GPU_HLO = '''HloModule m

%wrapped (p0: f32[64], p1: f32[32]) -> (f32[8], f32[4]) {
  %p0 = f32[64]{0} parameter(0)
  %p1 = f32[32]{0} parameter(1)
  ROOT %reduce-scatter.1 = (f32[8]{0}, f32[4]{0}) reduce-scatter(%p0, %p1), dimensions={0}
}

ENTRY %main () -> f32[10] {
  %a = bf16[16]{0} parameter(0)
  %b = bf16[8]{0} parameter(1)
  %c = f32[10]{0} parameter(2)
  %d = f32[6]{0} parameter(3)
  %q = bf16[2,8,4,16]{3,2,1,0} parameter(4)
  %g = f32[64]{0} parameter(5)
  %h = f32[32]{0} parameter(6)
  %all-gather-start = ((bf16[16], bf16[8]), (bf16[128], bf16[64])) all-gather-start(%a, %b)
  %all-gather-done = (bf16[128]{0}, bf16[64]{0}) all-gather-done(%all-gather-start)
  %all-reduce-start = (f32[10]{0}, f32[6]{0}) all-reduce-start(%c, %d), to_apply=%add
  %all-reduce-done = (f32[10]{0}, f32[6]{0}) all-reduce-done(%all-reduce-start)
  %rs-start = ((f32[64], f32[32]), (f32[8], f32[4])) async-start(%g, %h), calls=%wrapped
  %rs-done = (f32[8]{0}, f32[4]{0}) async-done(%rs-start)
  %fwd = bf16[2,4,8,16] custom-call(%q, %q, %q), custom_call_target="__cudnn$fmhaSoftmax"
  %bwd = bf16[2,8,4,16] custom-call(%q, %q, %q), custom_call_target="__cudnn$fmhaSoftmaxBackward"
  ROOT %out = f32[10]{0} get-tuple-element(%all-reduce-done), index=0
}
'''


def test_hlo_reads_gpu_async_collectives_and_cudnn_attention():
  """A combined all-gather-start holds its operands and results: the results count; a
  combined all-reduce-start holds only its results: all count; a reduce-scatter inside an
  async computation counts its operands. cuDNN attention: 4 B N L S D FLOPs forward, 2.5
  times that backward."""
  r = hlo.parse(GPU_HLO)
  assert r['collectives'] == {'all-gather': (128 + 64) * 2, 'all-reduce': (10 + 6) * 4,
                              'reduce-scatter': (64 + 32) * 4}, r['collectives']
  assert r['kernels'] == ['__cudnn$fmhaSoftmax', '__cudnn$fmhaSoftmaxBackward']
  assert r['flops'] == pytest.approx(4 * 2 * 4 * 8 * 8 * 16 * 3.5)


def _compile(name, topology, sets):
  return compile_lib.compile_step(config_lib.load(f'configs/{name}.py', TINY + sets), topology)


@needs_plugin
@pytest.mark.slow
def test_bert_tiny_on_two_gpus_gathers_and_scatters_over_nvlink():
  """FSDP over 2 H100s of one host, XLA's attention (no cuDNN needed): fits, weights
  all-gathered and gradients reduce-scattered, and the roofline's link is NVLink. (At this
  size activations outweigh the 1.6 M parameters: the 4x bound is for real models, see
  benchmarks/results/gpu_compile.md.)"""
  r = _compile('bert_tiny', 'h100:2', ['model.attention=xla', 'mesh.data=1', 'mesh.fsdp=-1'])
  assert r['platform'] == 'gpu' and r['chips'] == 2 and r['mesh']['fsdp'] == 2
  assert r['fits'] and 0 < r['bytes_per_chip'] < r['usable_bytes'] < r['hbm_bytes']
  assert r['collective_bytes']['all-gather'] > 0 and r['collective_bytes']['reduce-scatter'] > 0
  assert r['attention_kernels'] == [] and set(r['roofline_seconds']) == {'compute', 'hbm',
                                                                          'nvlink'}
  # No cost analysis on GPU: FLOPs from the HLO, at least the model's (remat adds some).
  assert r['model_flops_per_step'] <= r['flops_per_step'] < 3 * r['model_flops_per_step']
  assert 0 < r['roofline_mfu'] <= 1 and r['approximate']
  lines = compile_cli.report_lines(r)
  assert lines[1].startswith('memory per GPU: ') and 'NVLink' in lines[5]


@needs_plugin
@needs_cudnn
@pytest.mark.slow
def test_gpt_tiny_on_two_hosts_runs_cudnn_attention_forward_and_backward():
  """2 hosts of 2 GPUs: cuDNN's fused attention in the program both ways, and the roofline
  bounds the collectives by the network between hosts."""
  r = _compile('gpt_tiny', 'h100:2x2', ['mesh.data=1', 'mesh.fsdp=-1', 'model.dtype=bfloat16'])
  assert r['fits'] and r['attention'] == 'cudnn' and r['chips'] == 4
  kernels = set(r['attention_kernels'])
  assert any(k.startswith('__cudnn$fmha') and 'Backward' not in k for k in kernels), kernels
  assert any(k.endswith('Backward') for k in kernels), kernels
  assert 'network' in r['roofline_seconds']


@needs_plugin
@pytest.mark.slow
def test_a_step_too_large_for_the_gpu_is_one_line():
  """XLA for GPU compiles a program of any size; ssljax's verdict names what needs the
  memory and the settings that would lower it, in one line, and the command exits 2."""
  command = [sys.executable, '-m', 'ssljax.cli', 'compile', '--config', 'configs/bert_tiny.py',
             '--topology', 'h100:1', '--set', 'model.attention=xla', '--set', 'mesh.data=1',
             '--set', 'mesh.fsdp=-1', '--set', 'train.batch_size=65536']
  done = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert done.returncode == 2 and done.stdout == '', done.stderr
  err = done.stderr.strip()
  assert '\n' not in err, err
  assert re.search(r'^ssljax: error: bert on h100:1 needs [\d.]+G of 59.33G usable per GPU; '
                   r'largest allocations: [\d.]+\w+ \(', err), err
  assert err.endswith('or set model.remat=true'), err


@needs_plugin
@needs_cudnn
@pytest.mark.slow
def test_albert_accumulating_data_parallel_runs_cudnn_inside_its_shard_map():
  """ALBERT's recipe sums micro-batch gradients per data shard inside a shard_map; there
  jax's partitioner of the cuDNN call failed (an AssertionError, found compiling albert_base
  for h100:8), so the kernel runs per device: fused both ways (rows as lengths, no mask),
  one all-reduce."""
  r = _compile('albert_tiny', 'h100:2', ['train.grad_accum=2', 'mesh.data=2',
                                         'model.dtype=bfloat16'])
  assert r['fits'] and r['attention'] == 'cudnn' and r['mesh']['data'] == 2
  assert {'__cudnn$fmhaSoftmax', '__cudnn$fmhaSoftmaxBackward'} <= set(r['attention_kernels'])
  assert set(r['collective_bytes']) == {'all-reduce'}


@needs_plugin
@needs_cudnn
@pytest.mark.slow
@pytest.mark.parametrize('name, topology, sets, kernel', [
    ('bert_tiny', 'h100:1', ['model.attention_dropout_rate=0'], 'fmhaSoftmax'),
    ('gpt_tiny', 'h100:1', ['model.max_docs_per_row=4'], 'fmhaSoftmax'),
    ('gpt_tiny', 'h100:1', [], 'fmhaScaleBiasSoftmax'),
    ('gpt_tiny', 'a100:1', ['model.max_docs_per_row=4'], 'fmhaScaleBiasSoftmax'),
])
def test_cudnn_reads_documents_without_a_dense_mask_where_it_can(name, topology, sets, kernel):
  """An encoder's rows (one document) reach cuDNN as lengths, a GPT's packed rows capped by
  model.max_docs_per_row as cuDNN's packed layout (Hopper): no B x 1 x L x L bias, forward
  and backward. Uncapped rows, or an A100, keep the dense mask as a bias."""
  r = _compile(name, topology, ['mesh.data=1', 'model.dtype=bfloat16', *sets])
  assert r['fits'] and r['attention'] == 'cudnn'
  assert sorted(r['attention_kernels']) == [f'__cudnn${kernel}', f'__cudnn${kernel}Backward']


@needs_plugin
def test_cudnn_attention_without_cudnn_is_one_line(monkeypatch):
  """The plugin without its cuDNN (the gpu-compile extra half installed): one line naming the
  extra, found before anything is traced."""
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'nvidia.cudnn' else find_spec(name, *a))
  with pytest.raises(UserError, match=r'^gpt on h100:1: model.attention=cudnn needs cuDNN, '
                     r'from the gpu-compile extra: pip install .*\(or set model.attention=xla\)$'):
    _compile('gpt_tiny', 'h100:1', ['mesh.data=1', 'model.dtype=bfloat16'])
