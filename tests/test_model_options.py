"""The model options that make ssljax models exact twins of ModernBERT and Llama: the same
numbers with layers scanned as listed, an RMSNorm that is x / rms(x) * scale, and bad
combinations as one line. (Their parity with transformers: tests/test_interop_modern.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, traverse_util

from ssljax import config as config_lib, models
from ssljax.errors import UserError
from ssljax.models import layers

from conftest import tiny_config

MODERN = {
    'bert': {'model.pre_ln': True, 'model.positions': 'rope', 'model.activation': 'geglu',
             'model.first_attention_norm': False, 'model.tie_embeddings': False,
             'model.rope_base': 300.0},
    'gpt': {'model.arch': 'gpt', 'objective': 'clm', 'model.positions': 'rope',
            'model.norm': 'rms', 'model.activation': 'swiglu', 'model.use_bias': False,
            'model.tie_embeddings': False},
}


def _model(corpus_file, options, **extra):
  cfg = models.ModelConfig.from_config(tiny_config(corpus_file, **options).model,
                                       vocab_size=50, **extra)
  return models.build(cfg, nnx.Rngs(1))


def _batch():
  ids = np.random.default_rng(0).integers(0, 50, (2, 12)).astype(np.int32)
  real = np.ones_like(ids)
  real[1, 9:] = 0
  return {'input_ids': ids, 'doc_ids': real, 'segment_ids': np.zeros_like(ids),
          'positions': np.broadcast_to(np.arange(12, dtype=np.int32), ids.shape)}


def _unstacked(params, num_layers):
  flat = traverse_util.flatten_dict(params)
  out = {}
  for path, value in flat.items():
    if path[:2] == ('stack', 'scanned'):
      out |= {('stack', 'layers', i) + path[2:]: value[i] for i in range(num_layers)}
    else:
      out[path] = value
  return traverse_util.unflatten_dict(out)


@pytest.mark.parametrize('arch', list(MODERN))
def test_scanned_layers_give_the_listed_numbers(arch, corpus_file):
  """Block 0's skipped norm travels through the scan as a per-layer flag."""
  scanned = _model(corpus_file, MODERN[arch], scan_layers=True)
  listed = _model(corpus_file, MODERN[arch])
  nnx.update(listed, _unstacked(nnx.to_pure_dict(nnx.state(scanned)), 2))
  batch = _batch()
  head = (lambda m, x: m.lm_logits(x)) if arch == 'gpt' else (lambda m, x: m.mlm_logits(x))
  want, got = head(listed, listed(batch)), head(scanned, scanned(batch))
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert scanned.output is not None  # untied: logits read a table of their own
  assert not np.allclose(scanned.output.embedding[...], scanned.embeddings.word.embedding[...])


def test_first_attention_norm_changes_block_zero_only(corpus_file):
  """With it off, block 0 reads the embedding norm's output; its own norm is unused."""
  options = MODERN['bert'] | {'model.tie_embeddings': True}
  skipped = _model(corpus_file, options)
  normed = _model(corpus_file, options | {'model.first_attention_norm': True})
  for model in (skipped, normed):  # fresh norms (scale 1, bias 0) would leave LN(LN(x)) = LN(x)
    model.stack.layers[0].attention_norm.scale[...] = jnp.linspace(0.5, 2.0, 32)
  batch = _batch()
  assert not np.allclose(skipped(batch), normed(batch), atol=1e-4)
  x = skipped.embeddings(batch['input_ids'], batch['positions'], batch['segment_ids'], None)
  mask = layers.attention_mask(batch['doc_ids'], causal=False)
  block = skipped.stack.layers[0]
  by_hand = x + block.attention(x, mask, batch['positions'], None)
  by_hand = by_hand + block.mlp(block.mlp_norm(by_hand))
  np.testing.assert_allclose(block(x, mask, batch['positions'], None, first=True), by_hand,
                             atol=1e-6)


def test_rms_norm_is_x_over_rms_times_scale(corpus_file):
  cfg = models.ModelConfig.from_config(tiny_config(corpus_file, **MODERN['gpt']).model,
                                       vocab_size=50, layer_norm_eps=1e-6)
  with nnx.use_eager_sharding(False):
    norm = layers.Norm(8, cfg, rngs=nnx.Rngs(0))
  norm.scale[...] = jnp.arange(1.0, 9.0)
  x = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
  want = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * np.arange(1.0, 9.0)
  np.testing.assert_allclose(norm(x), want, rtol=1e-5)
  assert set(nnx.to_pure_dict(nnx.state(norm))) == {'scale'}  # no bias, no mean


def test_swiglu_gates_with_silu(corpus_file):
  cfg = models.ModelConfig.from_config(tiny_config(corpus_file, **MODERN['gpt']).model,
                                       vocab_size=50)
  x = np.random.default_rng(2).normal(size=(2, 6)).astype(np.float32)
  gate, value = x[:, :3], x[:, 3:]
  np.testing.assert_allclose(layers.mlp_activation(cfg)(x),
                             gate / (1 + np.exp(-gate)) * value, rtol=1e-5)


@pytest.mark.parametrize('overrides, message', [
    ({'model.first_attention_norm': False},
     r"model.first_attention_norm=False skips block 0's pre-norm .* set model.pre_ln=True"),
    ({'model.type_vocab_size': 0},
     'objective=mlm_nsp reads sentence pairs as two segments; model.type_vocab_size=0'),
    ({'model.norm': 'batch'}, 'model.norm'),
])
def test_bad_combinations_are_one_line(overrides, message, corpus_file):
  with pytest.raises(UserError, match=message):
    config_lib.validate(tiny_config(corpus_file, **overrides))


def test_no_segment_embedding_with_type_vocab_size_0(corpus_file):
  model = _model(corpus_file, {'objective': 'mlm', 'model.type_vocab_size': 0})
  assert model.embeddings.segment is None
  assert jax.numpy.isfinite(model(_batch())).all()
