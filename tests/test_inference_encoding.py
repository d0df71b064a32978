"""ssljax.inference.encoding: each pooling by hand on a tiny encoder's hidden states, and a
lower layer's features against the blocks applied by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssljax import models
from ssljax.errors import UserError
from ssljax.inference import encoding
from ssljax.models.layers import attention_mask

B, L, H = 3, 7, 16
REAL = (7, 4, 1)  # real tokens per row; the rest is padding


def _model(arch='bert', **overrides):
  cfg = models.ModelConfig(**dict(
      arch=arch, vocab_size=40, hidden_size=H, num_layers=1, num_heads=2, mlp_dim=32,
      max_len=L, dropout_rate=0.0, attention_dropout_rate=0.0) | overrides)
  return models.build(cfg, nnx.Rngs(0))


@pytest.fixture(scope='module')
def encoded():
  """(model, hidden states, doc ids) of one padded batch."""
  model = _model()
  doc_ids = (np.arange(L)[None] < np.array(REAL)[:, None]).astype(np.int32)
  ids = np.asarray(jax.random.randint(jax.random.key(1), (B, L), 5, 40)) * doc_ids
  batch = dict(input_ids=ids, positions=np.broadcast_to(np.arange(L), (B, L)),
               segment_ids=np.zeros((B, L), np.int32), doc_ids=doc_ids)
  return model, np.asarray(model(batch)), doc_ids


def test_first_is_the_first_state_and_cls_goes_through_the_pooler(encoded):
  model, hidden, doc_ids = encoded
  first = np.asarray(encoding.pool(model, hidden, doc_ids, 'first'))
  cls = np.asarray(encoding.pool(model, hidden, doc_ids, 'cls'))
  np.testing.assert_array_equal(first, hidden[:, 0])
  kernel, bias = np.asarray(model.pooler.kernel[...]), np.asarray(model.pooler.bias[...])
  np.testing.assert_allclose(cls, np.tanh(hidden[:, 0] @ kernel + bias), atol=1e-6)
  assert np.abs(cls).max() < 1 and not np.allclose(cls, first, atol=1e-3)


def test_mean_and_last_ignore_padding(encoded):
  model, hidden, doc_ids = encoded
  mean = np.asarray(encoding.pool(model, hidden, doc_ids, 'mean'))
  last = np.asarray(encoding.pool(model, hidden, doc_ids, 'last'))
  for row, n in enumerate(REAL):
    np.testing.assert_allclose(mean[row], hidden[row, :n].mean(0), atol=1e-6)
    np.testing.assert_array_equal(last[row], hidden[row, n - 1])
  assert set(encoding.POOLINGS) == {'cls', 'first', 'mean', 'last'}


def test_pool_runs_under_jit(encoded):
  model, hidden, doc_ids = encoded
  for pooling in encoding.POOLINGS:
    jitted = jax.jit(lambda h, d, p=pooling: encoding.pool(model, h, d, p))
    np.testing.assert_allclose(jitted(jnp.asarray(hidden), jnp.asarray(doc_ids)),
                               encoding.pool(model, hidden, doc_ids, pooling), atol=1e-6)


@pytest.mark.parametrize('arch, pooling, message', [
    ('bert', 'max', 'not one of cls, first, mean, last'),
    ('gpt', 'cls', 'pooling=last or pooling=mean'),
    ('gpt', 'first', 'pooling=last or pooling=mean'),
])
def test_check_pooling(arch, pooling, message):
  with pytest.raises(UserError, match=message):
    encoding.check_pooling(_model(arch), pooling)
  encoding.check_pooling(_model(arch), 'mean')  # always fine


@pytest.mark.parametrize('arch, layout', [('bert', {}), ('bert', {'scan_layers': True}),
                                          ('albert', {'share_layers': True}), ('gpt', {}),
                                          ('bert', {'pre_ln': True})])
def test_truncate_keeps_the_first_blocks(encoded, arch, layout):
  _, _, doc_ids = encoded
  model = _model(arch, num_layers=3, **layout)
  batch = dict(input_ids=np.where(doc_ids > 0, 7, 0),
               positions=np.broadcast_to(np.arange(L), (B, L)),
               segment_ids=np.zeros((B, L), np.int32), doc_ids=doc_ids)
  mask = attention_mask(batch['doc_ids'], causal=arch == 'gpt')
  x = model.embeddings(batch['input_ids'], batch['positions'],
                       None if arch == 'gpt' else batch['segment_ids'], None)
  for i in range(2):  # blocks 1 and 2 by hand
    if layout.get('share_layers'):
      block = model.stack.shared
    elif layout.get('scan_layers'):  # one slice of the stacked parameters
      graphdef, stacked = nnx.split(model.stack.scanned)
      block = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], stacked))
    else:
      block = model.stack.layers[i]
    x = block(x, mask, batch['positions'])
  if model.final_norm is not None:
    x = model.final_norm(x)
  short = encoding.truncate(model, 2)
  assert short.cfg.num_layers == 2 and model.cfg.num_layers == 3
  np.testing.assert_allclose(np.asarray(short(batch)), np.asarray(x), atol=1e-5)
  assert encoding.truncate(model, 0) is model and encoding.truncate(model, 3) is model
  for layer in (4, -1):
    with pytest.raises(UserError, match=f'layer={layer}: the model has blocks 1 to 3'):
      encoding.truncate(model, layer)
