"""Loading a pretraining run for use: latest or a given step, any device count."""

import jax
import numpy as np
import pytest
from flax import nnx

from ssljax import pretrained
from ssljax.errors import UserError


@pytest.fixture
def workdir(pretrained_run):
  return pretrained_run


def test_load_latest_and_a_step(workdir):
  latest = pretrained.load(workdir)
  early = pretrained.load(workdir / 'checkpoints' / '3')
  assert (latest.step, early.step) == (6, 3)
  assert latest.config.train.steps == 6 and latest.tokenizer.mask_id == 4
  ids = np.asarray(latest.tokenizer.encode(['def f(x): return x'])[0])[None]
  batch = dict(input_ids=ids, positions=np.arange(ids.shape[1])[None],
               segment_ids=np.zeros_like(ids), doc_ids=np.ones_like(ids))
  hidden = latest.model(batch)
  assert hidden.shape == (1, ids.shape[1], latest.model_cfg.hidden_size)
  assert not np.allclose(hidden, early.model(batch))
  params = nnx.to_pure_dict(nnx.state(latest.model))
  assert all(x.sharding.num_devices == 1 for x in jax.tree.leaves(params))


def test_bad_paths(tmp_path, workdir):
  with pytest.raises(UserError, match='neither a pretraining workdir'):
    pretrained.load(tmp_path)
  with pytest.raises(UserError, match='no checkpoint 9'):
    pretrained.load(workdir / 'checkpoints' / '9')
