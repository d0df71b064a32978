"""Model properties: masks do what they say, layer options compute the same function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssljax import models as model

B, L = 2, 12


def cfg(**kw):
  base = dict(arch='bert', vocab_size=50, hidden_size=32, num_layers=3, num_heads=4,
              mlp_dim=64, max_len=16, dropout_rate=0.0, attention_dropout_rate=0.0)
  return model.ModelConfig(**(base | kw))


def batch(seed=0, valid=9):
  ids = jax.random.randint(jax.random.key(seed), (B, L), 5, 50)
  doc = (jnp.arange(L) < valid).astype(jnp.int32)[None].repeat(B, 0)
  return dict(input_ids=ids, positions=jnp.arange(L)[None].repeat(B, 0),
              segment_ids=jnp.zeros((B, L), jnp.int32), doc_ids=doc)


def test_padding_does_not_change_real_tokens():
  m = model.build(cfg(), nnx.Rngs(0))
  b = batch()
  changed = dict(b, input_ids=b['input_ids'].at[:, 9:].set(7))
  np.testing.assert_allclose(m(b)[:, :9], m(changed)[:, :9], atol=1e-5)


def test_causal_decoder_ignores_the_future():
  m = model.build(cfg(arch='gpt'), nnx.Rngs(0))
  b = batch(valid=L)
  changed = dict(b, input_ids=b['input_ids'].at[:, 6:].set(7))
  np.testing.assert_allclose(m(b)[:, :6], m(changed)[:, :6], atol=1e-5)
  assert not np.allclose(m(b)[:, 6:], m(changed)[:, 6:], atol=1e-5)


def test_packed_documents_do_not_attend_across():
  m = model.build(cfg(arch='gpt'), nnx.Rngs(0))
  b = batch(valid=L)
  b['doc_ids'] = jnp.where(jnp.arange(L) < 5, 1, 2)[None].repeat(B, 0)
  b['positions'] = jnp.where(jnp.arange(L) < 5, jnp.arange(L), jnp.arange(L) - 5)[None]
  alone = dict(b, input_ids=b['input_ids'][:, 5:], doc_ids=b['doc_ids'][:, 5:],
               positions=b['positions'][:, 5:].repeat(B, 0))
  np.testing.assert_allclose(m(b)[:, 5:], m(alone), atol=1e-5)


def _stack_layers(params):
  layers = params['stack'].pop('layers')
  params['stack']['scanned'] = jax.tree.map(lambda *xs: jnp.stack(xs),
                                            *[layers[i] for i in sorted(layers)])
  return params


@pytest.mark.parametrize('remat', [False, True])
def test_scan_and_remat_compute_the_same_function(remat):
  loop = model.build(cfg(), nnx.Rngs(0))
  params = _stack_layers(nnx.to_pure_dict(nnx.state(loop)))
  graphdef = nnx.split(model.build(cfg(scan_layers=True, remat=remat), nnx.Rngs(1)))[0]
  scanned = nnx.merge(graphdef, params)
  np.testing.assert_allclose(loop(batch()), scanned(batch()), atol=1e-5)
  grad = lambda m: jax.grad(lambda p: nnx.merge(nnx.split(m)[0], p)(batch()).sum())(
      nnx.to_pure_dict(nnx.state(m)))
  np.testing.assert_allclose(_stack_layers(grad(loop))['stack']['scanned']['query']['kernel'],
                             grad(scanned)['stack']['scanned']['query']['kernel'], atol=1e-4)


def test_albert_shares_layers_and_factorises_embeddings():
  albert = model.build(cfg(arch='albert', share_layers=True, embed_size=8), nnx.Rngs(0))
  bert = model.build(cfg(), nnx.Rngs(0))
  count = lambda m: sum(x.size for x in jax.tree.leaves(nnx.split(m)[1]))
  block = sum(x.size for x in jax.tree.leaves(nnx.split(bert.stack.layers[0])[1]))
  assert albert.embeddings.word.embedding.shape == (50, 8)
  assert count(albert) < count(bert) - 2 * block
  assert albert(batch()).shape == (B, L, 32)


def test_bfloat16_compute_keeps_float32_params():
  m = model.build(cfg(dtype='bfloat16', pre_ln=True), nnx.Rngs(0))
  assert m(batch()).dtype == jnp.bfloat16
  assert {x.dtype for x in jax.tree.leaves(nnx.split(m)[1])} == {jnp.dtype('float32')}
  assert m.mlm_logits(m(batch())).dtype == jnp.float32


def test_dropout_is_keyed():
  m = model.build(cfg(dropout_rate=0.3, attention_dropout_rate=0.3), nnx.Rngs(0))
  a, b = m(batch(), key=jax.random.key(1)), m(batch(), key=jax.random.key(1))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, m(batch(), key=jax.random.key(2)))
  assert not np.allclose(a, m(batch()))


def test_parameters_carry_logical_axes():
  specs = nnx.get_partition_spec(nnx.split(model.build(cfg(scan_layers=True), nnx.Rngs(0)))[1])
  specs = nnx.to_pure_dict(specs)
  assert tuple(specs['stack']['scanned']['query']['kernel']) == ('layers', 'embed', 'heads')
  assert tuple(specs['stack']['scanned']['mlp_out']['kernel']) == ('layers', 'mlp', 'embed')
  assert tuple(specs['embeddings']['word']['embedding']) == ('vocab', 'embed')
