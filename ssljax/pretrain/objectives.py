"""Loss sums of the self-supervised objectives.

Each head returns sums (loss, correct, count) over its predictions, never means: the step
divides by the *global* count, so a sharded, pmapped or accumulated step gives the same loss
and gradient as one device computing the whole batch.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ssljax import sharding

CLM_CHUNK = 128  # positions whose float32 logits exist at once in the causal LM loss

HEADS = {
    'mlm': ('mlm',),
    'mlm_nsp': ('mlm', 'nsp'),
    'mlm_sop': ('mlm', 'sop'),
    'clm': ('clm',),
}


def _sums(logits_BxKxV, targets_BxK, weights_BxK):
  xent_BxK = optax.softmax_cross_entropy_with_integer_labels(logits_BxKxV, targets_BxK)
  # target >= max rather than argmax == target: one reduction XLA shares with the softmax
  target_BxK = jnp.take_along_axis(logits_BxKxV, targets_BxK[..., None], -1)[..., 0]
  correct_BxK = (target_BxK >= logits_BxKxV.max(-1)).astype(jnp.float32)
  return {
      'loss': (xent_BxK * weights_BxK).sum(),
      'correct': (correct_BxK * weights_BxK).sum(),
      'count': weights_BxK.sum(),
  }


def clm_weights(doc_ids_BxL):
  """Position t predicts token t+1 only inside one document."""
  return ((doc_ids_BxL[:, 1:] == doc_ids_BxL[:, :-1]) & (doc_ids_BxL[:, 1:] > 0)).astype(
      jnp.float32)


def mlm_sums(model, hidden_BxLxH, ids_BxL, masks, positions_only):
  """MLM on the K chosen positions only, or on all L positions weighted by the mask."""
  if positions_only:
    hidden_BxKxH = jnp.take_along_axis(hidden_BxLxH, masks['positions'][..., None], axis=1)
    return _sums(model.mlm_logits(hidden_BxKxH), masks['targets'], masks['weights'])
  return _sums(model.mlm_logits(hidden_BxLxH), ids_BxL,
               masks['chosen'].astype(jnp.float32))


def sentence_sums(model, hidden_BxLxH, labels_B):
  logits_Bx2 = model.sentence_logits(hidden_BxLxH)
  ones_Bx1 = jnp.ones_like(labels_B, jnp.float32)[:, None]
  return _sums(logits_Bx2[:, None], labels_B[:, None], ones_Bx1)


def _chunk(length):
  return max(c for c in range(1, min(CLM_CHUNK, length) + 1) if length % c == 0)


def _vocab_tables_whole(model, dtype):
  """The model with its vocabulary tables in `dtype` and whole on each chip of an FSDP mesh
  (split by its vocab dim only). The CLM loss's loop over chunks then uses a table
  gathered once before it, and its gradient is reduce-scattered once after it; otherwise
  both happen in every chunk (16x the table's bytes per step for GPT-2 small)."""
  if not sharding.splits_params():
    return model
  graphdef, state = nnx.split(model)

  def whole(x, names):
    if 'vocab' not in tuple(names):
      return x
    return jax.lax.with_sharding_constraint(x.astype(dtype), sharding.vocab_only(names))

  return nnx.merge(graphdef, jax.tree.map(whole, state, nnx.get_partition_spec(state)))


def clm_sums(model, hidden_BxLxH, batch):
  """Next-token prediction that never predicts across a document boundary or into padding.

  The logits are made CLM_CHUNK positions at a time under a rematerialised scan, so the
  float32 B x L x V logits of the whole batch never exist (at GPT-2's vocabulary they would
  outgrow a chip's memory); the last position predicts nothing (weight 0).
  """
  b, length, h = hidden_BxLxH.shape
  ids_BxL = batch['input_ids']
  targets_BxL = jnp.concatenate([ids_BxL[:, 1:], jnp.zeros_like(ids_BxL[:, :1])], 1)
  weights_BxL = jnp.pad(clm_weights(batch['doc_ids']), ((0, 0), (0, 1)))
  c = _chunk(length)
  chunks = lambda x: jnp.moveaxis(x.reshape((b, length // c, c) + x.shape[2:]), 1, 0)
  head = _vocab_tables_whole(model, hidden_BxLxH.dtype)

  @jax.checkpoint
  def body(total, xs):
    hidden_BxCxH, targets_BxC, weights_BxC = xs
    sums = _sums(head.lm_logits(hidden_BxCxH), targets_BxC, weights_BxC)
    return jax.tree.map(jnp.add, total, sums), None

  zero = {k: jnp.zeros((), jnp.float32) for k in ('loss', 'correct', 'count')}
  sums, _ = jax.lax.scan(body, zero, (chunks(hidden_BxLxH), chunks(targets_BxL),
                                      chunks(weights_BxL)))
  return sums


def head_sums(model, hidden_BxLxH, batch, masks, objective, positions_only):
  """{head: {loss, correct, count}}; `batch` holds the unmasked ids, the model saw masks'."""
  out = {}
  for head in HEADS[objective]:
    if head == 'mlm':
      out[head] = mlm_sums(model, hidden_BxLxH, batch['input_ids'], masks, positions_only)
    elif head == 'clm':
      out[head] = clm_sums(model, hidden_BxLxH, batch)
    else:
      out[head] = sentence_sums(model, hidden_BxLxH, batch['sentence_label'])
  return out


def head_counts(batch, masks, objective):
  """The denominators of each head, computable before the forward pass."""
  counts = {}
  for head in HEADS[objective]:
    if head == 'mlm':
      counts[head] = masks['weights'].sum()
    elif head == 'clm':
      counts[head] = clm_weights(batch['doc_ids']).sum()
    else:
      counts[head] = jnp.asarray(batch['sentence_label'].shape[0])
  return {k: jnp.maximum(v.astype(jnp.float32), 1.0) for k, v in counts.items()}
