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


@pytest.mark.parametrize('arch,objective', [('bert', 'mlm'), ('bert', 'mlm_nsp'),
                                            ('albert', 'mlm_sop'), ('gpt', 'clm')])
def test_flops_per_token_matches_a_hand_count(arch, objective):
  """6 x the weights a token meets (4 h^2 attention + 2 h f MLP per block, the MLM transform
  h^2 and the tied decoder V e on the masked fraction, or the LM head V h), the embedding
  projection e h when e < h, the pooler and sentence head h^2 + 2 h once per sequence, plus
  attention's 12 L S h: written out from the config, not read from the parameters."""
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from ssljax import models  # pylint: disable=g-import-not-at-top
  h, layers, f, v, seq, fraction = 16, 3, 40, 50, 32, 0.15
  e = 8 if arch == 'albert' else 0
  cfg = models.ModelConfig(arch=arch, vocab_size=v, hidden_size=h, num_layers=layers,
                           num_heads=2, mlp_dim=f, max_len=seq, embed_size=e,
                           share_layers=arch == 'albert')
  params = nnx.to_pure_dict(nnx.state(models.build(cfg, nnx.Rngs(0))))
  e = e or h
  per_token = layers * (4 * h * h + 2 * h * f) + (e * h if e != h else 0)
  if objective == 'clm':
    per_token += v * h
  else:
    per_token += (h * e + v * e) * fraction  # the transform maps h to the embedding width
  if objective != 'mlm' and objective != 'clm':
    per_token += (h * h + h * 2) / seq
  expected = 6 * per_token + 12 * layers * seq * h
  got = metrics.flops_per_token(params, cfg, objective, seq, fraction)
  assert got == pytest.approx(expected, rel=1e-12), (got, expected)


@pytest.mark.parametrize('arch,objective', [('patch_encoder', 'masked_patch'),
                                            ('patch_encoder', 'contrastive'),
                                            ('patch_autoencoder', 'denoise')])
def test_patch_flops_per_token_matches_a_hand_count(arch, objective):
  """6 x the weights a patch meets (the blocks, the patch head h D), 4 x the embedding's D h
  (no gradient into the data), once per window the bottleneck (2 h K) or the projection
  (h^2 + h P); the auto-encoder's second stack; contrastive's two views and 2B
  similarities of width P per view, forward and backward: written out from the config."""
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from ssljax import models  # pylint: disable=g-import-not-at-top
  h, layers, f, seq, d, k, p, batch = 16, 2, 40, 8, 6, 4, 12, 10
  cfg = models.ModelConfig(arch=arch, vocab_size=0, hidden_size=h, num_layers=layers,
                           num_heads=2, mlp_dim=f, max_len=seq, patch_len=3, channels=2,
                           bottleneck=k, projection=p if objective == 'contrastive' else 0)
  params = nnx.to_pure_dict(nnx.state(models.build(cfg, nnx.Rngs(0))))
  stacks = 2 if arch == 'patch_autoencoder' else 1
  blocks = stacks * layers * (4 * h * h + 2 * h * f)
  if objective == 'contrastive':
    per_view = 4 * d * h + 6 * (blocks + (h * h + h * p) / seq) + 12 * layers * seq * h
    expected = 2 * per_view + 24 * batch * p / seq
  else:
    bottleneck = 2 * h * k if arch == 'patch_autoencoder' else 0
    expected = (4 * d * h + 6 * (blocks + h * d + bottleneck / seq)
                + 12 * stacks * layers * seq * h)
  got = metrics.patch_flops_per_token(params, cfg, objective, seq, batch)
  assert got == pytest.approx(expected, rel=1e-12), (got, expected)
