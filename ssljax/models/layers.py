"""The pieces every architecture shares: dense and norm layers, dropout, attention masks,
the transformer block, the block stack and the embeddings.

One `Block` serves all three architectures (post-LN or pre-LN, bidirectional or causal).
Parameters carry logical axis names ('vocab', 'embed', 'heads', 'mlp', 'layers');
`ssljax.sharding` maps them to mesh axes. Dropout takes an explicit key per call,
so the model state holds parameters only and a training step is a pure function of
(params, batch, key).

Shape suffixes: B batch, L length, H hidden, E embedding, N heads, D head dim, F mlp,
V vocab, K predicted positions.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from ssljax import sharding
from ssljax.models import attention
from ssljax.models.config import DTYPES


def _init(stddev, names):
  return nnx.with_partitioning(nnx.initializers.normal(stddev), names)


def _zeros(names):
  return nnx.with_partitioning(nnx.initializers.zeros_init(), names)


def _ones(names):
  return nnx.with_partitioning(nnx.initializers.ones_init(), names)


def _gathered_dot(lhs, rhs, *args, **kwargs):
  return jax.lax.dot_general(lhs, sharding.gather_whole(rhs), *args, **kwargs)


class Dense(nnx.Linear):
  """A Linear layer whose kernel and bias carry logical axis names."""

  def __init__(self, din, dout, names, cfg, *, rngs, std=0.02):
    super().__init__(din, dout, use_bias=cfg.use_bias, dtype=DTYPES[cfg.dtype],
                     kernel_init=_init(std, names), bias_init=_zeros(names[-1:]),
                     dot_general=_gathered_dot, rngs=rngs)


class LayerNorm(nnx.LayerNorm):

  def __init__(self, dim, cfg, *, rngs):
    super().__init__(dim, epsilon=cfg.layer_norm_eps, use_bias=cfg.use_bias,
                     dtype=DTYPES[cfg.dtype], scale_init=_ones(('embed',)),
                     bias_init=_zeros(('embed',)), rngs=rngs)


class RMSNorm(nnx.RMSNorm):
  """x / rms(x) times a scale, no mean and no bias (Llama); statistics in float32."""

  def __init__(self, dim, cfg, *, rngs):
    super().__init__(dim, epsilon=cfg.layer_norm_eps, dtype=DTYPES[cfg.dtype],
                     scale_init=_ones(('embed',)), rngs=rngs)


NORMS = {'layer': LayerNorm, 'rms': RMSNorm}


def Norm(dim, cfg, *, rngs):  # used like a class
  """The normalisation `model.norm` names."""
  return NORMS[cfg.norm](dim, cfg, rngs=rngs)


# The elementwise nonlinearity of each `model.activation`: a gated one applies it to the
# gate half of the MLP's input layer (GEGLU: Shazeer 2020, Cramming; SwiGLU: Llama).
_NONLINEARITY = {
    'gelu': functools.partial(jax.nn.gelu, approximate=False),
    'gelu_tanh': functools.partial(jax.nn.gelu, approximate=True),
    'geglu': functools.partial(jax.nn.gelu, approximate=False),
    'swiglu': jax.nn.silu,
}
GATED = ('geglu', 'swiglu')  # activations whose MLP input layer is twice as wide: gate | value


def activation(cfg):
  """The elementwise nonlinearity of `cfg.activation` (the MLM head's, and the MLP's gate)."""
  return _NONLINEARITY[cfg.activation]


def mlp_activation(cfg):
  """The MLP's nonlinearity: for the gated activations, the nonlinearity of the first half
  of the input layer's output times its second half."""
  if cfg.activation in GATED:
    def gated(x):
      gate, value = jnp.split(x, 2, axis=-1)
      return activation(cfg)(gate) * value
    return gated
  return activation(cfg)


def _dropout(x, rate, key):
  """Inverted dropout from 16 random bits per element: half the RNG work of a float draw."""
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bits(key, x.shape, jnp.uint16) >= round(rate * 65536)
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def rope(x_BxLxNxD, positions_BxL, base: float = 10000.0):
  """Rotary position embedding (Su et al. 2021), halves rotated as in GPT-NeoX: q.k then
  depends on positions only through their difference, so local attention is easy to learn."""
  half = x_BxLxNxD.shape[-1] // 2
  freq_F = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle_BxLx1xF = (positions_BxL.astype(jnp.float32)[..., None] * freq_F)[:, :, None, :]
  cos, sin = jnp.cos(angle_BxLx1xF), jnp.sin(angle_BxLx1xF)
  x1, x2 = x_BxLxNxD[..., :half].astype(jnp.float32), x_BxLxNxD[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x_BxLxNxD.dtype)


