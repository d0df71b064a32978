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
