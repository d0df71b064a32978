"""Transformers over patches of series: a PatchTST-style encoder, a patch decoder and a
de-noising auto-encoder with a bottleneck.

A series of T time steps and C channels is cut into L = T / P patches of P steps; one patch
(P x C values) is one token, embedded by a dense layer instead of a table, then read by the
same `Stack` of blocks as text. Values are normalised per series and channel first, so that
the model predicts shapes rather than levels: the encoder by the whole series' mean and
spread (instance norm), the decoder causally, patch t by the statistics of patches 0..t, so
that no position sees the future through its normalisation and a forecast normalises the
way training did.

Shape suffixes as in `layers`, plus T time steps, C channels, P steps per patch and
D = P x C values per patch.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from ssljax.models.config import DTYPES
from ssljax.models.layers import Dense, Norm, Stack, _dropout, attention_mask

EPS = 1e-5  # added to variances: a flat series normalises to zeros, not NaN


def to_patches(values_BxTxC, patch_len: int):
  """B x L x P x C patches of B x T x C values (T a multiple of `patch_len`)."""
  b, t, c = values_BxTxC.shape
  return values_BxTxC.reshape(b, t // patch_len, patch_len, c)


def instance_norm(patches_BxLxPxC):
  """Patches normalised by each series and channel's mean and spread over all its steps.

  Masked patches count too (PatchTST's RevIN): two numbers per channel reach the encoder
  from them, and without them the spread of a few visible flat patches can be tiny and a
  masked target tens of spreads away (GunPoint's loss spiked from 0.4 to 5 that way)."""
  mean_Bx1x1xC = patches_BxLxPxC.mean((1, 2), keepdims=True)
  var_Bx1x1xC = patches_BxLxPxC.var((1, 2), keepdims=True)
  return (patches_BxLxPxC - mean_Bx1x1xC) / jnp.sqrt(var_Bx1x1xC + EPS)


def causal_stats(patches_BxLxPxC):
  """(mean, std) B x L x 1 x C of each series and channel over patches 0..t, for every t.

  Computed from running sums after subtracting patch 0's mean, so that a series far from
  zero (a level of 60 with a spread of 1) keeps its float32 precision."""
  shift_Bx1x1xC = patches_BxLxPxC[:, :1].mean(2, keepdims=True)
  x_BxLxPxC = patches_BxLxPxC - shift_Bx1x1xC
  p = x_BxLxPxC.shape[2]
  count_1xLx1x1 = (p * jnp.arange(1, x_BxLxPxC.shape[1] + 1))[None, :, None, None]
  sum_BxLx1xC = jnp.cumsum(x_BxLxPxC.sum(2, keepdims=True), 1)
  sumsq_BxLx1xC = jnp.cumsum((x_BxLxPxC ** 2).sum(2, keepdims=True), 1)
  mean_BxLx1xC = sum_BxLx1xC / count_1xLx1x1
  var_BxLx1xC = jnp.maximum(sumsq_BxLx1xC / count_1xLx1x1 - mean_BxLx1xC ** 2, 0.0)
  return mean_BxLx1xC + shift_Bx1x1xC, jnp.sqrt(var_BxLx1xC + EPS)


def patch_values(head, x_BxLxH, cfg):
  """B x L x P x C patch values that a dense `head` reads off hidden states."""
  b, length = x_BxLxH.shape[:2]
  return head(x_BxLxH).astype(jnp.float32).reshape(b, length, cfg.patch_len, cfg.channels)


class PatchEmbeddings(nnx.Module):
  """Dense patch embedding + position embedding (learned, or rope in the blocks) + norm,
  with a learned vector that stands in for masked patches (masked patch modelling)."""

  def __init__(self, cfg, *, rngs):
    h, d = cfg.hidden_size, cfg.patch_len * cfg.channels
    self.cfg = cfg
    self.project = Dense(d, h, (None, 'embed'), cfg, rngs=rngs)
    self.mask = (nnx.Param(0.02 * jax.random.normal(rngs.params(), (h,)),
                           out_sharding=('embed',))
                 if cfg.arch == 'patch_encoder' else None)  # the decoder masks nothing
    self.position = (nnx.Embed(cfg.max_len, h, dtype=DTYPES[cfg.dtype],
                               embedding_init=nnx.with_partitioning(
                                   nnx.initializers.normal(0.02), (None, 'embed')), rngs=rngs)
                     if cfg.positions == 'learned' else None)
    self.norm = Norm(h, cfg, rngs=rngs)

  def __call__(self, patches_BxLxPxC, positions_BxL, masked_BxL, key):
    b, length = patches_BxLxPxC.shape[:2]
    x_BxLxH = self.project(patches_BxLxPxC.reshape(b, length, -1).astype(DTYPES[self.cfg.dtype]))
    if masked_BxL is not None and self.mask is not None:
      x_BxLxH = jnp.where(masked_BxL[..., None], self.mask[...].astype(x_BxLxH.dtype), x_BxLxH)
    if self.position is not None:
      x_BxLxH += self.position(positions_BxL)
    return _dropout(self.norm(x_BxLxH), self.cfg.dropout_rate, key)


class PatchTransformer(nnx.Module):
  """Patch embeddings, the block stack, a final norm and a dense head back to D values.

  model.arch=patch_encoder is PatchTST: bidirectional over instance-normalised patches, its
  head reconstructs masked patches. model.arch=patch_decoder is causal (TimesFM-like):
  position t reads causally normalised patches and predicts patch t + 1 in the
  normalisation of patches 0..t.
  """

  def __init__(self, cfg, *, rngs):
    self.cfg = cfg
    self.causal = cfg.arch == 'patch_decoder'
    self.embeddings = PatchEmbeddings(cfg, rngs=rngs)
    self.stack = Stack(cfg, rngs=rngs)
    self.final_norm = Norm(cfg.hidden_size, cfg, rngs=rngs) if cfg.pre_ln else None
    self.patch_head = Dense(cfg.hidden_size, cfg.patch_len * cfg.channels, ('embed', None), cfg,
                            rngs=rngs)
    if cfg.projection:  # SimCLR's g(.): an MLP on the pooled states, trained by contrastive
      self.projection = nnx.List([Dense(cfg.hidden_size, cfg.hidden_size, ('embed', 'mlp'), cfg,
                                        rngs=rngs),
                                  Dense(cfg.hidden_size, cfg.projection, ('mlp', None), cfg,
                                        rngs=rngs)])

  def project(self, x_BxLxH):
    """B x projection: the pooled states through the projection head (contrastive)."""
    first, second = self.projection
    return second(jax.nn.relu(first(x_BxLxH.mean(1)))).astype(jnp.float32)

  def normalise(self, values_BxTxC):
    """The normalised B x L x P x C patches this model reads (and its objective predicts)."""
    patches_BxLxPxC = to_patches(values_BxTxC.astype(jnp.float32), self.cfg.patch_len)
    if not self.causal:
      return instance_norm(patches_BxLxPxC)
    mean_BxLx1xC, std_BxLx1xC = causal_stats(patches_BxLxPxC)
    return (patches_BxLxPxC - mean_BxLx1xC) / std_BxLx1xC

  def __call__(self, batch, key=None):
    """Last hidden states B x L x H of batch['values'] (B x T x C); patches that
    batch['masked'] (B x L, optional) marks read the mask vector instead of their values,
    and batch['noise'] (B x L x P x C, optional) is added to the normalised patches."""
    keys = jax.random.split(key) if key is not None else (None, None)
    patches_BxLxPxC = self.normalise(batch['values']) + batch.get('noise', 0.0)
    b, length = patches_BxLxPxC.shape[:2]
    positions_BxL = jnp.broadcast_to(jnp.arange(length), (b, length))
    x_BxLxH = self.embeddings(patches_BxLxPxC, positions_BxL, batch.get('masked'), keys[0])
    doc_ids_BxL = jnp.ones((b, length), jnp.int32)
    x_BxLxH = self.stack(x_BxLxH, attention_mask(doc_ids_BxL, causal=self.causal, max_docs=1),
                         positions_BxL, keys[1])
    return self.final_norm(x_BxLxH) if self.final_norm is not None else x_BxLxH

  def predict_patches(self, x_BxLxH):
    """B x L x P x C normalised patch values from hidden states."""
    return patch_values(self.patch_head, x_BxLxH, self.cfg)

  def next_patch(self, values_BxTxC):
    """The P steps that follow each series (B x P x C, in the series' units): the decoder's
    prediction at the last position, un-normalised by the statistics it was read with."""
    patches_BxLxPxC = to_patches(values_BxTxC.astype(jnp.float32), self.cfg.patch_len)
    mean_BxLx1xC, std_BxLx1xC = causal_stats(patches_BxLxPxC)
    x_BxPxC = self.predict_patches(self({'values': values_BxTxC}))[:, -1]
    return x_BxPxC * std_BxLx1xC[:, -1] + mean_BxLx1xC[:, -1]


class PatchAutoencoder(nnx.Module):
  """A de-noising auto-encoder with a bottleneck (model.arch=patch_autoencoder).

  The encoder (the patch encoder's embeddings and blocks, bidirectional) reads the
  instance-normalised patches, with batch['noise'] added while training; its states,
  averaged over patches, pass through `model.bottleneck` numbers (`encode`); a decoder of the
  same blocks rebuilds every clean patch from those numbers and its position alone. With
  nothing but the bottleneck to go on, the decoder cannot copy its input: the code must keep
  what makes a series what it is, and a series unlike those it trained on rebuilds badly.
  """

  def __init__(self, cfg, *, rngs):
    h = cfg.hidden_size
    self.cfg = cfg
    self.embeddings = PatchEmbeddings(cfg, rngs=rngs)
    self.stack = Stack(cfg, rngs=rngs)
    self.final_norm = Norm(h, cfg, rngs=rngs)
    self.down = Dense(h, cfg.bottleneck, ('embed', None), cfg, rngs=rngs)
    self.up = Dense(cfg.bottleneck, h, (None, 'embed'), cfg, rngs=rngs)
    self.queries = nnx.Embed(cfg.max_len, h, dtype=DTYPES[cfg.dtype],
                             embedding_init=nnx.with_partitioning(
                                 nnx.initializers.normal(0.02), (None, 'embed')), rngs=rngs)
    self.decoder = Stack(cfg, rngs=rngs)
    self.decoder_norm = Norm(h, cfg, rngs=rngs)
    self.patch_head = Dense(h, cfg.patch_len * cfg.channels, ('embed', None), cfg, rngs=rngs)

  def normalise(self, values_BxTxC):
    """The instance-normalised B x L x P x C patches the model rebuilds."""
    return instance_norm(to_patches(values_BxTxC.astype(jnp.float32), self.cfg.patch_len))

  def encode(self, batch, key=None):
    """B x bottleneck: the code of batch['values'] (plus batch['noise'] where given)."""
    keys = jax.random.split(key) if key is not None else (None, None)
    patches_BxLxPxC = self.normalise(batch['values']) + batch.get('noise', 0.0)
    b, length = patches_BxLxPxC.shape[:2]
    positions_BxL = jnp.broadcast_to(jnp.arange(length), (b, length))
    x_BxLxH = self.embeddings(patches_BxLxPxC, positions_BxL, None, keys[0])
    mask = attention_mask(jnp.ones((b, length), jnp.int32), causal=False, max_docs=1)
    x_BxLxH = self.final_norm(self.stack(x_BxLxH, mask, positions_BxL, keys[1]))
    return self.down(x_BxLxH.mean(1))

  def __call__(self, batch, key=None):
    """The decoder's last hidden states B x L x H, rebuilt from the code alone."""
    keys = jax.random.split(key) if key is not None else (None, None)
    code_BxK = self.encode(batch, keys[0])
    b, length = code_BxK.shape[0], batch['values'].shape[1] // self.cfg.patch_len
    positions_BxL = jnp.broadcast_to(jnp.arange(length), (b, length))
    x_BxLxH = self.up(code_BxK)[:, None, :] + self.queries(positions_BxL)
    mask = attention_mask(jnp.ones((b, length), jnp.int32), causal=False, max_docs=1)
    return self.decoder_norm(self.decoder(x_BxLxH, mask, positions_BxL, keys[1]))

  def predict_patches(self, x_BxLxH):
    """B x L x P x C normalised patch values from the decoder's hidden states."""
    return patch_values(self.patch_head, x_BxLxH, self.cfg)
