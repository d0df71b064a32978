"""The synthetic tokenizer and token documents shared by test_data_examples.py and
test_data_batches.py (import the fixtures `tok` and `docs` into a test module to use them)."""

import pathlib

import numpy as np
import pytest

from ssljax import config, tokenizers as tokenizer_lib
from ssljax.data import corpus

SYNTHETIC = pathlib.Path(__file__).parent / 'fixtures' / 'synthetic.txt'

KEYS = ('input_ids', 'segment_ids', 'positions', 'doc_ids', 'word_start',
        'sentence_label')
GROUP = 4  # token ids per synthetic document: a token names the document it came from


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  data_cfg = config.base().data
  data_cfg.update(source='text', path=str(SYNTHETIC))
  prefix = tmp_path_factory.mktemp('tok') / 'sp'
  return tokenizer_lib.train(corpus.load_documents(data_cfg), 200, prefix)


@pytest.fixture(scope='module')
def docs(tok):
  """Random token documents over disjoint id sets; the set of a token is its document."""
  rng = np.random.default_rng(0)
  count = len(tok.normal_ids) // GROUP
  lengths = rng.integers(1, 1200, count)
  lengths[:3] = [1, 2, 29]  # shorter than one pair, the shortest pair, one exact chunk
  groups = tok.normal_ids[:count * GROUP].reshape(count, GROUP)
  return [rng.choice(g, n).astype(np.int32) for g, n in zip(groups, lengths)]
