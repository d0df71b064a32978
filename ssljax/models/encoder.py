"""BERT and ALBERT: a bidirectional encoder with its MLM and sentence-pair heads."""

import jax
import jax.numpy as jnp
from flax import nnx

from ssljax.models.heads import MLMHead
from ssljax.models.layers import Dense, Embeddings, Norm, Stack, attention_mask, output_table


class Encoder(nnx.Module):
  """BERT / ALBERT: embeddings, block stack, [CLS] pooler, MLM and sentence-pair heads."""

  def __init__(self, cfg, *, rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs, segments=cfg.type_vocab_size > 0)
    self.stack = Stack(cfg, rngs=rngs)
    self.final_norm = Norm(cfg.hidden_size, cfg, rngs=rngs) if cfg.pre_ln else None
    self.pooler = Dense(cfg.hidden_size, cfg.hidden_size, ('embed', None), cfg, rngs=rngs)
    self.mlm_head = MLMHead(cfg, rngs=rngs)
    self.sentence_head = Dense(cfg.hidden_size, 2, ('embed', None), cfg, rngs=rngs)
    self.output = None if cfg.tie_embeddings else output_table(cfg, rngs)

  def __call__(self, batch, key=None):
    """Returns the last hidden states B x L x H."""
    keys = jax.random.split(key) if key is not None else (None, None)
    x_BxLxH = self.embeddings(batch['input_ids'], batch['positions'], batch['segment_ids'],
                              keys[0])
    # An encoder's row is one document ([CLS] A [SEP] (B [SEP])), then padding.
    x_BxLxH = self.stack(x_BxLxH, attention_mask(batch['doc_ids'], causal=False, max_docs=1),
                         batch['positions'], keys[1])
    return self.final_norm(x_BxLxH) if self.final_norm is not None else x_BxLxH

  def pool(self, x_BxLxH):
    return jnp.tanh(self.pooler(x_BxLxH[:, 0]))

  def mlm_logits(self, x_BxKxH):
    table = self.embeddings.word if self.output is None else self.output
    return self.mlm_head(x_BxKxH, table.embedding[...])

  def sentence_logits(self, x_BxLxH):
    return self.sentence_head(self.pool(x_BxLxH)).astype(jnp.float32)
