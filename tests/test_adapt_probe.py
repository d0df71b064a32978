"""ssljax.adapt.probe: ridge and linear probes, feature extraction and its cache, the
validation split, each against an independent reference."""

import numpy as np
import pytest
from flax import nnx
from sklearn import linear_model

from ssljax import models as model_lib
from ssljax.adapt import probe
from ssljax.errors import UserError
from ssljax.tasks import task_rows
from ssljax.tasks.readers import Example

import adapt_helpers
from adapt_helpers import SPECS, SQUAD, SST2, _features, _script_pearson, _settings, _task, _text

tok, bert = adapt_helpers.tok, adapt_helpers.bert  # fixtures


@pytest.mark.parametrize('lam', [1e-3, 0.7, 50.0])
def test_ridge_fit_matches_sklearn(lam):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(60, 7)) + 2, rng.normal(size=(60, 3))
  kernel, bias = probe.ridge_fit(x, y, lam)
  reference = linear_model.Ridge(alpha=lam, fit_intercept=True).fit(x, y)
  np.testing.assert_allclose(kernel, reference.coef_.T, rtol=1e-6)
  np.testing.assert_allclose(bias, reference.intercept_, rtol=1e-6)


@pytest.mark.parametrize('method', ['ridge', 'linear'])
@pytest.mark.parametrize('kind', ['classification', 'regression'])
def test_probes_fit_a_linear_task(method, kind):
  spec, cfg = SPECS[kind], _settings(lr=5e-2, epochs=12, batch_size=32, val_fraction=0.2)
  result = getattr(probe, method)(_features(kind, 300, 1), {'test': _features(kind, 200, 2)},
                                  spec, cfg, 0)
  main = spec.metrics[0]
  assert result['evals']['test']['metrics'][main] >= (0.99 if method == 'ridge' else 0.95)
  assert result['val'][main] == max(c[f'val_{main}'] for c in result['curve'])
  assert len(result['curve']) == (len(probe.RIDGE_GRID) if method == 'ridge' else 12)


def test_the_best_validation_epoch_is_kept(monkeypatch):
  script = [0.2, 0.9, 0.5]
  seen = _script_pearson(monkeypatch, script)
  spec, cfg = SPECS['regression'], _settings(epochs=3, lr=1e-2)
  train = _features('regression', 64, 1)
  val = train.take(probe.carve(64, cfg.val_fraction, 0)[1])
  result = probe.linear(train, {'val': val}, spec, cfg, 0)
  assert result['val']['pearson'] == 0.9
  best = len(script) - 2
  assert seen[-1] == seen[best] != seen[best + 1]  # the evals used the best epoch's weights


def _reference_pool(bert, rows, pooling):
  hidden = np.asarray(bert({k: rows.arrays[k] for k in task_rows.INPUTS}))
  real = rows.arrays['doc_ids'] > 0
  if pooling == 'mean':
    return (hidden * real[..., None]).sum(1) / real.sum(1, keepdims=True)
  if pooling == 'first':
    return hidden[:, 0]
  if pooling == 'last':
    return hidden[np.arange(len(hidden)), real.sum(1) - 1]
  return np.tanh(hidden[:, 0] @ np.asarray(bert.pooler.kernel[...]) +
                 np.asarray(bert.pooler.bias[...]))


@pytest.mark.parametrize('pooling', ['mean', 'last', 'cls', 'first'])
def test_extract_equals_a_direct_forward(bert, tok, pooling):
  examples = [Example(text=_text(n, n), label=0) for n in (1, 4, 9, 2, 30, 6)]
  features = probe.extract(bert, tok, SST2, examples, _settings(pooling=pooling,
                                                                batch_size=4))
  assert features.x.shape == (6, 32)
  np.testing.assert_allclose(features.x, _reference_pool(bert, features.rows, pooling),
                             atol=1e-5)


