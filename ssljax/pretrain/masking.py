"""BERT masking drawn on device, per example, from a key derived from (seed, step, row).

Each sequence gets exactly round(rate * maskable tokens) chosen positions (BERT's recipe),
so the masked-positions-only head has a fixed size K = ceil(rate * L). Of the chosen
positions `mask_fraction` become [MASK], `random_fraction` a random non-special token, the
rest stay. Keys depend on the global row index, so jit, pmap and any mesh draw the same masks.
"""

import math

import jax
import jax.numpy as jnp


def num_predictions(seq_len: int, rate: float) -> int:
  return max(1, math.ceil(seq_len * rate))


def _choose_tokens(key, maskable_L, num_L):
  score_L = jnp.where(maskable_L, jax.random.uniform(key, maskable_L.shape), 2.0)
  rank_L = jnp.argsort(jnp.argsort(score_L))
  return rank_L < num_L


def _choose_words(key, maskable_L, word_start_L, num_L):
  """Whole words in random order while their tokens fit in the budget."""
  length = maskable_L.shape[0]
  word_L = jnp.cumsum(word_start_L | (jnp.arange(length) == 0)) - 1
  word_len_W = jax.ops.segment_sum(maskable_L.astype(jnp.int32), word_L, length)
  score_W = jnp.where(word_len_W > 0, jax.random.uniform(key, (length,)), 2.0)
  order_W = jnp.argsort(score_W)
  fits_sorted_W = jnp.cumsum(word_len_W[order_W]) <= num_L
  chosen_W = jnp.zeros(length, bool).at[order_W].set(fits_sorted_W) & (word_len_W > 0)
  return chosen_W[word_L] & maskable_L


def mask_example(key, ids_L, real_L, word_start_L, special_ids, normal_ids, mask_id,
                 mlm, num_predictions_k, whole_word=False):
  """Masks one sequence; returns the masked ids and the K positions to predict."""
  k_choose, k_action, k_random = jax.random.split(key, 3)
  maskable_L = real_L & ~jnp.isin(ids_L, special_ids)
  num = jnp.round(maskable_L.sum() * mlm.rate).astype(jnp.int32)
  num = jnp.clip(num, jnp.minimum(1, maskable_L.sum()), num_predictions_k)
  if whole_word:
    chosen_L = _choose_words(k_choose, maskable_L, word_start_L, num)
  else:
    chosen_L = _choose_tokens(k_choose, maskable_L, num)
  action_L = jax.random.uniform(k_action, ids_L.shape)
  random_L = normal_ids[jax.random.randint(k_random, ids_L.shape, 0, normal_ids.shape[0])]
  masked_L = jnp.where(chosen_L & (action_L < mlm.mask_fraction), mask_id, ids_L)
  use_random = (action_L >= mlm.mask_fraction) & (
      action_L < mlm.mask_fraction + mlm.random_fraction)
  masked_L = jnp.where(chosen_L & use_random, random_L, masked_L)
  positions_K = jnp.argsort(~chosen_L, stable=True)[:num_predictions_k]
  return {
      'masked_ids': masked_L,
      'chosen': chosen_L,
      'positions': positions_K,
      'targets': ids_L[positions_K],
      'weights': chosen_L[positions_K].astype(jnp.float32),
  }


def mask_batch(key, rows_B, batch, vocab, mlm, num_predictions_k):
  """Masks a batch; `rows_B` are the global row indices that make each example's key."""
  keys_B = jax.vmap(lambda r: jax.random.fold_in(key, r))(rows_B)
  special, normal = jnp.asarray(vocab['special_ids']), jnp.asarray(vocab['normal_ids'])
  fn = lambda k, ids, m, w: mask_example(
      k, ids, m, w, special, normal, vocab['mask_id'], mlm, num_predictions_k, mlm.whole_word)
  return jax.vmap(fn)(keys_B, batch['input_ids'], batch['doc_ids'] > 0, batch['word_start'])
