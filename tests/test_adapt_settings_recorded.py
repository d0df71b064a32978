"""Adaptation settings: what results.json records is what ran, and every task name is checked
before the first task runs."""

import pytest

from ssljax.adapt import run as run_lib, suite
from ssljax.errors import UserError
from ssljax.inference import loading
from ssljax.tasks import catalog

from test_adapt_run import glue_dir  # noqa: F401  (a fixture)


def test_max_len_beyond_the_positions_is_recorded_as_used(pretrained_run, glue_dir,  # noqa: F811
                                                           tmp_path, caplog):
  s = run_lib.load_settings([f'data_dir={glue_dir}', 'probe.kind=ridge', 'seeds=1',
                             'max_len=1000'])
  results = run_lib.run(loading.load(pretrained_run), catalog.load_task('STS-B', s),
                        'probe', tmp_path, s)
  assert results['settings']['max_len'] == 32  # the tiny model's position table
  assert "max_len=1000 exceeds the model's 32 positions" in caplog.text


def test_an_unknown_task_is_refused_before_any_runs(tmp_path):
  with pytest.raises(UserError, match="'foo'"):
    suite.run_suite(None, ['sst2', 'foo'], ['probe'], tmp_path / 'eval',
                     run_lib.load_settings([]))
  assert not (tmp_path / 'eval').exists()


def test_every_tasks_data_is_checked_before_any_runs(glue_dir, tmp_path):  # noqa: F811
  s = run_lib.load_settings([f'data_dir={glue_dir}'])
  with pytest.raises(UserError, match='does not exist: GLUE keeps mnli train in MNLI/'):
    suite.run_suite(None, ['sst2', 'mnli'], ['probe'], tmp_path / 'eval', s)
  with pytest.raises(UserError, match='task pos needs --set train_file=FILE'):
    suite.run_suite(None, ['sst2', 'pos'], ['probe'], tmp_path / 'eval', s)
  s = run_lib.load_settings([f'data_dir={glue_dir}', f'train_file={tmp_path}/train.csv',
                             f'eval_file={tmp_path}/dev.csv'])
  with pytest.raises(UserError, match='table train_file .*train.csv does not exist'):
    suite.run_suite(None, ['sst2', 'table'], ['probe'], tmp_path / 'eval', s)
  assert not (tmp_path / 'eval').exists()
  catalog.check_data('sst2', s)  # SST-2's files are there
