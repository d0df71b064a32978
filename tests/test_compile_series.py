"""`ssljax compile` for the patch models of series and images: each objective's step on
compile-only TPU and GPU devices, lowered on the batch the series data path gives.

A patch model's step compiles in seconds (hidden 64, 2 layers); the configs are the
shipped recipes, their channels read from scikit-learn's digits or set (model.channels=1)
where the data would come from aeon.
"""

import importlib.util

import numpy as np
import pytest

from ssljax import cli, config as config_lib
from ssljax.aot import compile as compile_lib
from ssljax.cli import compile as compile_cli
from ssljax.data import series
from ssljax.pretrain import parallel

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec('libtpu') is None,
                                  reason='libtpu (the tpu extra) is not installed')
needs_plugin = pytest.mark.skipif(importlib.util.find_spec('jax_cuda12_plugin') is None,
                                  reason='the CUDA plugin (the gpu-compile extra) is not '
                                  'installed')
# Each series objective, from the recipe that trains it (docs/beyond_text.md).
DIGITS = 'configs/mae_digits.py'
OBJECTIVES = {
    'masked_patch': (DIGITS, []),
    'contrastive': (DIGITS, ['objective=contrastive', 'model.projection=32']),
    'denoise': (DIGITS, ['objective=denoise', 'model.arch=patch_autoencoder']),
    'next_patch': ('configs/patch_decoder_bleeding.py', ['model.channels=1']),
}


def _config(objective, extra=()):
  path, sets = OBJECTIVES[objective]
  return config_lib.load(path, [*sets, *extra])


def _check(r, config, chips):
  """Fits, and the batch's rows split over a mesh of every chip."""
  assert r['fits'] and 0 < r['bytes_per_chip'] < r['usable_bytes'], r
  assert r['chips'] == chips and int(np.prod(list(r['mesh'].values()))) == chips
  assert config.train.batch_size % (r['mesh']['data'] * r['mesh']['fsdp']) == 0
  assert 0 < r['roofline_mfu'] <= 1
  assert compile_cli.report_lines(r)[1].startswith('memory per ')


def test_the_abstract_batch_is_the_data_path_batch():
  """Field for field, the shapes and dtypes `ssljax compile` lowers on are those of the
  batches pretraining reads: digits as 16 patches of 2 x 2 pixels, 2 values a step."""
  pytest.importorskip('sklearn')
  config = compile_lib.with_data_channels(_config('masked_patch'))
  train, _ = series.examples(config.data, config.model.patch_len, config.train.seed)
  rows = config.train.batch_size
  real = train.batch(np.arange(rows))
  mesh = parallel.make_mesh(config.mesh)
  abstract = parallel.abstract_batch(config, parallel.batch_sharding(mesh))
  assert {k: (v.shape, v.dtype) for k, v in abstract.items()} == {
      k: (v.shape, v.dtype) for k, v in real.items()}
  assert real['values'].shape == (rows, 16 * 2, 2) and config.model.channels == 2


def test_unreadable_series_data_is_one_line(capsys):
  """The channels come from the data unless model.channels says them: a missing file is
  one line that names the setting that skips reading it."""
  args = ['compile', '--config', DIGITS, '--topology', 'v5e:2x2', '--set',
          'data.path=/nonexistent/digits.npz']
  assert cli.main(args) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('ssljax: error: ') and '\n' not in err, err
  assert 'model.channels' in err


@pytest.mark.libtpu
@pytest.mark.slow
@needs_libtpu
@pytest.mark.parametrize('objective', list(OBJECTIVES))
def test_each_patch_objective_compiles_for_a_tpu_slice(objective):
  """Data parallel over v5e:2x2; the cost analysis counts the model's matmuls and the
  normalisations' and losses' elementwise work (measured 1.15 to 1.21 x the model's)."""
  if objective != 'next_patch':
    pytest.importorskip('sklearn')
  config = _config(objective)
  r = compile_lib.compile_step(config, 'v5e:2x2')
  _check(r, config, 4)
  assert r['platform'] == 'tpu' and r['mesh']['data'] == 4
  assert r['model_flops_per_step'] <= r['flops_per_step'] < 1.5 * r['model_flops_per_step']


@needs_plugin
@pytest.mark.slow
@pytest.mark.parametrize('objective, sets', [
    ('masked_patch', []), ('contrastive', []), ('denoise', []),
    # In float32 XLA finds no GEMM tiles for the causal norm's fusion without autotuning.
    ('next_patch', ['model.dtype=bfloat16'])])
def test_patch_models_compile_for_two_gpus(objective, sets):
  """FSDP over 2 H100s: parameters gathered over NVLink. In float32 the program's matmuls
  are exactly the model FLOPs that pretrain's MFU counts (no remat, no cuDNN)."""
  if objective != 'next_patch':
    pytest.importorskip('sklearn')
  config = _config(objective, ['mesh.data=1', 'mesh.fsdp=-1', *sets])
  r = compile_lib.compile_step(config, 'h100:2')
  _check(r, config, 2)
  assert r['platform'] == 'gpu' and r['mesh']['fsdp'] == 2
  assert r['collective_bytes']['all-gather'] > 0 and 'nvlink' in r['roofline_seconds']
  if config.model.dtype == 'float32':
    assert r['flops_per_step'] == pytest.approx(r['model_flops_per_step'], rel=1e-9)
