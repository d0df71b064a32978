"""ssljax.pretrain.profile: XLA's trace read back as self seconds per op, and the window of
steps a pretraining run traces (train.profile_steps)."""

import jax
import jax.numpy as jnp
import pytest

from ssljax import config as config_lib
from ssljax.errors import UserError
from ssljax.pretrain import loop, profile

from conftest import tiny_config


def test_self_times_subtract_nested_ops():
  # A while loop (0-100) runs two body ops (10-30, 40-70); an op after it (100-105) and one
  # that starts where the loop ends do not nest.
  ops = [('while.1', 0, 100), ('fusion.2', 10, 30), ('dot.3', 40, 70), ('copy.4', 100, 105)]
  assert dict(profile._self_times(ops)) == {'while.1': 50, 'fusion.2': 20, 'dot.3': 30,
                                            'copy.4': 5}


def test_self_times_of_doubly_nested_ops():
  ops = [('inner.2', 10, 60), ('while.1', 0, 100), ('fusion.3', 20, 30)]
  assert dict(profile._self_times(ops)) == {'while.1': 50, 'inner.2': 40, 'fusion.3': 10}


def test_by_kind_folds_numeric_suffixes():
  seconds = {'fusion.12': 1.0, 'fusion.3': 2.0, 'ynn_fusion': 0.5, 'ynn_fusion.1.2': 0.25,
             'dot': 4.0}
  assert profile.by_kind(seconds) == {'dot': 4.0, 'fusion': 3.0, 'ynn_fusion': 0.75}
  assert list(profile.by_kind(seconds)) == ['dot', 'fusion', 'ynn_fusion']  # largest first


def test_op_seconds_of_a_traced_step_finds_its_ops():
  x = jnp.ones((256, 256))

  @jax.jit
  def step(x):
    y = jnp.tanh(x @ x)
    return jax.lax.fori_loop(0, 3, lambda i, y: jnp.sin(y) * 0.5, y)

  step(x).block_until_ready()  # compiled before the trace
  seconds = profile.op_seconds(lambda: step(x).block_until_ready(), steps=2)
  assert seconds and all(s >= 0 for s in seconds.values())
  assert not any('::' in name for name in seconds)  # runtime events are not ops
  assert list(seconds.values()) == sorted(seconds.values(), reverse=True)
  kinds = profile.by_kind(seconds)
  assert 'while' in kinds, kinds
  assert {'dot', 'ynn_fusion', 'xnn_fusion'} & kinds.keys(), kinds  # XLA's or a library's
  assert 'total' in profile.table(kinds, top=2)


def test_profile_window_in_a_pretraining_run(corpus_file, tokenizer_file, tmp_path, capsys):
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file, 'train.steps': 5,
                                       'train.profile_steps': 2, 'train.profile_from': 2})
  loop.pretrain(config, tmp_path)
  traces = list((tmp_path / 'tensorboard' / 'plugins' / 'profile').glob('*/*.xplane.pb'))
  assert len(traces) == 1  # where TensorBoard's profile tab looks
  report = (tmp_path / 'profile.md').read_text()
  assert report.startswith('# XLA ops of steps 3-4, by kind')
  rows = [line for line in report.splitlines() if line.startswith('| ') and ' ms' not in line]
  assert len(rows) > 4 and '| total |' in report  # the train step's ops, not an empty table
  assert 'profiled steps 3-4: ' in capsys.readouterr().out  # printed even without a bar


def test_profile_settings_are_checked():
  with pytest.raises(UserError, match='train.profile_steps=-1'):
    config_lib.load(None, ['train.profile_steps=-1'])
  with pytest.raises(UserError, match=r'train.profile_from=0 must lie in \[1, inf\)'):
    config_lib.load(None, ['train.profile_steps=2', 'train.profile_from=0'])


def test_a_run_resumed_inside_the_window_does_not_profile(tmp_path):
  window = profile.Window(tmp_path, start=2, steps=2)
  assert window.at(3, jnp.zeros(())) is None and window.at(4, jnp.zeros(())) is None
  assert not (tmp_path / 'profile.md').exists()


def test_with_compile_only_libtpu_loaded_the_window_is_skipped_in_one_line(monkeypatch,
                                                                            tmp_path):
  """`ssljax compile` then a profiled run in one process (a notebook): jax's profiler
  would segfault in start_trace; the window is skipped with a line saying why."""
  maps = tmp_path / 'maps'
  maps.write_text('7f00-7f01 r-xp 0 08:01 1 /venv/site-packages/libtpu/libtpu.so\n')
  real_open = open
  monkeypatch.setattr('builtins.open', lambda name, *a, **k: real_open(
      maps if name == '/proc/self/maps' else name, *a, **k))
  assert profile.compile_only_libtpu()  # the backend here is cpu
  monkeypatch.undo()
  monkeypatch.setattr(profile, 'compile_only_libtpu', lambda: True)
  window = profile.Window(tmp_path, start=2, steps=2)
  said = window.at(2, jnp.zeros(()))
  assert said.startswith('profile window after step 2 skipped: libtpu is loaded but this '
                         'run is on cpu')
  assert '\n' not in said and 'JAX_PLATFORMS=cpu' in said
  assert window.at(4, jnp.zeros(())) is None and not (tmp_path / 'tensorboard').exists()
