"""Loading a pretraining run for use: latest or a given step, any device count, parameters
only."""

import jax
import numpy as np
import pytest
from flax import nnx

from ssljax import checkpoint, models, tokenizers
from ssljax.errors import UserError
from ssljax.inference import loading
from ssljax.pretrain import optimizer
from ssljax.pretrain.state import TrainState

from conftest import tiny_config


@pytest.fixture
def workdir(pretrained_run):
  return pretrained_run


@pytest.mark.slow
def test_load_latest_and_a_step(workdir):
  latest = loading.load(workdir)
  early = loading.load(workdir / 'checkpoints' / '3')
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


@pytest.mark.slow
def test_bad_paths(tmp_path, workdir):
  with pytest.raises(UserError, match='neither a pretraining workdir'):
    loading.load(tmp_path)
  with pytest.raises(UserError, match='no checkpoint 9'):
    loading.load(workdir / 'checkpoints' / '9')


def test_load_reads_only_the_parameters(corpus_file, tokenizer_file, tmp_path, monkeypatch):
  """A checkpoint written as `pretrain` writes it (full train state, data state, meta)."""
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file})
  tok = tokenizers.load(tokenizer_file)
  model_cfg = models.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size)
  params = nnx.to_pure_dict(nnx.state(models.build(model_cfg, nnx.Rngs(7))))
  state = TrainState.create(params, optimizer.build(config.optimizer, config.train.steps))
  manager = checkpoint.manager(tmp_path, 3)
  checkpoint.save(manager, 4, state, {'epoch': 0},
                  checkpoint.make_meta(config, tok.model_proto, tok.kind))
  manager.wait_until_finished()
  manager.close()

  def refuse(*args, **kwargs):
    raise AssertionError('loading.load built or restored the optimizer state')

  with monkeypatch.context() as patch:
    for module, name in ((optimizer, 'build'), (optimizer, 'schedule'),
                         (checkpoint, 'restore_latest')):
      patch.setattr(module, name, refuse)
    patch.setattr(TrainState, 'create', refuse)
    loaded = loading.load(tmp_path)
  assert loaded.step == 4 and loaded.model_cfg == model_cfg
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(loaded.model)),
               jax.device_get(params))


def test_init_from_is_loaded_by_the_caller_and_pretrain_says_so_when_it_is_not(corpus_file,
                                                                                 tmp_path):
  from ssljax.pretrain import loop
  assert loading.init_from(tiny_config(corpus_file)) is None
  config = tiny_config(corpus_file, **{'train.init_from': str(tmp_path / 'source')})
  with pytest.raises(UserError, match=r'train.init_from=.*no model was passed: call '
                     r'pretrain\(config, workdir, init=ssljax.inference.loading.init_from'):
    loop.setup(config, tmp_path / 'run')
  with pytest.raises(UserError, match='neither a pretraining workdir'):
    loading.init_from(config)


def test_a_run_writes_its_config_and_still_loads_as_a_run(workdir, tmp_path):
  """WORKDIR/config.json is the run's config, readable without a checkpoint; it does not
  make the workdir pass for a Hugging Face folder, even before the first checkpoint."""
  import json
  import shutil

  written = json.loads((workdir / 'config.json').read_text())
  loaded = loading.load(workdir)
  assert written == json.loads(loaded.config.to_json())
  assert written['train']['steps'] == 6 and written['model']['hidden_size'] == 32
  early = tmp_path / 'early'  # a run killed before its first checkpoint
  early.mkdir()
  shutil.copy(workdir / 'config.json', early)
  shutil.copy(workdir / 'metrics.jsonl', early)
  with pytest.raises(UserError, match='holds a run that has saved no checkpoint yet'):
    loading.load(early)
