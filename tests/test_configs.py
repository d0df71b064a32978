"""The shipped configs load, say how to run them, and build models of the published sizes."""

import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from ssljax import config as config_lib, models as model

CONFIGS = sorted(pathlib.Path(__file__).parents[1].glob('configs/*.py'))
# Published parameter counts (millions) with our vocabulary sizes; tolerance 3 %.
PUBLISHED = {'bert_base': 110, 'albert_base': 12, 'gpt_small': 110}


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_documents_its_command(path):
  config = config_lib.load(str(path))
  text = path.read_text()
  assert f'ssljax pretrain --config configs/{path.name}' in text
  assert 'Expected' in text
  if path.stem in PUBLISHED:
    cfg = model.ModelConfig.from_config(config.model, vocab_size=config.tokenizer.vocab_size)
    abstract = nnx.eval_shape(lambda: model.build(cfg, nnx.Rngs(0)))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract)))
    assert abs(count / 1e6 - PUBLISHED[path.stem]) / PUBLISHED[path.stem] < 0.03, count
