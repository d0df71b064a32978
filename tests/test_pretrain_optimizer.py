"""Schedules and the weight-decay mask."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ssljax.pretrain import optimizer


def opt_cfg(**kw):
  return ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=1.0, warmup_steps=10, decay='linear', end_learning_rate=0.0,
      warmup_fraction=0.0, weight_decay=0.1, b1=0.9, b2=0.999, eps=1e-6, clip_norm=1.0) | kw)


@pytest.mark.parametrize('decay,middle', [('linear', 0.5), ('cosine', 0.5), ('constant', 1.0)])
def test_warmup_then_decay(decay, middle):
  lr = optimizer.schedule(opt_cfg(decay=decay), total_steps=110)
  assert float(lr(0)) == 0.0
  np.testing.assert_allclose(float(lr(5)), 0.5, atol=1e-6)
  np.testing.assert_allclose(float(lr(10)), 1.0, atol=1e-6)
  np.testing.assert_allclose(float(lr(60)), middle, atol=1e-6)
  assert float(lr(110)) == pytest.approx(0.0 if decay != 'constant' else 1.0, abs=1e-6)


def test_no_weight_decay_on_layernorm_and_biases():
  params = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)},
            'norm': {'scale': jnp.ones((3, 2)), 'bias': jnp.ones((3, 2))},
            'word': {'embedding': jnp.ones((4, 2))}}
  assert optimizer.decay_mask(params) == {'dense': {'kernel': True, 'bias': False},
                                          'norm': {'scale': False, 'bias': False},
                                          'word': {'embedding': True}}
  tx = optimizer.build(opt_cfg(warmup_steps=0, decay='constant', learning_rate=0.1), 10)
  zero = {k: {n: jnp.zeros_like(v) for n, v in d.items()} for k, d in params.items()}
  updates, _ = tx.update(zero, tx.init(params), params)
  assert float(updates['dense']['kernel'][0, 0]) == pytest.approx(-0.01)
  assert float(updates['norm']['scale'][0, 0]) == 0.0


@pytest.mark.parametrize('name', ['adamw', 'lamb'])
def test_optimizers_descend(name):
  tx = optimizer.build(opt_cfg(name=name, warmup_steps=0, decay='constant',
                               learning_rate=0.05), 100)
  params = {'w': {'kernel': jnp.full((3, 3), 2.0)}}
  state = tx.init(params)
  loss = lambda p: jnp.sum(p['w']['kernel'] ** 2)
  for _ in range(20):
    grads = {'w': {'kernel': 2 * params['w']['kernel']}}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert loss(params) < 0.5 * 36
