"""A resume never loses a run: every step's config is checked (by `setup`, before the
optimizer is built) before any array is read, a config change sets nothing aside, and no run
starts from step 0 beside checkpoints that do not restore unless train.fresh_start says so."""

import dataclasses

import jax
import pytest

from ssljax import checkpoint, config as config_lib
from ssljax.errors import InexactResume, NonFiniteLoss, ResumeMismatch, UserError
from ssljax.pretrain import loop as train, preflight

from conftest import pretrained_run_config as _config


def _steps(workdir):
  return sorted(p.name for p in (workdir / 'checkpoints').iterdir())


def test_another_config_is_refused_by_every_steps_metadata(run_copy, corpus_file,
                                                           tokenizer_file):
  (run_copy / 'checkpoints' / '6' / 'meta' / 'metadata').unlink()
  with pytest.raises(ResumeMismatch, match=r'checkpoints/3 holds a run with another config '
                     r'\(model.mlp_dim: 64 -> 128\)') as raised:
    train.setup(_config(corpus_file, tokenizer_file, **{'model.mlp_dim': 128}), run_copy)
  assert (raised.value.step, raised.value.differences) == (3, ['model.mlp_dim: 64 -> 128'])
  assert _steps(run_copy) == ['3', '6']  # nothing set aside


def test_no_fresh_start_beside_checkpoints_that_do_not_restore(run_copy, corpus_file,
                                                               tokenizer_file):
  for step in ('3', '6'):
    for f in (run_copy / 'checkpoints' / step / 'state').rglob('*'):
      if f.is_file():
        f.write_bytes(b'garbage')
  run = train.setup(_config(corpus_file, tokenizer_file), run_copy)
  with pytest.raises(UserError, match=r'holds unreadable-3, unreadable-6 but no step '
                     r'restores; nothing was deleted.*train.fresh_start=true'):
    train.restore_or_init(run)
  run.manager.close()
  run = train.setup(_config(corpus_file, tokenizer_file, **{'train.fresh_start': True}),
                    run_copy)
  assert train.restore_or_init(run)[1] == 0
  run.manager.close()
  assert _steps(run_copy) == ['unreadable-3', 'unreadable-6']


def test_another_objective_is_one_line(run_copy, corpus_file, tokenizer_file):
  with pytest.raises(UserError, match=r"another config \(objective: 'mlm_nsp' -> 'mlm'\)"):
    train.setup(_config(corpus_file, tokenizer_file, objective='mlm'), run_copy)


@pytest.mark.parametrize('key, value', [('seed', 1), ('batch_size', 8), ('grad_accum', 2),
                                        ('dropout_rng', 'rbg')])
def test_a_change_that_breaks_exactness_is_refused(run_copy, corpus_file, tokenizer_file, key,
                                                   value):
  """train.seed, batch_size, grad_accum and dropout_rng set the data order, masks and
  dropout: a resume under another value would silently be another run."""
  before = sorted(p.name for p in run_copy.rglob('*'))
  with pytest.raises(InexactResume) as raised:
    train.pretrain(_config(corpus_file, tokenizer_file, **{'train.steps': 9,
                                                            'train.extend': 'decay',
                                                            f'train.{key}': value}), run_copy)
  assert list(raised.value.changed) == [key] and raised.value.changed[key][1] == value
  message = str(raised.value)
  assert '\n' not in message and f'under train.{key}={value!r}' in message
  assert 'new --workdir' in message and 'train.init_from=' in message
  assert f'--set train.{key}=' in message
  assert sorted(p.name for p in run_copy.rglob('*')) == before  # nothing written or moved


def test_a_change_that_keeps_exactness_continues(run_copy, corpus_file, tokenizer_file):
  """train.log_every and the like change no batch: the run continues."""
  train.pretrain(_config(corpus_file, tokenizer_file, **{
      'train.log_every': 2, 'train.steps': 9, 'train.extend': 'decay'}), run_copy)
  assert '9' in _steps(run_copy)


def test_a_run_written_before_a_key_existed_resumes():
  """A checkpoint's saved config lacks the keys added since (model.attention, model.norm):
  they count as their defaults, which keep the old behaviour; a changed value still stops."""
  config = config_lib.load(None, [])
  saved = config.to_dict()
  for key in ('attention', 'norm', 'rope_base'):
    del saved['model'][key]
  preflight.resumable_from(config, {'config': saved}, 'w', 3)
  saved['model']['mlp_dim'] += 1
  with pytest.raises(UserError, match='another config .model.mlp_dim'):
    preflight.resumable_from(config, {'config': saved}, 'w', 3)


def test_keep_checkpoints_is_at_least_one():
  with pytest.raises(UserError, match=r'train.keep_checkpoints=0 must lie in \[1, inf\)'):
    config_lib.load(None, ['train.keep_checkpoints=0'])


def test_a_nan_loss_right_after_a_resume_names_the_checkpoint(run_copy, corpus_file,
                                                              tokenizer_file):
  """Step 6 holds finite weights that diverge at once (a state saved as a run blew up, or
  bytes of a step no checksum guards): the rerun's one line says to set that step aside,
  not only to lower the learning rate, so reruns do not loop on it."""
  config = _config(corpus_file, tokenizer_file, **{'train.steps': 9, 'train.extend': 'decay'})
  run = train.setup(config, run_copy)
  step, state, data, meta = checkpoint.restore_latest(run.manager, run.strategy.abstract)
  state = dataclasses.replace(state, params=jax.tree.map(lambda x: x * 1e20, state.params))
  (run_copy / 'checkpoints' / '6').rename(run_copy / 'kept-6')
  run.manager.reload()
  checkpoint.save(run.manager, step, state, data, meta)
  run.manager.close()
  with pytest.raises(NonFiniteLoss) as raised:
    train.pretrain(config, run_copy)
  assert raised.value.step == 7
  message = str(raised.value)
  assert '\n' not in message and 'after resuming from' in message
  assert f'mv {run_copy}/checkpoints/6 {run_copy}/checkpoints/unreadable-6' in message
  assert _steps(run_copy) == ['3', '6']  # nothing after it saved, nothing moved
