"""The attention kernels against XLA's path: splash in Pallas interpret mode on CPU, forward
and backward, with documents packed and padded, alone and inside shard_map over a mesh.

Tolerances: float32 inputs; splash's online softmax sums in another order, so outputs and
gradients agree to 2e-5 (measured: 5e-7 forward, 7e-6 backward)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.errors import UserError
from ssljax.models import attention

B, L, N, D = 2, 256, 2, 32
TOL = 2e-5


@pytest.fixture(autouse=True)
def two_tiles(monkeypatch):
  """128-token tiles: 2 x 2 blocks per head, so causal block skipping is exercised too."""
  monkeypatch.setattr(attention, 'SPLASH_BLOCK', 128)


def _inputs(rows=B):
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(rows, L, N, D)), jnp.float32) for _ in range(3))
  doc_ids = np.zeros((rows, L), np.int32)
  doc_ids[0, :100], doc_ids[0, 100:230] = 1, 2  # two packed documents, then padding
  doc_ids[1:, :] = 3  # one document filling the row
  doc_ids[1:, 200:] = 0  # ... but for padding at the end of the odd rows
  return q, k, v, jnp.asarray(doc_ids)


def _loss(kernel, mask, real_BxLx1x1, **kw):
  """A loss over real tokens only: padding queries see padding in splash and nothing in XLA's
  path, and no objective reads them."""
  def loss(q, k, v):
    out = attention.attend(q, k, v, mask, kernel, **kw)
    return jnp.sum(jnp.where(real_BxLx1x1, out, 0.0) ** 2), out
  return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)


@pytest.mark.parametrize('causal', [False, True])
def test_splash_equals_xla_forward_and_backward(causal):
  q, k, v, doc_ids = _inputs()
  mask = attention.DocMask(doc_ids, causal)
  real = (doc_ids > 0)[:, :, None, None]
  (_, want), want_grads = _loss('xla', mask, real)(q, k, v)
  (_, got), got_grads = _loss('splash', mask, real, interpret=True)(q, k, v)
  np.testing.assert_allclose(np.where(real, got, 0), np.where(real, want, 0), atol=TOL)
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, atol=TOL)
  assert float(jnp.abs(want_grads[1]).sum()) > 0  # keys get gradients: the test can fail


def test_splash_inside_shard_map_on_a_mesh():
  """Rows over data x fsdp and heads over tensor (8 CPU devices), as in the train step."""
  devices = np.asarray(jax.devices()[:8]).reshape(2, 2, 2)
  mesh = jax.sharding.Mesh(devices, ('data', 'fsdp', 'tensor'),
                           axis_types=(jax.sharding.AxisType.Auto,) * 3)
  q, k, v, doc_ids = _inputs(rows=4)
  mask = attention.DocMask(doc_ids, causal=True)
  real = (doc_ids > 0)[:, :, None, None]
  with jax.set_mesh(mesh):
    (_, got), got_grads = jax.jit(_loss('splash', mask, real, interpret=True))(q, k, v)
  (_, want), want_grads = _loss('xla', mask, real)(q, k, v)
  np.testing.assert_allclose(np.where(real, got, 0), np.where(real, want, 0), atol=TOL)
  np.testing.assert_allclose(got_grads[0], want_grads[0], atol=TOL)


def test_dense_mask_is_the_document_mask():
  doc_ids = jnp.asarray([[1, 1, 2, 0]])
  full = np.asarray(attention.DocMask(doc_ids, causal=False).dense())[0, 0]
  causal = np.asarray(attention.DocMask(doc_ids, causal=True).dense())[0, 0]
  np.testing.assert_array_equal(full, [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(causal, np.tril(full))


@pytest.mark.parametrize('setting, platform, dropout, length, want', [
    ('auto', 'cpu', False, 128, 'xla'),
    ('auto', 'tpu', False, 1024, 'splash'),
    ('auto', 'tpu', True, 1024, 'xla'),  # splash has no dropout
    ('auto', 'tpu', False, 100, 'xla'),  # not whole 128-token tiles
    ('auto', 'gpu', False, 100, 'cudnn'),
    ('xla', 'tpu', False, 1024, 'xla'),
    ('splash', 'tpu', False, 512, 'splash'),
])
def test_resolve(setting, platform, dropout, length, want):
  assert attention.resolve(setting, platform, dropout=dropout, length=length) == want


@pytest.mark.parametrize('setting, platform, dropout, length, message', [
    ('splash', 'cpu', False, 128, 'runs on TPU, not on cpu'),
    ('cudnn', 'tpu', False, 128, 'runs on GPU'),
    ('splash', 'tpu', True, 128, 'attention_dropout_rate=0'),
    ('splash', 'tpu', False, 100, 'multiple of 128'),
    ('flash', 'tpu', False, 128, 'choose one of auto, xla'),
])
def test_resolve_refuses_in_one_line(setting, platform, dropout, length, message):
  with pytest.raises(UserError, match=message):
    attention.resolve(setting, platform, dropout=dropout, length=length)


def test_cudnn_needs_a_16_bit_compute_dtype():
  """cuDNN's fused attention has no float32 kernel (jax refuses it while tracing, found by
  `ssljax compile --topology h100:8` of gpt_tiny): auto falls back to XLA's attention."""
  assert attention.resolve('auto', 'gpu', dropout=False, dtype='float32') == 'xla'
  assert attention.resolve('auto', 'gpu', dropout=False, dtype='bfloat16') == 'cudnn'
  assert attention.resolve('auto', 'tpu', dropout=False, dtype='float32') == 'splash'
  with pytest.raises(UserError, match='model.dtype=bfloat16'):
    attention.resolve('cudnn', 'gpu', dropout=False, dtype='float32')


