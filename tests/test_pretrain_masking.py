"""MLM masking statistics and the masked-positions-only head's equivalence."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from ssljax import models as model
from ssljax.pretrain import masking, objectives

SPECIAL = np.arange(5, dtype=np.int32)  # [PAD] [UNK] [CLS] [SEP] [MASK]
NORMAL = np.arange(5, 100, dtype=np.int32)
VOCAB = {'special_ids': SPECIAL, 'normal_ids': NORMAL, 'mask_id': 4}


def mlm_cfg(**kw):
  return ml_collections.ConfigDict(dict(rate=0.15, mask_fraction=0.8, random_fraction=0.1,
                                        whole_word=False, masked_positions_only=True) | kw)


def batch(rows=512, length=64, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, 100, (rows, length)).astype(np.int32)
  lengths = rng.integers(10, length + 1, rows)
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
  ids[:, 0] = 2
  ids[np.arange(rows), lengths - 1] = 3
  ids[mask == 0] = 0
  word_start = rng.random((rows, length)) < 0.6
  return {'input_ids': ids, 'doc_ids': mask, 'word_start': word_start}


def draw(b, cfg, seed=0):
  k = masking.num_predictions(b['input_ids'].shape[1], cfg.rate)
  return jax.device_get(masking.mask_batch(jax.random.key(seed), jnp.arange(len(b['input_ids'])),
                                           b, VOCAB, cfg, k))


@pytest.mark.parametrize('rate', [0.15, 0.25])
def test_each_sequence_gets_exactly_round_rate_of_its_maskable_tokens(rate):
  """The README's promise, row by row: round(rate x maskable), at least one, at most the
  K predicted positions."""
  b = batch(rows=256)
  m = draw(b, mlm_cfg(rate=rate))
  maskable_B = ((b['doc_ids'] > 0) & ~np.isin(b['input_ids'], SPECIAL)).sum(axis=1)
  k = masking.num_predictions(b['input_ids'].shape[1], rate)
  want_B = np.clip(np.round(maskable_B * rate), np.minimum(1, maskable_B), k)
  np.testing.assert_array_equal(m['chosen'].sum(axis=1), want_B)


def test_rates_over_many_draws():
  b = batch()
  m = draw(b, mlm_cfg())
  ids, chosen = b['input_ids'], m['chosen']
  maskable = (b['doc_ids'] > 0) & ~np.isin(ids, SPECIAL)
  assert not (chosen & ~maskable).any(), 'a special token or padding was chosen'
  assert abs(chosen.sum() / maskable.sum() - 0.15) < 0.01
  out = m['masked_ids'][chosen]
  orig = ids[chosen]
  to_mask = (out == 4).mean()
  kept = (out == orig).mean()
  to_random = 1 - to_mask - kept
  assert abs(to_mask - 0.8) < 0.02 and abs(to_random - 0.1) < 0.02 and abs(kept - 0.1) < 0.02
  assert np.isin(out[(out != 4) & (out != orig)], NORMAL).all()
  np.testing.assert_array_equal(m['masked_ids'][~chosen], ids[~chosen])


def test_positions_list_exactly_the_chosen_tokens():
  b = batch(rows=64)
  m = draw(b, mlm_cfg())
  for row in range(64):
    listed = set(m['positions'][row][m['weights'][row] > 0].tolist())
    assert listed == set(np.flatnonzero(m['chosen'][row]).tolist())
    np.testing.assert_array_equal(m['targets'][row][m['weights'][row] > 0],
                                  b['input_ids'][row][sorted(listed)])


def test_masks_depend_on_seed_and_row_only():
  b = batch(rows=8)
  a = draw(b, mlm_cfg(), seed=3)
  np.testing.assert_array_equal(a['masked_ids'], draw(b, mlm_cfg(), seed=3)['masked_ids'])
  assert (a['masked_ids'] != draw(b, mlm_cfg(), seed=4)['masked_ids']).any()
  # rows 4..7 masked on their own (as one pmap device would) equal rows 4..7 of the batch
  k = masking.num_predictions(64, 0.15)
  half = {key: v[4:] for key, v in b.items()}
  part = masking.mask_batch(jax.random.key(3), jnp.arange(4, 8), half, VOCAB, mlm_cfg(), k)
  np.testing.assert_array_equal(part['masked_ids'], a['masked_ids'][4:])


def test_whole_word_masking_takes_whole_words():
  b = batch()
  m = draw(b, mlm_cfg(whole_word=True))
  chosen, starts = m['chosen'], b['word_start'] | np.isin(b['input_ids'], SPECIAL)
  maskable = (b['doc_ids'] > 0) & ~np.isin(b['input_ids'], SPECIAL)
  for row in range(len(chosen)):
    word = np.cumsum(starts[row]) - 1
    for w in np.unique(word[chosen[row]]):
      assert chosen[row][(word == w) & maskable[row]].all(), 'a word was masked in part'
  assert 0.10 < chosen.sum() / maskable.sum() <= 0.15


@pytest.mark.parametrize('whole_word', [False, True])
def test_masked_positions_only_gives_the_same_loss(whole_word):
  cfg = model.ModelConfig(arch='bert', vocab_size=100, hidden_size=16, num_layers=1,
                          num_heads=2, mlp_dim=32, max_len=64, dropout_rate=0.0,
                          attention_dropout_rate=0.0)
  net = model.build(cfg, nnx.Rngs(0))
  b = batch(rows=8)
  m = draw(b, mlm_cfg(whole_word=whole_word))
  hidden = net(dict(input_ids=m['masked_ids'], doc_ids=b['doc_ids'],
                    positions=np.broadcast_to(np.arange(64), (8, 64)),
                    segment_ids=np.zeros((8, 64), np.int32)))
  only = objectives.mlm_sums(net, hidden, b['input_ids'], m, positions_only=True)
  full = objectives.mlm_sums(net, hidden, b['input_ids'], m, positions_only=False)
  for key in ('loss', 'correct', 'count'):
    np.testing.assert_allclose(only[key], full[key], rtol=1e-5)
