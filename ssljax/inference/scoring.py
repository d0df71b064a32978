"""Continuation scores with a causal LM: log p(the last tokens of a row | the tokens before).

What few-shot prompting ranks its verbalisers by and what lm-eval's loglikelihood requests
ask for. Rows are batched by length (`batching.by_length`) and each batch is padded to its
longest row's `padded_length`, so a few programs compile.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssljax.data.rows import padded_length
from ssljax.inference import batching
from ssljax.pretrained import Pretrained


@functools.partial(jax.jit, static_argnums=0)
def _continuation_logprob(graphdef, state, ids_BxL, real_BxL, targets_BxL):
  """Sum over positions of log p(target | prefix) where a target is set (>= 0), and whether
  every target is the most likely token."""
  batch = {'input_ids': ids_BxL, 'segment_ids': jnp.zeros_like(ids_BxL), 'doc_ids': real_BxL,
           'positions': jnp.broadcast_to(jnp.arange(ids_BxL.shape[1]), ids_BxL.shape)}
  model = nnx.merge(graphdef, state)
  logp_BxLxV = jax.nn.log_softmax(model.lm_logits(model(batch)).astype(jnp.float32))
  picked_BxL = jnp.take_along_axis(logp_BxLxV, jnp.maximum(targets_BxL, 0)[..., None], -1)[..., 0]
  scored_BxL = targets_BxL >= 0
  greedy_BxL = jnp.argmax(logp_BxLxV, axis=-1) == targets_BxL
  return (jnp.where(scored_BxL, picked_BxL, 0).sum(axis=1),
          (greedy_BxL | ~scored_BxL).all(axis=1))


def continuation_scores(pre: Pretrained, rows: list[np.ndarray], lengths: list[int],
                        batch_size: int, bar=None, greedy: bool = False):
  """log p(last `lengths[i]` tokens of row i | the rest) as an array; with `greedy`, also
  whether each of those tokens is the model's most likely one (as a second array).

  The model reads each row but its last token (at most the model's positions); `bar`
  (tqdm) advances by one per batch.
  """
  graphdef, state = nnx.split(pre.model)
  limit = pre.model_cfg.context_length
  logp, is_greedy = np.zeros(len(rows), np.float64), np.zeros(len(rows), bool)
  for index in batching.by_length([len(r) for r in rows], batch_size):
    width = padded_length(max(len(rows[i]) for i in index) - 1, limit)
    ids = np.full((batch_size, width), pre.tokenizer.pad_id, np.int32)
    targets = np.full((batch_size, width), -1, np.int32)
    real = np.zeros((batch_size, width), np.int32)
    for j, i in enumerate(index):
      row, n = rows[i], lengths[i]
      ids[j, :len(row) - 1] = row[:-1]
      real[j, :len(row) - 1] = 1
      targets[j, len(row) - n - 1:len(row) - 1] = row[len(row) - n:]  # t predicts t+1
    got_logp, got_greedy = _continuation_logprob(graphdef, state, ids, real, targets)
    logp[index] = np.asarray(got_logp)[:len(index)]
    is_greedy[index] = np.asarray(got_greedy)[:len(index)]
    if bar is not None:
      bar.update(1)
  return (logp, is_greedy) if greedy else logp