def attention_mask(doc_ids_BxL, causal, max_docs=0):
  """Tokens attend to tokens of the same document (doc id > 0); causal adds j <= i. Kept
  as document ids (`attention.DocMask`): fused kernels read them as segment ids.
  `max_docs`: the most documents a row holds (0: unknown)."""
  return attention.DocMask(doc_ids_BxL, causal, max_docs)


class KVCache(NamedTuple):
  """Keys and values of the tokens decoded so far: B x N x S x D per layer (a leading layer
  axis when layers are scanned), heads before slots so that attention reads the cache as it
  lies and a new token's keys go in without moving the rest."""
  k: jax.Array
  v: jax.Array

  def write(self, k_BxLxNxD, v_BxLxNxD, index) -> 'KVCache':
    """The cache with slots [index, index + L) set to the new keys and values."""
    put = lambda old, new: jax.lax.dynamic_update_slice_in_dim(
        old, new.transpose(0, 2, 1, 3).astype(old.dtype), index, axis=2)
    return KVCache(put(self.k, k_BxLxNxD), put(self.v, v_BxLxNxD))


def _masked_softmax(logits_BxNxLxS, mask_Bx1xLxS):
  """Attention weights in float32; keys the mask leaves out get none."""
  logits_BxNxLxS = jnp.where(mask_Bx1xLxS, logits_BxNxLxS, jnp.finfo(logits_BxNxLxS.dtype).min)
  return jax.nn.softmax(logits_BxNxLxS.astype(jnp.float32), axis=-1)


