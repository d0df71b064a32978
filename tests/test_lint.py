"""ruff finds nothing in ssljax/, tests/, benchmarks/ and scripts/, and mypy nothing in
ssljax/, with the settings in pyproject.toml.

Both come with the `test` extra, so a missing tool fails here rather than skipping: the
gate cannot silently not run.
"""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _clean(*command: str) -> None:
  result = subprocess.run([sys.executable, '-m', *command], cwd=ROOT, capture_output=True,
                          text=True, check=False)
  assert result.returncode == 0, f'{" ".join(command)}:\n{result.stdout}{result.stderr}'


def test_ruff_finds_nothing():
  _clean('ruff', 'check', '--no-cache', 'ssljax', 'tests', 'benchmarks', 'scripts')


@pytest.mark.slow  # a subprocess: about 40 s without a cache
def test_mypy_finds_nothing(tmp_path):
  _clean('mypy', '--cache-dir', str(tmp_path / 'mypy'), 'ssljax')
