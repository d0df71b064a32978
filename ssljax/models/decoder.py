"""GPT: a causal decoder whose logits are tied to its input embedding."""

import jax
import jax.numpy as jnp
from flax import nnx

from ssljax.models.layers import Embeddings, LayerNorm, Stack, attention_mask

class Decoder(nnx.Module):
  """GPT: causal pre-LN blocks, final LayerNorm, logits tied to the input embedding."""

  def __init__(self, cfg, *, rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs, segments=False, norm=False)
    self.stack = Stack(cfg, rngs=rngs)
    self.final_norm = LayerNorm(cfg.hidden_size, cfg, rngs=rngs)

  def __call__(self, batch, key=None):
    keys = jax.random.split(key) if key is not None else (None, None)
    x_BxLxH = self.embeddings(batch['input_ids'], batch['positions'], None, keys[0])
    x_BxLxH = self.stack(x_BxLxH, attention_mask(batch['doc_ids'], causal=True),
                         batch['positions'], keys[1])
    return self.final_norm(x_BxLxH)

  def lm_logits(self, x_BxLxH):
    embedding_VxH = self.embeddings.word.embedding[...]
    return jnp.einsum('blh,vh->blv', x_BxLxH, embedding_VxH.astype(x_BxLxH.dtype)).astype(
        jnp.float32)
