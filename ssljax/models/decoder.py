"""GPT: a causal decoder whose logits are tied to its input embedding."""

import jax
import jax.numpy as jnp
from flax import nnx

from ssljax.models.layers import Embeddings, Norm, Stack, attention_mask, output_table


class Decoder(nnx.Module):
  """GPT: causal pre-LN blocks, a final norm, logits tied to the input embedding (or, with
  model.tie_embeddings=False, through an output table of their own).

  `__call__` reads whole rows (training, scoring); `init_cache` and `decode` read a few new
  tokens at a time against the keys and values of the earlier ones (generation).
  """

  def __init__(self, cfg, *, rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs, segments=False, norm=False)
    self.stack = Stack(cfg, rngs=rngs)
    self.final_norm = Norm(cfg.hidden_size, cfg, rngs=rngs)
    self.output = None if cfg.tie_embeddings else output_table(cfg, rngs)

  def __call__(self, batch, key=None):
    keys = jax.random.split(key) if key is not None else (None, None)
    x_BxLxH = self.embeddings(batch['input_ids'], batch['positions'], None, keys[0])
    x_BxLxH = self.stack(x_BxLxH, attention_mask(batch['doc_ids'], causal=True,
                                                   max_docs=self.cfg.max_docs_per_row),
                         batch['positions'], keys[1])
    return self.final_norm(x_BxLxH)

  def init_cache(self, batch: int, slots: int):
    """An empty KV cache of `slots` tokens for `batch` rows."""
    return self.stack.init_cache(batch, slots)

  def decode(self, ids_BxL, positions_BxL, real_BxS, cache, index):
    """Last hidden states B x L x H of L new tokens that go into cache slots
    [index, index + L), and the cache holding them. A token attends to itself and the
    earlier slots that `real_BxS` marks as tokens (not padding)."""
    slots = real_BxS.shape[1]
    causal_LxS = jnp.arange(slots)[None, :] <= index + jnp.arange(ids_BxL.shape[1])[:, None]
    mask_Bx1xLxS = (real_BxS[:, None, :] & causal_LxS[None])[:, None]
    x_BxLxH = self.embeddings(ids_BxL, positions_BxL, None, None)
    x_BxLxH, cache = self.stack.decode(x_BxLxH, mask_Bx1xLxS, positions_BxL, cache, index)
    return self.final_norm(x_BxLxH), cache

  def lm_logits(self, x_BxLxH):
    table = self.embeddings.word if self.output is None else self.output
    embedding_VxH = table.embedding[...]
    return jnp.einsum('blh,vh->blv', x_BxLxH, embedding_VxH.astype(x_BxLxH.dtype)).astype(
        jnp.float32)
