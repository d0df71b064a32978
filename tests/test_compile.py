"""`ssljax compile`: real TPU programs through libtpu's compile-only devices, offline.

Each compile costs tens of seconds on CI's cores, so there are few of them.
"""

import os
import re

import numpy as np
import pytest

from ssljax import chips, config as config_lib
from ssljax.aot import compile as compile_lib
from ssljax.cli import compile as compile_cli
from ssljax.errors import UserError

pytestmark = pytest.mark.libtpu  # run last: jax's profiler crashes once libtpu is loaded


def test_topology_names():
  assert chips.topology('v5p-128')[1] == 'v5p:4x4x4'
  assert chips.topology('v5e-16')[1] == 'v5e:4x4'
  assert chips.topology('v4-8')[1] == 'v4:2x2x1'
  assert chips.topology('v6e:2x4')[1] == 'v6e:2x4'
  for bad in ('v9-8', 'v5e:2x2x2', 'v5p-3', 'h100'):
    with pytest.raises(UserError, match='topology'):
      chips.topology(bad)


def test_v4_devices_are_tensorcores_with_half_a_chip_each():
  """libtpu's compile-only v4 has a device per core (its HBM limit 15.25 GiB per device):
  memory and the roofline use half a chip's figures there, and a whole chip's on v5p."""
  chip, devices = compile_lib.topology_devices('v4-8')
  assert len(devices) == 8 and chip.hbm_bytes == 16 * chips.GiB
  assert chip.peak_flops == chips.CHIPS['v4'].peak_flops / 2
  chip, devices = compile_lib.topology_devices('v5p-8')
  assert len(devices) == 4 and chip == chips.CHIPS['v5p']