class Block(nnx.Module):
  """Self-attention plus MLP, each with a residual; post-LN (BERT) or pre-LN (GPT)."""

  def __init__(self, cfg, *, rngs):
    h, f = cfg.hidden_size, cfg.mlp_dim
    self.num_heads, self.pre_ln, self.cfg = cfg.num_heads, cfg.pre_ln, cfg
    self.query = Dense(h, h, ('embed', 'heads'), cfg, rngs=rngs)
    self.key = Dense(h, h, ('embed', 'heads'), cfg, rngs=rngs)
    self.value = Dense(h, h, ('embed', 'heads'), cfg, rngs=rngs)
    self.attention_out = Dense(h, h, ('heads', 'embed'), cfg, rngs=rngs)
    self.attention_norm = Norm(h, cfg, rngs=rngs)
    self.mlp_in = Dense(h, 2 * f if cfg.activation in GATED else f, ('embed', 'mlp'), cfg,
                        rngs=rngs)
    self.mlp_out = Dense(f, h, ('mlp', 'embed'), cfg, rngs=rngs)
    self.mlp_norm = Norm(h, cfg, rngs=rngs)

  def qkv(self, x_BxLxH, positions_BxL):
    """Queries, keys and values B x L x N x D; rotated by position for rope."""
    b, l, h = x_BxLxH.shape  # noqa: E741 (l is L, the sequence axis of the shape suffixes)
    split = lambda t: t.reshape(b, l, self.num_heads, h // self.num_heads)
    q_BxLxNxD = split(self.query(x_BxLxH))
    k_BxLxNxD = split(self.key(x_BxLxH))
    v_BxLxNxD = split(self.value(x_BxLxH))
    if self.cfg.positions == 'rope':
      base = self.cfg.rope_base
      q_BxLxNxD = rope(q_BxLxNxD, positions_BxL, base)
      k_BxLxNxD = rope(k_BxLxNxD, positions_BxL, base)
    return q_BxLxNxD, k_BxLxNxD, v_BxLxNxD

  def attention(self, x_BxLxH, mask_Bx1xLxL, positions_BxL, key):
    b, l, h = x_BxLxH.shape  # noqa: E741 (l is L, the sequence axis of the shape suffixes)
    q_BxLxNxD, k_BxLxNxD, v_BxLxNxD = self.qkv(x_BxLxH, positions_BxL)
    if key is None or self.cfg.attention_dropout_rate == 0.0:
      out_BxLxNxD = attention.attend(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask_Bx1xLxL,
                                     self.cfg.attention)
    else:  # the kernels have no dropout: spell the softmax out
      scale = (h // self.num_heads) ** -0.5
      logits_BxNxLxL = jnp.einsum('blnd,bmnd->bnlm', q_BxLxNxD, k_BxLxNxD) * scale
      probs_BxNxLxL = _masked_softmax(logits_BxNxLxL, attention.dense(mask_Bx1xLxL))
      probs_BxNxLxL = _dropout(probs_BxNxLxL, self.cfg.attention_dropout_rate, key)
      out_BxLxNxD = jnp.einsum('bnlm,bmnd->blnd', probs_BxNxLxL.astype(v_BxLxNxD.dtype),
                               v_BxLxNxD)
    return self.attention_out(out_BxLxNxD.reshape(b, l, h))

  def mlp(self, x_BxLxH):
    return self.mlp_out(mlp_activation(self.cfg)(self.mlp_in(x_BxLxH)))

  def _attention_input(self, x_BxLxH, first):
    """Pre-LN: the normed input, except in block 0 (`first`) under
    model.first_attention_norm=False, which reads the embedding norm's output as it is."""
    if self.cfg.first_attention_norm:
      return self.attention_norm(x_BxLxH)
    return jnp.where(first, x_BxLxH, self.attention_norm(x_BxLxH))

  def __call__(self, x_BxLxH, mask_Bx1xLxL, positions_BxL, key=None, first=False):
    keys = jax.random.split(key, 3) if key is not None else (None,) * 3
    rate = self.cfg.dropout_rate
    attend = lambda y: self.attention(y, mask_Bx1xLxL, positions_BxL, keys[0])
    if self.pre_ln:
      x_BxLxH = x_BxLxH + _dropout(attend(self._attention_input(x_BxLxH, first)), rate,
                                   keys[1])
      return x_BxLxH + _dropout(self.mlp(self.mlp_norm(x_BxLxH)), rate, keys[2])
    x_BxLxH = self.attention_norm(x_BxLxH + _dropout(attend(x_BxLxH), rate, keys[1]))
    return self.mlp_norm(x_BxLxH + _dropout(self.mlp(x_BxLxH), rate, keys[2]))

  def decode(self, x_BxLxH, mask_Bx1xLxS, positions_BxL, cache: KVCache, index):
    """The pre-LN (decoder) block over L new tokens held in cache slots [index, index + L):
    their keys and values are written into `cache` and each query attends to the S slots
    that `mask` allows, so earlier tokens are never recomputed. Returns (x, cache)."""
    q_BxLxNxD, k_BxLxNxD, v_BxLxNxD = self.qkv(self.attention_norm(x_BxLxH), positions_BxL)
    cache = cache.write(k_BxLxNxD, v_BxLxNxD, index)
    b, l, n, d = q_BxLxNxD.shape  # noqa: E741 (l is L, the sequence axis of the shape suffixes)
    logits_BxNxLxS = jnp.einsum('blnd,bnsd->bnls', q_BxLxNxD, cache.k) * d ** -0.5
    probs_BxNxLxS = _masked_softmax(logits_BxNxLxS, mask_Bx1xLxS).astype(cache.v.dtype)
    out_BxLxNxD = jnp.einsum('bnls,bnsd->blnd', probs_BxNxLxS, cache.v)
    x_BxLxH = x_BxLxH + self.attention_out(out_BxLxNxD.reshape(b, l, n * d))
    return x_BxLxH + self.mlp(self.mlp_norm(x_BxLxH)), cache


class Stack(nnx.Module):
  """num_layers Blocks: a list, one shared Block (ALBERT), or stacked params under scan."""

  def __init__(self, cfg, *, rngs):
    self.cfg = cfg
    if cfg.share_layers:
      self.shared = Block(cfg, rngs=rngs)
    elif cfg.scan_layers:
      @nnx.split_rngs(splits=cfg.num_layers)
      @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: 'layers'})
      def make(rngs):
        return Block(cfg, rngs=rngs)
      self.scanned = make(rngs)
    else:
      self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])

  def __call__(self, x_BxLxH, mask_Bx1xLxL, positions_BxL, key=None):
    cfg = self.cfg
    keys = (jax.random.split(key, cfg.num_layers) if key is not None
            else [None] * cfg.num_layers)
    apply = lambda block, x, k, first: sharding.constrain_rows(
        block(sharding.constrain_rows(x), mask_Bx1xLxL, positions_BxL, k, first))
    if cfg.remat:
      apply = nnx.remat(apply)
    firsts = jnp.arange(cfg.num_layers) == 0  # block 0 may skip its attention norm
    if cfg.scan_layers and not cfg.share_layers:
      @nnx.scan(in_axes=(0, nnx.Carry, 0 if key is not None else None, 0),
                out_axes=nnx.Carry, transform_metadata={nnx.PARTITION_NAME: 'layers'})
      def body(block, x, k, first):
        return apply(block, x, k, first)
      return body(self.scanned, x_BxLxH, keys if key is not None else None, firsts)
    for i in range(cfg.num_layers):
      block = self.shared if cfg.share_layers else self.layers[i]
      x_BxLxH = apply(block, x_BxLxH, keys[i], firsts[i])
    return x_BxLxH

  def init_cache(self, batch: int, slots: int):
    """Zero keys and values for `slots` tokens of `batch` rows: a KVCache per layer, or one
    stacked over layers when they are scanned."""
    cfg = self.cfg
    shape = (batch, cfg.num_heads, slots, cfg.hidden_size // cfg.num_heads)
    zeros = lambda *lead: jnp.zeros(lead + shape, DTYPES[cfg.dtype])
    if cfg.scan_layers and not cfg.share_layers:
      return KVCache(zeros(cfg.num_layers), zeros(cfg.num_layers))
    return tuple(KVCache(zeros(), zeros()) for _ in range(cfg.num_layers))

  def decode(self, x_BxLxH, mask_Bx1xLxS, positions_BxL, cache, index):
    """The blocks over new tokens with a KV cache (`Block.decode`); returns (x, cache)."""
    cfg = self.cfg
    if cfg.scan_layers and not cfg.share_layers:
      @nnx.scan(in_axes=(0, nnx.Carry, 0), out_axes=(nnx.Carry, 0),
                transform_metadata={nnx.PARTITION_NAME: 'layers'})
      def body(block, x, layer_cache):
        return block.decode(x, mask_Bx1xLxS, positions_BxL, layer_cache, index)
      return body(self.scanned, x_BxLxH, cache)
    written = []
    for i in range(cfg.num_layers):
      block = self.shared if cfg.share_layers else self.layers[i]
      x_BxLxH, layer_cache = block.decode(x_BxLxH, mask_Bx1xLxS, positions_BxL, cache[i], index)
      written.append(layer_cache)
    return x_BxLxH, tuple(written)


def output_table(cfg, rngs) -> nnx.Embed:
  """The V x E table that logits read when model.tie_embeddings=False (the input embedding's
  shape and sharding, parameters of its own)."""
  return nnx.Embed(cfg.vocab_size, cfg.embed_size or cfg.hidden_size, dtype=DTYPES[cfg.dtype],
                   embedding_init=_init(0.02, ('vocab', 'embed')), rngs=rngs)


class Embeddings(nnx.Module):
  """Token + position (+ segment) embeddings, with ALBERT's E -> H projection when E < H.

  Position p reads row p + position_offset of the table: RoBERTa's rows start after its
  padding id (offset 2).
  """

  def __init__(self, cfg, *, rngs, segments=True, norm=True):
    e = cfg.embed_size or cfg.hidden_size
    dtype = DTYPES[cfg.dtype]
    self.cfg = cfg
    self.word = nnx.Embed(cfg.vocab_size, e, dtype=dtype,
                          embedding_init=_init(0.02, ('vocab', 'embed')), rngs=rngs)
    self.position = (nnx.Embed(cfg.max_len, e, dtype=dtype,
                               embedding_init=_init(0.02, (None, 'embed')), rngs=rngs)
                     if cfg.positions == 'learned' else None)  # rope rotates q and k instead
    self.segment = (nnx.Embed(cfg.type_vocab_size, e, dtype=dtype,
                              embedding_init=_init(0.02, (None, 'embed')), rngs=rngs)
                    if segments else None)
    self.norm = Norm(e, cfg, rngs=rngs) if norm else None
    self.project = (Dense(e, cfg.hidden_size, (None, 'embed'), cfg, rngs=rngs)
                    if e != cfg.hidden_size else None)

  def __call__(self, ids_BxL, positions_BxL, segment_ids_BxL, key):
    x_BxLxE = self.word(ids_BxL)
    if self.position is not None:
      x_BxLxE += self.position(positions_BxL + self.cfg.position_offset)
    if self.segment is not None:
      x_BxLxE += self.segment(segment_ids_BxL)
    if self.norm is not None:
      x_BxLxE = self.norm(x_BxLxE)
    x_BxLxE = _dropout(x_BxLxE, self.cfg.dropout_rate, key)
    return self.project(x_BxLxE) if self.project is not None else x_BxLxE
