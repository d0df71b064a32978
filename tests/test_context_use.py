"""Pretraining uses context: on a language where each word is fixed by the two before it,
MLM and CLM losses fall far below the unigram entropy, which is all a model that ignores
context (the unigram plateau) can reach.

The language: 32 words, x[t] = TABLE[x[t-2], x[t-1]] for a random table, documents started
from two random words. Every word is about equally frequent, so the unigram entropy is
about ln 32 = 3.47 nats; knowing only the previous word leaves ~ln 32 too, so a low loss
needs attention to two positions. Runs in about a minute on 2 cores.
"""

import json
import math

import numpy as np
import pytest

from ssljax.pretrain import loop

from conftest import tiny_config

pytestmark = pytest.mark.slow  # 300 steps of each objective

WORDS = 32
# Eval loss must fall below this share of the unigram entropy.
THRESHOLD = 0.35


def _language(path, docs=600, length=48, seed=0):
  rng = np.random.default_rng(seed)
  table = rng.integers(WORDS, size=(WORDS, WORDS))
  lines = []
  for _ in range(docs):
    x = list(rng.integers(WORDS, size=2))
    while len(x) < length:
      x.append(table[x[-2], x[-1]])
    lines.append(' '.join(f'w{i}' for i in x))
  path.write_text('\n\n'.join(lines))
  counts = np.bincount(np.concatenate([[int(w[1:]) for w in line.split()] for line in lines]),
                       minlength=WORDS)
  p = counts / counts.sum()
  return path, float(-(p * np.log(p)).sum())


@pytest.mark.parametrize('objective', ['mlm', 'clm'])
def test_loss_falls_far_below_the_unigram_entropy(objective, tmp_path):
  corpus, entropy = _language(tmp_path / 'lang.txt')
  overrides = {'objective': objective, 'model.arch': 'gpt' if objective == 'clm' else 'bert',
               'model.pre_ln': True, 'model.positions': 'rope', 'model.hidden_size': 64,
               'model.mlp_dim': 128,
               'tokenizer.model_type': 'word', 'tokenizer.vocab_size': 64,
               'mlm.rate': 0.25, 'optimizer.learning_rate': 3e-3,
               'optimizer.warmup_steps': 20, 'train.batch_size': 32, 'train.steps': 300,
               'train.log_every': 50, 'train.eval_every': 300, 'train.eval_batches': 8,
               'train.checkpoint_every': 300, 'data.eval_fraction': 0.05}
  final = loop.pretrain(tiny_config(corpus, **overrides), tmp_path / 'run')
  head = 'clm' if objective == 'clm' else 'mlm'
  rows = [json.loads(line) for line in (tmp_path / 'run' / 'metrics.jsonl').open()]
  curve = [(r['step'], round(r[f'{head}_loss'], 3)) for r in rows if f'{head}_loss' in r]
  print(f'{objective}: unigram entropy {entropy:.3f}, curve {curve}, '
        f'eval {final[f"eval_{head}_loss"]:.3f}')
  assert entropy > math.log(WORDS) - 0.15  # close to flat, as designed
  assert final[f'eval_{head}_loss'] < THRESHOLD * entropy
