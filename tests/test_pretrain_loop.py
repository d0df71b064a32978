"""The loop: exact resume, preemption, corrupt checkpoints, NaN, device-count changes,
the cadence rule `due` and hooks."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from ssljax import checkpoint
from ssljax.errors import UserError
from ssljax.inference import loading
from ssljax.pretrain import loop as train, metrics

from conftest import tiny_config, tiny_overrides


def losses(workdir):
  return {r['step']: r['loss'] for r in metrics.read(workdir) if 'loss' in r}


def final_params(config, workdir):
  run = train.setup(config, workdir)
  state, step = train.restore_or_init(run)
  return step, jax.device_get(run.strategy.to_save(state).params)


def assert_same_params(a, b, atol=0.0):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=0), a, b)


@pytest.fixture
def config20(corpus_file, tokenizer_file):
  return tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file, 'train.steps': 20,
                                     'train.checkpoint_every': 5, 'model.dropout_rate': 0.1})


@pytest.mark.slow
def test_resume_continues_exactly(config20, tmp_path):
  train.pretrain(config20, tmp_path / 'straight')
  train.pretrain(config20, tmp_path / 'resumed', stop_after=10)
  assert max(losses(tmp_path / 'resumed')) == 10
  train.pretrain(config20, tmp_path / 'resumed')
  assert losses(tmp_path / 'resumed') == losses(tmp_path / 'straight')
  step_a, params_a = final_params(config20, tmp_path / 'straight')
  step_b, params_b = final_params(config20, tmp_path / 'resumed')
  assert step_a == step_b == 20
  assert_same_params(params_a, params_b)


@pytest.mark.slow
@pytest.mark.parametrize('first,second', [(8, 1), (1, 8)])
def test_checkpoint_restores_on_another_device_count(first, second, config20, tmp_path):
  config20.mesh.data = first
  train.pretrain(config20, tmp_path / 'run', stop_after=10)
  config20.mesh.data = second
  train.pretrain(config20, tmp_path / 'run')
  config20.mesh.data = 1
  train.pretrain(config20, tmp_path / 'single')
  a, b = losses(tmp_path / 'run'), losses(tmp_path / 'single')
  np.testing.assert_allclose([a[s] for s in sorted(a)], [b[s] for s in sorted(b)], rtol=2e-5)


@pytest.mark.slow
def test_sigterm_saves_and_the_rerun_matches(corpus_file, tokenizer_file, tmp_path):
  overrides = tiny_overrides(corpus_file, **{'tokenizer.path': tokenizer_file,
                                             'train.steps': 400, 'train.checkpoint_every': 1000})
  command = [sys.executable, '-m', 'ssljax.cli', 'pretrain', '--workdir', str(tmp_path / 'run')]
  command += [a for o in overrides for a in ('--set', o)]
  env = dict(os.environ, XLA_FLAGS='', PYTHONUNBUFFERED='1',
             JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir)
  proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  log_file = tmp_path / 'run' / 'metrics.jsonl'
  deadline = time.time() + 120
  while time.time() < deadline and not (log_file.exists() and
                                        len(log_file.read_text().splitlines()) >= 3):
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert 'SIGTERM at step' in out
  stopped = int(out.split('SIGTERM at step ')[1].split(':')[0])
  assert 3 <= stopped < 400
  assert checkpoint.manager(tmp_path / 'run', 3).latest_step() == stopped
  rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file, 'train.steps': 400,
                                       'train.checkpoint_every': 1000})
  train.pretrain(config, tmp_path / 'straight')
  a, b = losses(tmp_path / 'run'), losses(tmp_path / 'straight')
  assert sorted(a) == list(range(1, 401))
  np.testing.assert_allclose([a[s] for s in sorted(a)], [b[s] for s in sorted(b)], rtol=1e-6)


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back(config20, tmp_path, caplog):
  config20.train.steps = 10
  train.pretrain(config20, tmp_path / 'run')
  for f in (tmp_path / 'run' / 'checkpoints' / '10' / 'state').rglob('*'):
    if f.is_file():
      f.write_bytes(b'garbage')
  with caplog.at_level(logging.WARNING):
    step, _ = final_params(config20, tmp_path / 'run')
  assert step == 5
  assert 'could not be restored' in caplog.text
  assert (tmp_path / 'run' / 'checkpoints' / 'unreadable-10').is_dir()
  before = losses(tmp_path / 'run')
  (tmp_path / 'run' / 'metrics.jsonl').unlink()
  train.pretrain(config20, tmp_path / 'run')
  after = losses(tmp_path / 'run')
  assert sorted(after) == list(range(6, 11))
  np.testing.assert_allclose([after[s] for s in range(6, 11)],
                             [before[s] for s in range(6, 11)], rtol=1e-6)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_good_checkpoint(config20, tmp_path):
  config20.optimizer.learning_rate = 1e30
  config20.optimizer.clip_norm = 0.0
  config20.optimizer.warmup_steps = 0
  config20.train.checkpoint_every = 1
  with pytest.raises(UserError, match=r'loss is (nan|inf).*last good checkpoint \(step 1\)'):
    train.pretrain(config20, tmp_path / 'run')
  assert checkpoint.manager(tmp_path / 'run', 3).all_steps() == [1]


@pytest.mark.slow
def test_metrics_tensorboard_and_plot(config20, tmp_path):
  config20.train.steps = 6
  config20.train.eval_every = 3
  final = train.pretrain(config20, tmp_path)
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows if 'loss' in r] == [1, 2, 3, 4, 5, 6]
  assert {'mlm_loss', 'mlm_accuracy', 'nsp_loss', 'nsp_accuracy', 'learning_rate'} <= set(rows[0])
  assert any('eval_mlm_accuracy' in r for r in rows)
  assert 'tokens_per_s' in rows[-2] and 0 < rows[-2]['mfu'] < 1
  assert final['loss'] == rows[-2]['loss'] or final['loss'] == rows[-1].get('loss')
  assert list((tmp_path / 'tensorboard').glob('events.out.tfevents.*'))
  assert (tmp_path / 'tokenizer.model').is_file()
  png = metrics.plot(tmp_path)
  assert png.read_bytes()[:4] == b'\x89PNG'


def test_due():
  assert [s for s in range(1, 11) if train.due(s, 3)] == [3, 6, 9]
  assert [s for s in range(1, 11) if train.due(s, 3, last=10)] == [3, 6, 9, 10]
  assert [s for s in range(1, 11) if train.due(s, 1)] == list(range(1, 11))
  assert not any(train.due(s, 0) for s in range(0, 11))  # every=0: never
  assert [s for s in range(1, 11) if train.due(s, 0, last=10)] == [10]  # ... but the last
  assert train.due(6, 3, last=6) and train.due(7, 7, last=None)


def test_hooks_run_at_their_cadence_and_at_the_last_step(corpus_file, tokenizer_file,
                                                         tmp_path):
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file, 'train.steps': 5,
                                       'data.eval_fraction': 0.0})
  seen = {'every_2': [], 'last_only': []}

  def hook(name):
    def fn(info):
      assert isinstance(info, train.HookInfo)
      seen[name].append(jax.tree.map(np.array, info.params))
      return {f'{name}_calls': len(seen[name])}
    return fn

  last = train.pretrain(config, tmp_path, hooks=(train.Hook(2, hook('every_2')),
                                                 train.Hook(0, hook('last_only'))))
  rows = metrics.read(tmp_path)
  assert [(r['step'], r['every_2_calls']) for r in rows if 'every_2_calls' in r] == [
      (2, 1), (4, 2), (5, 3)]
  assert [(r['step'], r['last_only_calls']) for r in rows if 'last_only_calls' in r] == [
      (5, 1)]
  assert last['every_2_calls'] == 3 and last['last_only_calls'] == 1
  # The hooks saw the current parameters: they moved between calls, and the last call's are
  # the ones checkpointed at the last step.
  first, final = seen['every_2'][0], seen['every_2'][-1]
  assert not np.allclose(first['stack']['layers'][0]['query']['kernel'],
                         final['stack']['layers'][0]['query']['kernel'])
  saved = nnx.to_pure_dict(nnx.state(loading.load(tmp_path).model))
  assert_same_params(final, saved)
  assert_same_params(seen['last_only'][0], saved)


def test_throughput_times_ten_steps_not_one():
  """Logged every step, each step's metrics are read at a varying delay (alternately 0.1 s
  and 0.9 s after the last): rates over ten steps are steady; single steps would swing 9x."""
  throughput = train._Throughput(tokens_per_step=100, flops_per_token=2.0, peak_flops=1e3)
  now, rates = 0.0, []
  for step in range(1, 41):
    now += 0.1 if step % 2 else 0.9
    rates.append(throughput.update(step, now=now))
  assert rates[0] == {} and throughput.update(40, now=now + 1) == {}  # compiling; same step
  steady = [r['tokens_per_s'] for r in rates[10:]]
  assert min(steady) == pytest.approx(200.0) and max(steady) == pytest.approx(200.0)
  assert rates[-1]['mfu'] == pytest.approx(200.0 * 2.0 / 1e3)


def test_several_hosts_on_the_embedded_corpus_are_warned(monkeypatch, tmp_path, caplog,
                                                         tokenizer_file):
  """A pod slice that trains on Python's documentation is paid for nothing: one line says so
  (docs/pods.md's recipe sets data.source)."""
  config = tiny_config(None, **{'data.source': 'embedded', 'tokenizer.path': tokenizer_file})
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  with caplog.at_level('WARNING', logger='ssljax.pretrain.loop'):
    train.corpus_examples(config, tmp_path, None)
  warned = [r.getMessage() for r in caplog.records if 'data.source=embedded' in r.getMessage()]
  assert len(warned) == 1 and 'on 2 hosts' in warned[0] and 'ssljax prepare' in warned[0]
