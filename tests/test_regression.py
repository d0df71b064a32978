"""Pinned numbers of a fixed tiny run (nanodo style): the first steps' loss and gradient norm.

THESE PIN THE NUMERICS. Update them only when a change is meant to alter the math (model
init, masking, loss normalisation, optimizer), and say why in the commit message. A refactor
that moves these numbers has changed what the code computes.

The run: conftest's tiny_config (2 layers x 32, batch 16, sequence 32, dropout off) on the
committed synthetic corpus (tests/fixtures/synthetic.txt, not the embedded corpus, whose text
follows the Python version), objective mlm_nsp, 3 steps, 1 device, with a 200-piece tokenizer
trained on that corpus. The token and batch checksums are pinned first and exactly, so a
change of the tokenizer or of the data pipeline is told apart from a change of the math.
"""

import pathlib

import numpy as np
import pytest

from ssljax import config as config_lib, tokenizers
from ssljax.data import corpus
from ssljax.pretrain import loop, metrics

from conftest import tiny_config

SYNTHETIC = pathlib.Path(__file__).parent / 'fixtures' / 'synthetic.txt'
RTOL = 1e-4  # float32 on CPU: reduction order may differ between XLA versions, not more

# (loss, grad_norm) of steps 1, 2, 3.
PINNED = {  # with sentencepiece 0.2.2's tokenizer (pyproject bounds it below 0.2.3)
    1: (6.013373374938965, 1.7091395854949951),
    2: (5.986183166503906, 1.6629749536514282),
    3: (5.987854480743408, 1.5985398292541504),
}
TOKENS = (1428, 65387)  # (number of tokens, sum of ids) of the encoded corpus
FIRST_BATCH = (13476, 169, 11)  # (sum of input_ids, sum of segment_ids, sum of sentence_label)

WHY = ('these pin the numerics; update them only when a change is meant to alter the math '
       '(model init, masking, loss normalisation, optimizer), and say why in the commit')


def _documents():
  data = config_lib.base().data
  data.update(source='text', path=str(SYNTHETIC))
  return corpus.load_documents(data)


@pytest.fixture(scope='module')
def tokenizer_file(tmp_path_factory):
  prefix = tmp_path_factory.mktemp('regression') / 'tok'
  tokenizers.train(_documents(), 200, prefix)
  return prefix.with_suffix('.model')


def _config(tokenizer_file):
  return tiny_config(SYNTHETIC, **{'tokenizer.path': tokenizer_file,
                                   'tokenizer.vocab_size': 200, 'objective': 'mlm_nsp',
                                   'train.steps': 3, 'train.progress': False,
                                   'data.eval_fraction': 0.0, 'mesh.data': 1})


def test_tokens_and_first_batch_are_pinned(tokenizer_file, tmp_path):
  ids = tokenizers.load(tokenizer_file).encode(_documents())
  tokens = (sum(map(len, ids)), int(sum(int(np.sum(x)) for x in ids)))
  assert tokens == TOKENS, f'the tokenizer changed: {tokens}'
  batch = next(loop.setup(_config(tokenizer_file), tmp_path).batches)
  first = tuple(int(batch[k].sum()) for k in ('input_ids', 'segment_ids', 'sentence_label'))
  assert first == FIRST_BATCH, f'the examples or batches changed: {first}'


def test_first_steps_are_pinned(tokenizer_file, tmp_path):
  loop.pretrain(_config(tokenizer_file), tmp_path)
  rows = {r['step']: r for r in metrics.read(tmp_path) if 'loss' in r}
  got = {step: (rows[step]['loss'], rows[step]['grad_norm']) for step in PINNED}
  np.testing.assert_allclose(np.array([got[s] for s in PINNED]),
                             np.array([PINNED[s] for s in PINNED], dtype=float), rtol=RTOL,
                             err_msg=f'{got}: {WHY}')
