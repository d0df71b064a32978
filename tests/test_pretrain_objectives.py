"""Each objective runs end to end and its loss falls in a short CPU run on the embedded
corpus. Whether the heads learn the right thing is checked where it can fail:
test_context_use.py (MLM, CLM) and test_pretrain_sentence_heads.py (NSP, SOP)."""

import numpy as np
import pytest

from ssljax import tokenizers as tokenizer
from ssljax.data import corpus
from ssljax.pretrain import loop as train, metrics

from conftest import tiny_config

pytestmark = pytest.mark.slow  # 40 steps of each objective

ARCH = {'mlm': 'bert', 'mlm_nsp': 'bert', 'mlm_sop': 'albert', 'clm': 'gpt'}


@pytest.fixture(scope='module')
def embedded_tokenizer(tmp_path_factory):
  prefix = tmp_path_factory.mktemp('embedded') / 'tok'
  tokenizer.train(list(corpus.embedded_documents()), 1000, prefix)
  return prefix.with_suffix('.model')


@pytest.mark.parametrize('objective', ARCH)
def test_loss_falls_on_the_embedded_corpus(objective, embedded_tokenizer, tmp_path):
  config = tiny_config('', **{
      'data.source': 'embedded', 'tokenizer.path': embedded_tokenizer, 'objective': objective,
      'model.arch': ARCH[objective], 'train.steps': 40, 'train.checkpoint_every': 40,
      'optimizer.learning_rate': 3e-3, 'model.hidden_size': 64, 'model.mlp_dim': 128})
  train.pretrain(config, tmp_path)
  rows = [r for r in metrics.read(tmp_path) if 'loss' in r]
  first = np.mean([r['loss'] for r in rows[:5]])
  last = np.mean([r['loss'] for r in rows[-5:]])
  assert last < 0.9 * first, (first, last)  # a 10 % fall in 40 steps
  assert np.isfinite([r['grad_norm'] for r in rows]).all()
