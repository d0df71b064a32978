"""Another train.steps on a run with checkpoints: never a silent jump of the learning rate.

Longer or shorter needs train.extend (decay or rewarm), whose segment is saved with each
checkpoint so that an extension resumed halfway equals one run in one go; the same or fewer
steps than done says so and trains nothing.
"""

import json
import shutil

import jax
import numpy as np
import pytest

from ssljax import checkpoint, config as config_lib
from ssljax.errors import UserError
from ssljax.pretrain import loop as train, optimizer

from conftest import pretrained_run_config as _config


def _opt(**extra):
  o = config_lib.base().optimizer
  o.update(dict(learning_rate=1e-3, warmup_steps=20, end_learning_rate=0.0) | extra)
  return o


@pytest.mark.parametrize('decay', ['linear', 'cosine'])
def test_decay_continues_from_the_rate_reached(decay):
  lr = optimizer.schedule(_opt(decay=decay), 100, [(60, 150, 'decay')])
  old = optimizer.schedule(_opt(decay=decay), 100)
  rates = np.asarray([float(lr(t)) for t in range(151)])
  np.testing.assert_allclose(rates[:61], [float(old(t)) for t in range(61)], rtol=1e-6)
  assert np.all(np.diff(rates[60:]) <= 1e-9)  # falls from step 60 on, no jump
  assert rates[150] == pytest.approx(0.0, abs=1e-9)
  assert abs(rates[61] - rates[60]) < rates[60] / 50


def test_rewarm_warms_up_to_the_peak_again_then_decays():
  lr = optimizer.schedule(_opt(), 100, [(100, 300, 'rewarm')])
  rates = np.asarray([float(lr(t)) for t in range(301)])
  assert rates[100] == pytest.approx(0.0, abs=1e-9)  # the first cycle's end
  assert rates[120] == pytest.approx(1e-3)  # warmed up again over optimizer.warmup_steps
  assert np.all(np.diff(rates[100:121]) > 0) and np.all(np.diff(rates[120:]) < 0)
  assert np.max(np.abs(np.diff(rates))) <= 1e-3 / 20 + 1e-9  # no step larger than warmup's


def test_two_extensions_chain():
  lr = optimizer.schedule(_opt(), 100, [(50, 150, 'decay'), (120, 200, 'rewarm')])
  at_120 = float(optimizer.schedule(_opt(), 100, [(50, 150, 'decay')])(120))
  assert float(lr(120)) == pytest.approx(at_120)
  assert float(lr(140)) == pytest.approx(1e-3)



def _rates(workdir):
  lines = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  return {r['step']: r['learning_rate'] for r in lines if 'learning_rate' in r}


def test_a_longer_run_without_extend_is_one_line(run_copy, corpus_file, tokenizer_file):
  with pytest.raises(UserError, match=r'trained to step 6 on a 6-step schedule; '
                     r'train.steps=9 changes it: set train.extend=decay .* or use '
                     r'train.steps=6$'):
    train.setup(_config(corpus_file, tokenizer_file, **{'train.steps': 9}), run_copy)


@pytest.mark.parametrize('steps', [6, 4])
def test_as_many_or_fewer_steps_train_nothing_and_say_so(run_copy, corpus_file, tokenizer_file,
                                                         capsys, steps):
  assert train.pretrain(_config(corpus_file, tokenizer_file, **{'train.steps': steps}),
                        run_copy) == {}
  assert f'is at step 6; train.steps={steps}: nothing to train' in capsys.readouterr().err
  assert sorted(p.name for p in (run_copy / 'checkpoints').iterdir()) == ['3', '6']


def _params(workdir):
  mgr = checkpoint.manager(workdir, 3, async_save=False)
  try:
    step = mgr.latest_step()
    meta = checkpoint.read_meta(mgr, step)
    state = mgr.restore(step, args=checkpoint.ocp.args.Composite(
        state=checkpoint.ocp.args.StandardRestore()))['state']
  finally:
    mgr.close()
  return step, meta, jax.tree.leaves(state['params'])


def test_an_extension_resumed_halfway_equals_one_in_one_go(pretrained_run, tmp_path,
                                                           corpus_file, tokenizer_file, capsys):
  config = _config(corpus_file, tokenizer_file,
                   **{'train.steps': 12, 'train.extend': 'rewarm'})
  whole, halves = tmp_path / 'whole', tmp_path / 'halves'
  for workdir in (whole, halves):
    shutil.copytree(pretrained_run, workdir)
  train.pretrain(config, whole)
  assert ('continuing from step 6 of 12 (train.extend=rewarm from step 6: the learning rate, '
          '0 there, warms up to 0.001, then goes to 0 at step 12)' in capsys.readouterr().err)
  train.pretrain(config, halves, stop_after=9)
  train.pretrain(config, halves)
  rates = _rates(whole)
  assert rates == _rates(halves)
  # logged at step t: the rate step t ran with, lr(t - 1); warmup_steps=2 from 0 at step 6
  assert [rates[t] for t in range(7, 13)] == pytest.approx([0, 5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4])
  (step_a, meta_a, params_a), (step_b, meta_b, params_b) = _params(whole), _params(halves)
  assert step_a == step_b == 12
  assert meta_a['schedule'] == meta_b['schedule'] == [[0, 6, ''], [6, 12, 'rewarm']]
  for a, b in zip(params_a, params_b):
    np.testing.assert_array_equal(a, b)


def test_an_extension_from_mid_run_decays_from_where_the_rate_is(run_copy, corpus_file,
                                                                 tokenizer_file):
  shutil.rmtree(run_copy / 'checkpoints' / '6')
  run = train.setup(_config(corpus_file, tokenizer_file,
                            **{'train.steps': 12, 'train.extend': 'decay'}), run_copy)
  run.manager.close()
  assert run.schedule == [[0, 6, ''], [3, 12, 'decay']]
  lr = optimizer.schedule(run.config.optimizer, 6, [(3, 12, 'decay')])
  assert float(lr(3)) == pytest.approx(7.5e-4) and float(lr(12)) == pytest.approx(0.0)