def test_bad_topology_is_one_line(capsys):
  from ssljax import cli
  assert cli.main(['compile', '--config', 'configs/bert_tiny.py', '--topology', 'v7x-8']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('ssljax: error: ') and '\n' not in err and 'v5p:4x4x4' in err


def _activation_all_reduces(r, config, rows):
  """All-reduced shapes as large as a chip's rows of B x L x H activations."""
  token_width = config.data.seq_len * config.model.hidden_size
  return [s for s in r['all_reduced_shapes']
          if np.prod(s) % token_width == 0 and np.prod(s) >= rows * token_width]


def _check_fsdp(r, config, kinds=True):
  """Fits; weights gathered, gradients reduce-scattered; no activation all-reduce (issue 20
  measured 11 GiB of them per step on v5p:2x2x2 before the row constraints), and at most 4x
  the bf16 bytes of all parameters moved per chip and step."""
  assert r['fits'] and r['bytes_per_chip'] < r['hbm_bytes']
  assert r['mesh']['fsdp'] == r['chips']
  rows = config.train.batch_size // config.train.grad_accum // r['chips']
  assert not _activation_all_reduces(r, config, rows)  # weight gradients (V x H) may be
  if kinds:  # on v5p the compiler writes both as all-reduces of shard-padded buffers
    assert r['collective_bytes']['all-gather'] > 0
    assert r['collective_bytes']['reduce-scatter'] > 0
  assert sum(r['collective_bytes'].values()) <= 4 * 2 * r['parameters'], r['collective_bytes']
  assert 0 < r['roofline_mfu'] <= 1.0
  assert r['run_hours_bound'] == pytest.approx(
      r['roofline_step_seconds'] * config.train.steps / 3600)
  assert f"train.steps={config.train.steps:,} at that bound" in compile_cli.report_lines(r)[-1]


@pytest.mark.slow
def test_bert_fsdp_on_v5e_fits_without_activation_all_reduce():
  """BERT-base width, 2 layers (the per-layer collectives are those of 12, scanned), fsdp=4,
  its paper's attention dropout: XLA's attention."""
  config = config_lib.load('configs/bert_base.py', ['model.num_layers=2'])
  r = compile_lib.compile_step(config, 'v5e:2x2')
  _check_fsdp(r, config)
  assert r['attention'] == 'xla' and r['attention_kernels'] == []
  assert r['random_bit_ops'] > 0  # threefry's integer rounds for its dropout


@pytest.mark.slow
def test_rbg_dropout_draws_its_bits_without_integer_rounds():
  """train.dropout_rng='rbg' (issue 20): TPU's RngBitGenerator instead of threefry's xors and
  shifts per attention element (bert_base on v5e:2x2 measured 1.0e11 -> 2.1e6 uint32
  element-ops per chip and step)."""
  sets = ['model.dropout_rate=0.1', 'model.attention_dropout_rate=0.1', 'train.batch_size=8']
  ops = {rng: compile_lib.compile_step(config_lib.load(
      'configs/bert_tiny.py', sets + [f'train.dropout_rng={rng}']), 'v5e:2x2')['random_bit_ops']
      for rng in ('threefry2x32', 'rbg')}
  assert ops['rbg'] * 100 < ops['threefry2x32'], ops


@pytest.mark.slow
def test_out_of_memory_names_the_largest_buffers_and_the_settings_left():
  """The compiler's own OOM verdict, as one line: what needs the memory and which settings
  would lower it; those already in effect (here mesh.fsdp=-1, model.remat) are not offered."""
  config = config_lib.load('configs/bert_tiny.py', [
      'train.batch_size=65536', 'mesh.data=1', 'mesh.fsdp=-1', 'model.remat=True'])
  r = compile_lib.compile_step(config, 'v5e:2x2')
  assert not r['fits'] and '\n' not in r['error'], r
  assert re.search(r'needs [\d.]+G of 15.75G HBM per chip; largest allocations: [\d.]+GiB \(',
                   r['error']), r['error']
  assert r['error'].endswith('raise train.grad_accum or lower train.batch_size')


@pytest.mark.slow
def test_gpt_small_fits_v5e_with_splash_and_fsdp():
  """gpt_small as configured (12 layers, batch 512 x 1024, vocabulary 32000) on 4 v5e
  chips: 7.2 of 16 GiB per chip, 3.0x the bf16 parameter bytes, splash in the program."""
  config = config_lib.load('configs/gpt_small.py', [])
  r = compile_lib.compile_step(config, 'v5e:2x2')
  _check_fsdp(r, config)
  assert r['attention'] == 'splash'
  assert {'splash_mha_fwd_segmented_residuals', 'splash_mha_dq_segmented_no_residuals',
          'splash_mha_dkv_segmented_no_residuals'} <= set(r['attention_kernels'])
  assert r['random_bit_ops'] == 0  # no dropout in the modern recipe: no integer RNG work


@pytest.mark.slow
def test_albert_base_fits_v5e_at_its_batch():
  """albert_base as configured: batch 4096 x 512 in 8 accumulated micro-batches, data=4:
  4.1 of 16 GiB per chip (issue 20 measured 31 with XLA attention and no accumulation).
  Each chip sums its gradients over the micro-batches and all-reduces them once: 2.0x the
  bf16 parameter bytes per step, where the compiler alone moved 63x (every micro-batch's,
  and the shared block's once per layer)."""
  config = config_lib.load('configs/albert_base.py', [])
  r = compile_lib.compile_step(config, 'v5e:2x2')
  assert r['fits'] and r['bytes_per_chip'] < r['hbm_bytes'] and r['mesh']['data'] == 4
  assert r['attention'] == 'splash'
  assert set(r['collective_bytes']) == {'all-reduce'}
  assert r['collective_bytes']['all-reduce'] <= 1.05 * 4 * r['parameters']  # float32, once


@pytest.mark.slow
def test_gpt_1b_fits_v5p_64_chips_fsdp():
  """configs/gpt_1b.py (1.28 B parameters, batch 512 x 2048) on v5p:4x4x4, fsdp=64: 3.5 of
  95 GiB per chip, 3.0x the bf16 parameter bytes per step."""
  config = config_lib.load('configs/gpt_1b.py', [])
  r = compile_lib.compile_step(config, 'v5p:4x4x4')
  assert r['parameters'] > 1.2e9
  _check_fsdp(r, config, kinds=False)


HLO = '''HloModule m

%cond (p: (u32[], f32[8])) -> pred[] {
  %p = (u32[], f32[8]) parameter(0)
  %i = u32[] get-tuple-element(%p), index=0
  %constant.1 = u32[] constant(16)
  ROOT %lt = pred[] compare(%i, %constant.1), direction=LT
}

%body (p: (u32[], f32[8])) -> (u32[], f32[8]) {
  %p = (u32[], f32[8]) parameter(0)
  %x = f32[8]{0} get-tuple-element(%p), index=1
  %collective-permute.1 = f32[8]{0} collective-permute(%x), channel_id=3
  %i = u32[] get-tuple-element(%p), index=0
  ROOT %t = (u32[], f32[8]) tuple(%i, %collective-permute.1)
}

%all-reduce-scatter.1 (input: bf16[64]) -> bf16[16] {
  %input = bf16[64]{0} parameter(0)
  %all-reduce.1 = bf16[64]{0} all-reduce(%input), channel_id=1, to_apply=%add
  ROOT %slice = bf16[16]{0} slice(%all-reduce.1), slice={[0:16]}
}

%fused.a (p1: bf16[256]) -> bf16[1024] {
  %p1 = bf16[256]{0} parameter(0)
  ROOT %ag.1 = bf16[1024]{0} all-gather(%p1), channel_id=9, frontend_attributes={chain_id="4"}
}

%fused.b (p2: bf16[256]) -> bf16[1024] {
  %p2 = bf16[256]{0} parameter(0)
  ROOT %ag.2 = bf16[1024]{0} all-gather(%p2), channel_id=9, frontend_attributes={chain_id="4"}
}

ENTRY %main (a: f32[8], b: bf16[64], c: bf16[256]) -> f32[8] {
  %a = f32[8]{0} parameter(0)
  %b = bf16[64]{0} parameter(1)
  %c = bf16[256]{0} parameter(2)
  %rs = bf16[16]{0} fusion(%b), kind=kCustom, calls=%all-reduce-scatter.1
  %g1 = bf16[1024]{0} fusion(%c), kind=kCustom, calls=%fused.a
  %g2 = bf16[1024]{0} fusion(%c), kind=kCustom, calls=%fused.b
  %zero = u32[] constant(0)
  %init = (u32[], f32[8]) tuple(%zero, %a)
  %w = (u32[], f32[8]) while(%init), condition=%cond, body=%body
  ROOT %out = f32[8]{0} get-tuple-element(%w), index=1
}
'''


def test_hlo_counts_chains_once_loops_as_they_run_and_tpu_reduce_scatters():
  """A TPU collective chained over fusions counts once; a windowed-matmul loop (uint32
  counter, bound 16) counts its body 16 times; an all-reduce fused with its slice is a
  reduce-scatter of its operand."""
  from ssljax.aot import hlo
  got = hlo.parse(HLO)['collectives']
  assert got == {'all-gather': 1024 * 2, 'collective-permute': 16 * 8 * 4,
                 'reduce-scatter': 64 * 2}, got


@pytest.mark.slow
def test_the_command_prints_its_report_and_nothing_else(tmp_path):
  """No libtpu discovery errors off a TPU VM, and no persistent-cache warning on a second
  compile of the same step (a compile-only executable cannot be read back)."""
  import subprocess
  import sys
  command = [sys.executable, '-m', 'ssljax.cli', 'compile', '--config', 'configs/bert_tiny.py',
             '--topology', 'v5e:2x2', '--set', 'train.batch_size=8']
  env = {**os.environ, 'JAX_COMPILATION_CACHE_DIR': str(tmp_path / 'xla')}
  for _ in range(2):
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0 and done.stderr == '', done.stderr
    assert done.stdout.splitlines()[-1].startswith('train.steps=1,000 at that bound: >= ')


def test_xla_failures_are_told_by_their_status_code():
  """The code is the message's first field (jaxlib has no other); words after it decide
  nothing."""
  assert compile_lib.status_code(RuntimeError('RESOURCE_EXHAUSTED: Ran out of memory')) == (
      'RESOURCE_EXHAUSTED')
  assert compile_lib.status_code(RuntimeError('INTERNAL: RESOURCE_EXHAUSTED later')) == 'INTERNAL'
  assert compile_lib.status_code(RuntimeError('Resource exhausted: no code')) == ''
