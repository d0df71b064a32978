"""Heads that are more than one Dense layer: the MLM head, and the transform a task head
may put before its classifier."""

import jax.numpy as jnp
from flax import nnx

from ssljax.models.layers import Dense, Norm, activation


class MLMHead(nnx.Module):
  """Dense + GELU + norm, then logits through the word embedding (or the output table)
  plus a bias."""

  def __init__(self, cfg, *, rngs):
    e = cfg.embed_size or cfg.hidden_size
    self.cfg = cfg
    self.transform = Dense(cfg.hidden_size, e, ('embed', None), cfg, rngs=rngs)
    self.norm = Norm(e, cfg, rngs=rngs)
    self.bias = (nnx.Param(jnp.zeros((cfg.vocab_size,)), out_sharding=('vocab',))
                 if cfg.use_bias else None)

  def __call__(self, x_BxKxH, embedding_VxE):
    y_BxKxE = self.norm(activation(self.cfg)(self.transform(x_BxKxH)))
    logits_BxKxV = jnp.einsum('bke,ve->bkv', y_BxKxE, embedding_VxE.astype(y_BxKxE.dtype))
    logits_BxKxV = logits_BxKxV.astype(jnp.float32)
    return logits_BxKxV + self.bias[...] if self.bias is not None else logits_BxKxV


class Transform(nnx.Module):
  """Dense + activation + norm at the hidden size: what ModernBERT's task classes
  (ModernBertPredictionHead) put before their classifier, shaped like the MLM head's own
  transform, from which a fine-tune starts it (`finetune.head=mlp`)."""

  def __init__(self, cfg, *, rngs):
    self.cfg = cfg
    self.dense = Dense(cfg.hidden_size, cfg.hidden_size, ('embed', None), cfg, rngs=rngs)
    self.norm = Norm(cfg.hidden_size, cfg, rngs=rngs)

  def __call__(self, x_NxH):  # N: rows (a pooled vector each) or rows x positions
    return self.norm(activation(self.cfg)(self.dense(x_NxH)))