def _per_document(q, k, v, lengths_BxM, starts_BxM1, causal):
  """Attention as cuDNN's packed layout defines it: each (start, length) a sequence of its
  own, positions outside every document left 0. numpy, one document at a time."""
  out = np.zeros(q.shape, np.float64)
  for row, (lengths, starts) in enumerate(zip(lengths_BxM, starts_BxM1)):
    for length, start in zip(lengths, starts):
      if length < 0:
        continue
      doc = slice(start, start + length)
      scores_NxTxT = np.einsum('tnd,snd->nts', q[row, doc], k[row, doc]) / np.sqrt(q.shape[-1])
      if causal:
        scores_NxTxT = np.where(np.tril(np.ones((length, length), bool)), scores_NxTxT, -np.inf)
      weights = np.exp(scores_NxTxT - scores_NxTxT.max(-1, keepdims=True))
      weights /= weights.sum(-1, keepdims=True)
      out[row, doc] = np.einsum('nts,snd->tnd', weights, v[row, doc])
  return out


@pytest.mark.parametrize('causal', [False, True])
def test_cudnn_packed_layout_describes_the_document_mask(causal):
  """The lengths and offsets cuDNN's packed layout gets (GPU only) hold the same attention
  as XLA's path over the document ids: packed, padded, one-token and empty rows, a row of
  exactly `max_docs` documents and one of more (its later documents are dropped: the data
  caps rows first)."""
  doc_ids = np.zeros((5, 16), np.int32)
  doc_ids[0, :5], doc_ids[0, 5:12], doc_ids[0, 12] = 1, 2, 3  # packed, then padding
  doc_ids[1] = 1  # one document filling the row
  doc_ids[2, :4] = [1, 2, 3, 4]  # one-token documents
  doc_ids[4, :10] = np.repeat([1, 2, 3, 4, 5], 2)  # one document more than max_docs
  lengths_BxM, starts_BxM1 = map(np.asarray, attention.packed_layout(jnp.asarray(doc_ids), 4))
  np.testing.assert_array_equal(lengths_BxM[[0, 3, 4]], [[5, 7, 1, -1], [-1] * 4, [2] * 4])
  np.testing.assert_array_equal(starts_BxM1[[0, 4]], [[0, 5, 12, -1, -1], [0, 2, 4, 6, -1]])
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(5, 16, 2, 8)) for _ in range(3))
  want = attention.attend(*(jnp.asarray(t, jnp.float32) for t in (q, k, v)),
                          attention.DocMask(jnp.asarray(doc_ids), causal), 'xla')
  got = _per_document(q, k, v, lengths_BxM, starts_BxM1, causal)
  kept = ((doc_ids > 0) & (doc_ids <= 4))[:, :, None, None]
  np.testing.assert_allclose(np.where(kept, got, 0), np.where(kept, want, 0), atol=1e-5)
