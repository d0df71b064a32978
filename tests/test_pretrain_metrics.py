"""ssljax.pretrain.metrics: the peak FLOP/s is measured once per machine, then read back."""

import json

import jax
import pytest

from ssljax.pretrain import metrics


@pytest.fixture
def measured(tmp_path, monkeypatch):
  """Counts calls of `measure_peak_flops` (each returns 1e12 more) with the cache in tmp."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  calls = []

  def measure():
    calls.append(1)
    return 1e12 * len(calls)

  monkeypatch.setattr(metrics, 'measure_peak_flops', measure)
  return calls


def test_measured_once_then_read_from_the_cache(measured, tmp_path):
  assert metrics.cache_dir() == tmp_path / 'ssljax'
  assert metrics.peak_flops() == 1e12
  assert metrics.peak_flops() == 1e12
  assert len(measured) == 1
  known = json.loads((tmp_path / 'ssljax' / 'peak_flops.json').read_text())
  assert list(known.values()) == [1e12]
  (key,) = known
  device = jax.devices()[0]
  assert key.startswith(f'{device.platform}:{device.device_kind}:')
  assert key.endswith(f'jax{jax.__version__}')


def test_other_machines_are_kept_and_a_corrupt_cache_is_measured_again(measured, tmp_path):
  path = tmp_path / 'ssljax' / 'peak_flops.json'
  path.parent.mkdir()
  path.write_text(json.dumps({'tpu:TPU v4:8:jax0.0': 2.75e14}))
  assert metrics.peak_flops() == 1e12
  assert json.loads(path.read_text())['tpu:TPU v4:8:jax0.0'] == 2.75e14
  path.write_text('{not json')
  assert metrics.peak_flops() == 2e12
  assert len(measured) == 2 and len(json.loads(path.read_text())) == 1
