"""The small-budget recipe options (Cramming): gated GELU, no biases, a triangular schedule
and a time budget that fixes the step count once, so a resumed run stays exact."""

import json
import time

import jax
import numpy as np
import pytest
from flax import nnx

from ssljax import config as config_lib, models
from ssljax.errors import UserError
from ssljax.models import layers
from ssljax.pretrain import budget, loop, optimizer

from conftest import run_steps, tiny_config


def _tiny_model(**overrides):
  c = config_lib.base()
  c.model.update(dict(hidden_size=16, num_heads=2, mlp_dim=24, num_layers=1) | overrides)
  return models.build(models.ModelConfig.from_config(c.model, vocab_size=50), nnx.Rngs(0))


def test_geglu_gates_one_half_of_the_mlp_input_with_the_other():
  block = _tiny_model(activation='geglu').stack.layers[0]
  assert block.mlp_in.kernel.shape == (16, 48)
  x = np.random.default_rng(0).normal(size=(2, 3, 16)).astype(np.float32)
  hidden = np.asarray(block.mlp_in(x))
  gate, value = hidden[..., :24], hidden[..., 24:]
  want = np.asarray(block.mlp_out(jax.nn.gelu(gate, approximate=False) * value))
  got = np.asarray(block.mlp_out(layers.mlp_activation(block.cfg)(hidden)))
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_no_biases_leaves_only_kernels_scales_and_embeddings():
  params = nnx.to_pure_dict(nnx.state(_tiny_model(use_bias=False, pre_ln=True)))
  names = {path[-1].key for path, _ in jax.tree_util.tree_leaves_with_path(params)}
  assert names == {'kernel', 'scale', 'embedding'}


def test_warmup_fraction_makes_a_triangle():
  c = config_lib.base().optimizer
  c.update(dict(learning_rate=1.0, warmup_fraction=0.5, decay='linear', end_learning_rate=0.0))
  lr = optimizer.schedule(c, 100)
  values = np.array([float(lr(s)) for s in range(101)])
  assert values.argmax() == 50 and values[50] == pytest.approx(1.0)
  assert values[25] == pytest.approx(0.5) and values[75] == pytest.approx(0.5)
  assert values[100] == pytest.approx(0.0)


def test_bad_recipe_values_are_one_line_errors():
  with pytest.raises(UserError, match='warmup_fraction'):
    config_lib.load(None, ['optimizer.warmup_fraction=1.5'])
  with pytest.raises(UserError, match='time_budget'):
    config_lib.load(None, ['train.time_budget=-1.0'])
  with pytest.raises(UserError, match="model.activation='swish'"):
    config_lib.load(None, ['model.activation=swish'])
  with pytest.raises(UserError, match="model.positions='alibi'"):
    config_lib.load(None, ['model.positions=alibi'])


@pytest.mark.slow
def test_recipe_options_train_and_resume_exactly(corpus_file, tokenizer_file, tmp_path):
  overrides = {'tokenizer.path': tokenizer_file, 'objective': 'mlm', 'model.pre_ln': True,
               'model.activation': 'geglu', 'model.use_bias': False,
               'model.dropout_rate': 0.0, 'model.attention_dropout_rate': 0.0,
               'mlm.rate': 0.25, 'optimizer.warmup_fraction': 0.5, 'train.steps': 6}
  config = tiny_config(corpus_file, **overrides)
  losses, params = run_steps(config, tmp_path / 'straight', 6)
  assert all(np.isfinite(losses))
  loop.pretrain(config, tmp_path / 'resumed', stop_after=3)
  loop.pretrain(config, tmp_path / 'resumed')
  rows = [json.loads(line) for line in (tmp_path / 'resumed' / 'metrics.jsonl').open()]
  assert {r['step']: r['loss'] for r in rows if 'loss' in r}[6] == pytest.approx(losses[5],
                                                                                rel=1e-6)


@pytest.mark.slow
def test_time_budget_fixes_the_step_count_once(corpus_file, tokenizer_file, tmp_path):
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file,
                                       'train.time_budget': 2.0})
  sized = budget.sized_config(config, tmp_path, loop.setup, started=time.perf_counter())
  recorded = json.loads((tmp_path / budget.FILE).read_text())
  assert sized.train.steps == recorded['steps'] >= 1
  assert recorded['seconds_per_step'] > 0
  # Later runs read the number back: a resume sizes nothing again.
  (tmp_path / budget.FILE).write_text(json.dumps(recorded | {'steps': 7}))
  assert budget.sized_config(config, tmp_path, None, 0.0).train.steps == 7


@pytest.mark.slow
def test_a_spent_budget_stops_with_a_checkpoint(corpus_file, tokenizer_file, tmp_path,
                                                monkeypatch):
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file,
                                       'train.time_budget': 1.0, 'train.log_every': 1})
  (tmp_path / budget.FILE).write_text(json.dumps({'steps': 6}))
  calls = iter([False, True])
  monkeypatch.setattr(budget, 'spent', lambda started, minutes: next(calls, True))
  loop.pretrain(config, tmp_path)
  steps = [int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit()]
  assert max(steps) == 2
  monkeypatch.setattr(budget, 'spent', lambda started, minutes: False)
  loop.pretrain(config, tmp_path)  # the rerun continues to the recorded step count
  assert max(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()
             if p.name.isdigit()) == 6


def test_rope_scores_depend_on_relative_positions_only():
  rng = np.random.default_rng(0)
  q, k = rng.normal(size=(2, 1, 1, 1, 8)).astype(np.float32)
  score = lambda i, j: float(np.sum(np.asarray(layers.rope(q, np.array([[i]]))) *
                                    np.asarray(layers.rope(k, np.array([[j]])))))
  assert score(3, 1) == pytest.approx(score(12, 10), rel=1e-5)
  assert score(3, 1) != pytest.approx(score(3, 2), rel=1e-3)
  assert score(5, 5) == pytest.approx(float(np.sum(q * k)), rel=1e-5)  # no rotation between equals


def test_rope_models_have_no_position_table():
  params = nnx.to_pure_dict(nnx.state(_tiny_model(positions='rope', pre_ln=True)))
  assert 'position' not in params['embeddings']


@pytest.mark.parametrize('text', ['{"steps": 1', '\xff\xfe', '{"seconds": 3}', '{"steps": "7"}',
                                  '[]', '{"steps": 0}'])
def test_a_damaged_budget_file_is_one_line(corpus_file, tmp_path, text):
  config = tiny_config(corpus_file, **{'train.time_budget': 2.0})
  (tmp_path / budget.FILE).write_bytes(text.encode('latin1'))
  with pytest.raises(UserError) as raised:
    budget.sized_config(config, tmp_path, None, 0.0)
  message = str(raised.value)
  assert '\n' not in message and message.startswith(f'{tmp_path / budget.FILE} holds no step')
  assert 'delete it to measure the step rate again' in message