def test_extract_reads_its_cache(bert, tok, tmp_path, monkeypatch):
  examples = [Example(text=_text(n), label=n % 2) for n in (2, 5, 7)]
  first = probe.extract(bert, tok, SST2, examples, _settings(), tmp_path, 'k')
  assert len(list(tmp_path.glob('k_sst2_mean_*.npz'))) == 1

  def forward(*args):
    raise AssertionError('the cached features were recomputed')

  monkeypatch.setattr(probe.encoding, 'features_of', forward)
  again = probe.extract(bert, tok, SST2, examples, _settings(), tmp_path, 'k')
  np.testing.assert_array_equal(again.x, first.x)
  with pytest.raises(AssertionError, match='recomputed'):  # another key misses the cache
    probe.extract(bert, tok, SST2, examples, _settings(), tmp_path, 'other')


def test_extract_tokens_gives_one_row_per_word(bert, tok):
  sentences = [['the', 'python', 'value'], ['antidisestablishmentarianism', 'is', 'a', 'name']]
  examples = [Example(words=w, tags=[int(x == 'python') for x in w]) for w in sentences]
  features = probe.extract(bert, tok, SPECS['tokens'], examples, _settings(batch_size=1))
  assert features.x.shape == (7, 32)
  hidden = np.asarray(bert({k: features.rows.arrays[k] for k in task_rows.INPUTS}))
  np.testing.assert_allclose(features.x, hidden[features.rows.words[:, 0],
                                                features.rows.words[:, 1]], atol=1e-5)
  np.testing.assert_array_equal(features.targets(), [0, 1, 0, 0, 0, 0, 0])
  later = features.take(np.array([1]))
  np.testing.assert_array_equal(later.x, features.x[3:])
  np.testing.assert_array_equal(later.rows.words[:, 0], 0)


@pytest.mark.parametrize('num, fraction', [(2, 0.1), (10, 0.1), (10, 0.99), (101, 0.25)])
def test_carve_is_a_deterministic_partition(num, fraction):
  fit, val = probe.carve(num, fraction, seed=4)
  assert len(val) == min(max(round(num * fraction), 1), num - 1)
  np.testing.assert_array_equal(np.sort(np.concatenate([fit, val])), np.arange(num))
  again = probe.carve(num, fraction, seed=4)
  np.testing.assert_array_equal(again[1], val)
  if num > 100:
    assert not np.array_equal(probe.carve(num, fraction, seed=5)[1], val)


@pytest.mark.parametrize('call, message', [
    (lambda m, t: probe.extract(m, t, SQUAD, _task('span', 2, 0), _settings()), 'fine-tune'),
    (lambda m, t: probe.extract(m, t, SST2, _task('classification', 2, 0),
                                _settings(pooling='max')), 'pooling'),
    (lambda m, t: probe.linear(_features('classification', 8, 0), {}, SPECS['classification'],
                               _settings(epochs=0), 0), 'epoch'),
    (lambda m, t: probe.ridge(_features('classification', 1, 0), {}, SPECS['classification'],
                              _settings(), 0), '2 or more'),
])
def test_user_errors(bert, tok, call, message):
  with pytest.raises(UserError, match=message):
    call(bert, tok)


def test_layers_names_the_blocks_a_probe_fits():
  assert probe.layers('best', 3) == [1, 2, 3]
  assert probe.layers('last', 3) == probe.layers('0', 3) == probe.layers(0, 3) == [3]
  assert probe.layers('2', 3) == [2]
  for bad in ('4', 'top', '-1'):
    with pytest.raises(UserError, match=f'probe.layer={bad}: use best, last or a block number '
                                        'from 1 to 3'):
      probe.layers(bad, 3)


def test_model_digest_tells_weights_apart(bert):
  other = model_lib.build(bert.cfg, nnx.Rngs(11))
  assert probe.model_digest(bert) == probe.model_digest(bert) != probe.model_digest(other)
