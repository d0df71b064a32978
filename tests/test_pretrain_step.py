"""ssljax.pretrain.step on a tiny BERT with two heads (MLM + NSP), no corpus and no loop.

The step's loss is the sum over heads of each head's mean, checked against cross-entropies
written out here from the model's logits, and its gradient against jax.grad of that sum;
gradient accumulation over micro-batches gives the update of one big batch.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ssljax import config as config_lib, models
from ssljax.pretrain import masking, step as step_lib
from ssljax.pretrain.state import TrainState

SEQ_LEN, BATCH, VOCAB = 16, 4, 40
CFG = models.ModelConfig(arch='bert', vocab_size=VOCAB, hidden_size=16, num_layers=2,
                         num_heads=2, mlp_dim=32, max_len=SEQ_LEN, dropout_rate=0.0,
                         attention_dropout_rate=0.0)


def _spec(graphdef, grad_accum=1) -> step_lib.StepSpec:
  mlm = config_lib.base().mlm
  return step_lib.StepSpec(graphdef=graphdef, tx=optax.sgd(1.0), objective='mlm_nsp', mlm=mlm,
                           vocab=step_lib.fixed_vocab_ids(VOCAB),
                           num_predictions=masking.num_predictions(SEQ_LEN, mlm.rate), seed=3,
                           grad_accum=grad_accum)


def _batch() -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  ids = rng.integers(5, VOCAB, (BATCH, SEQ_LEN)).astype(np.int32)
  ids[:, 0], ids[:, 7], ids[:, -1] = 2, 3, 3  # [CLS] a [SEP] b [SEP]
  doc_ids = np.ones_like(ids)
  doc_ids[1, 12:] = 0  # one row padded
  ids[1, 12:] = 0
  return {'input_ids': ids, 'positions': np.broadcast_to(np.arange(SEQ_LEN), ids.shape).copy(),
          'segment_ids': (np.arange(SEQ_LEN) > 7).astype(np.int32)[None].repeat(BATCH, 0),
          'doc_ids': doc_ids, 'word_start': np.ones_like(ids),
          'sentence_label': np.asarray([0, 1, 1, 0], np.int32)}


def _state():
  graphdef, state = nnx.split(models.build(CFG, nnx.Rngs(0)))
  params = nnx.to_pure_dict(state)
  return graphdef, TrainState.create(params, optax.sgd(1.0))


def _by_hand(graphdef, params, batch, inputs, masks):
  """mean MLM cross-entropy over the chosen positions + mean NSP cross-entropy."""
  model = nnx.merge(graphdef, params)
  hidden = model(inputs)
  at = jnp.take_along_axis(hidden, masks['positions'][..., None], axis=1)
  logp = jax.nn.log_softmax(model.mlm_logits(at).astype(jnp.float32))
  picked = jnp.take_along_axis(logp, masks['targets'][..., None], -1)[..., 0]
  mlm = -(picked * masks['weights']).sum() / masks['weights'].sum()
  logp2 = jax.nn.log_softmax(model.sentence_logits(hidden).astype(jnp.float32))
  nsp = -jnp.take_along_axis(logp2, batch['sentence_label'][:, None], -1).mean()
  return mlm + nsp, (mlm, nsp)


def test_the_loss_is_the_sum_of_each_heads_mean_and_its_gradient_is_the_sums():
  graphdef, state = _state()
  spec, batch = _spec(graphdef), _batch()
  new, metrics = jax.jit(functools.partial(step_lib.train_step, spec))(state, batch)
  mask_key = jax.random.split(jax.random.fold_in(jax.random.key(spec.seed), 0))[0]
  inputs, masks, _ = step_lib.prepare(spec, batch, mask_key)
  (total, (mlm, nsp)), grads = jax.value_and_grad(
      lambda p: _by_hand(graphdef, p, batch, inputs, masks), has_aux=True)(state.params)
  np.testing.assert_allclose(metrics['mlm_loss'], mlm, rtol=1e-5)
  np.testing.assert_allclose(metrics['nsp_loss'], nsp, rtol=1e-5)
  np.testing.assert_allclose(metrics['loss'], total, rtol=1e-5)
  moved = jax.tree.map(lambda a, b: a - b, state.params, new.params)  # sgd at rate 1: the grad
  for ours, theirs in zip(jax.tree.leaves(moved), jax.tree.leaves(grads)):
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_gradient_accumulation_equals_one_big_batch():
  graphdef, state = _state()
  step = lambda spec: jax.jit(functools.partial(step_lib.train_step, spec))(state, _batch())
  one, one_metrics = step(_spec(graphdef))
  for micro in (2, 4):
    accumulated, metrics = step(_spec(graphdef, grad_accum=micro))
    for key in ('loss', 'mlm_loss', 'nsp_loss', 'grad_norm'):
      np.testing.assert_allclose(metrics[key], one_metrics[key], rtol=1e-5, err_msg=key)
    for a, b in zip(jax.tree.leaves(accumulated.params), jax.tree.leaves(one.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dropout_rng_changes_dropout_bits_only():
  """train.dropout_rng='rbg' draws dropout from XLA's RngBitGenerator: the same step twice
  gives the same update, other bits than threefry's, and, without dropout, threefry's step
  exactly (masks keep their threefry key)."""
  def step(rate, rng):
    cfg = dataclasses.replace(CFG, dropout_rate=rate, attention_dropout_rate=rate)
    graphdef, state = nnx.split(models.build(cfg, nnx.Rngs(0)))
    state = TrainState.create(nnx.to_pure_dict(state), optax.sgd(1.0))
    spec = dataclasses.replace(_spec(graphdef), dropout_rng=rng)
    return jax.jit(functools.partial(step_lib.train_step, spec))(state, _batch())[1]['loss']

  rbg = step(0.1, 'rbg')
  assert rbg == step(0.1, 'rbg') and rbg != step(0.1, 'threefry2x32')
  assert step(0.0, 'rbg') == step(0.0, 'threefry2x32')
