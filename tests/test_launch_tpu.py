"""scripts/launch_tpu.py, run as users run it, against no gcloud or a fake one that logs calls."""

import os
import pathlib
import shlex
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).parents[1] / 'scripts' / 'launch_tpu.py'

# What `flags(config, '--accelerator-type', 'v4-32', '--spot', '--set', ..., '--delete-after')`
# prints, one command a line; {config} is the config's local path.
EXPECTED = r"""
gcloud compute tpus tpu-vm create pod --zone=us-central2-b --project=proj --accelerator-type=v4-32 --version=tpu-ubuntu2204-base --spot
gcloud compute tpus tpu-vm scp {config} pod:bert.py --zone=us-central2-b --project=proj --worker=all
gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b --project=proj --worker=all '--command=python3 -m pip install -U uv && python3 -m uv venv --python 3.12 ~/ssljax-venv && python3 -m uv pip install --python ~/ssljax-venv/bin/python '"'"'jax[tpu]'"'"' ssljax'
gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b --project=proj --worker=all '--command=SSLJAX_DISTRIBUTED=1 ~/ssljax-venv/bin/ssljax pretrain --config ~/bert.py --workdir gs://bucket/run --set optimizer.learning_rate=3e-4 --set '"'"'data.path=my corpus.txt'"'"''
gcloud compute tpus tpu-vm delete pod --zone=us-central2-b --project=proj --quiet
"""  # noqa: E501
INSTALL = EXPECTED.splitlines()[3].replace("ssljax'", "{requirement}'")


@pytest.fixture
def config(tmp_path):
  path = tmp_path / 'bert.py'
  path.write_text('def get_config(): ...\n')
  return path


@pytest.fixture
def fake_gcloud(tmp_path):
  """A bin dir whose gcloud logs its arguments and fails the pretrain step."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  gcloud = bin_dir / 'gcloud'
  gcloud.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "calls.log"}\n'
                    'case "$*" in *pretrain*) exit 3;; esac\n')
  gcloud.chmod(0o755)
  return bin_dir


def launch(*args, path):
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                        env={**os.environ, 'PATH': str(path)})


def flags(config, *extra):
  return ['--name', 'pod', '--zone', 'us-central2-b', '--project', 'proj', '--config',
          str(config), '--workdir', 'gs://bucket/run', *extra]


def test_dry_run_prints_every_command_and_runs_none(config, fake_gcloud, tmp_path):
  result = launch(*flags(config, '--accelerator-type', 'v4-32', '--spot',
                         '--set', 'optimizer.learning_rate=3e-4',
                         '--set', 'data.path=my corpus.txt', '--delete-after', '--dry-run'),
                  path=fake_gcloud)
  assert result.returncode == 0, result.stderr
  assert result.stderr == ''
  assert result.stdout == EXPECTED.lstrip().format(config=config)
  assert not (tmp_path / 'calls.log').exists()


def test_remote_command_keeps_values_with_spaces_whole(config, tmp_path):
  result = launch(*flags(config, '--set', 'data.path=my corpus.txt', '--dry-run'), path=tmp_path)
  run = shlex.split(result.stdout.splitlines()[-1])
  remote = shlex.split(run[-1].removeprefix('--command='))
  assert remote[-2:] == ['--set', 'data.path=my corpus.txt']
  assert '--worker=all' in run


def test_defaults_install_from_pypi_on_v4_8_and_keep_the_vm(config, tmp_path):
  result = launch(*flags(config, '--dry-run'), path=tmp_path)
  lines = result.stdout.splitlines()
  assert '--accelerator-type=v4-8' in lines[0] and '--spot' not in lines[0]
  assert lines[2] == INSTALL.format(requirement='ssljax')
  assert len(lines) == 4 and 'delete' not in lines[-1]


@pytest.mark.parametrize('accelerator, runtime', [
    ('v4-8', 'tpu-ubuntu2204-base'),
    ('v5litepod-16', 'v2-alpha-tpuv5-lite'),
    ('v5p-8', 'v2-alpha-tpuv5'),
    ('v6e-8', 'v2-alpha-tpuv6e'),
])
def test_runtime_follows_the_accelerator(config, tmp_path, accelerator, runtime):
  result = launch(*flags(config, '--accelerator-type', accelerator, '--dry-run'), path=tmp_path)
  assert f'--version={runtime}' in result.stdout.splitlines()[0]


def test_explicit_runtime_wins(config, tmp_path):
  result = launch(*flags(config, '--runtime-version', 'v2-alpha-tpuv5', '--dry-run'),
                  path=tmp_path)
  assert result.stdout.splitlines()[0].endswith('--version=v2-alpha-tpuv5')


def test_local_wheel_is_copied_then_installed(config, tmp_path):
  wheel = tmp_path / 'ssljax-0.1.0-py3-none-any.whl'
  wheel.write_bytes(b'')
  result = launch(*flags(config, '--package', str(wheel), '--dry-run'), path=tmp_path)
  lines = result.stdout.splitlines()
  assert lines[2] == (f'gcloud compute tpus tpu-vm scp {wheel} pod:ssljax-0.1.0-py3-none-any.whl '
                      '--zone=us-central2-b --project=proj --worker=all')
  assert lines[3] == INSTALL.format(requirement='~/ssljax-0.1.0-py3-none-any.whl')


@pytest.mark.parametrize('package, requirement', [
    ('https://github.com/org/ssljax.git', 'git+https://github.com/org/ssljax.git'),
    ('git+https://github.com/org/ssljax@v1', 'git+https://github.com/org/ssljax@v1'),
    ('ssljax==0.1.0', 'ssljax==0.1.0'),
])
def test_package_spec(config, tmp_path, package, requirement):
  result = launch(*flags(config, '--package', package, '--dry-run'), path=tmp_path)
  assert result.stdout.splitlines()[2] == INSTALL.format(requirement=requirement)


@pytest.mark.parametrize('accelerator, workdir, warns', [
    ('v4-16', '/tmp/run', True),
    ('v5litepod-16', 'runs/x', True),
    ('v4-8', '/tmp/run', False),
    ('v5litepod-8', '/tmp/run', False),
    ('v4-32', 'gs://bucket/run', False),
])
def test_warns_about_local_workdir_on_multi_host(config, tmp_path, accelerator, workdir, warns):
  args = flags(config, '--accelerator-type', accelerator, '--workdir', workdir, '--dry-run')
  result = launch(*args, path=tmp_path)
  assert result.returncode == 0
  assert ('warning' in result.stderr) == warns


def test_warns_that_delete_after_drops_a_local_workdir(config, tmp_path):
  args = flags(config, '--workdir', '/tmp/run', '--delete-after', '--dry-run')
  assert '--delete-after deletes the checkpoints' in launch(*args, path=tmp_path).stderr


@pytest.mark.parametrize('drop', ['--name', '--zone', '--config', '--workdir'])
def test_missing_required_flag_is_an_argparse_error(config, tmp_path, drop):
  args = flags(config, '--dry-run')
  i = args.index(drop)
  result = launch(*args[:i], *args[i + 2:], path=tmp_path)
  assert result.returncode == 2
  assert f'the following arguments are required: {drop}' in result.stderr


def test_missing_config_file_fails_before_anything_runs(tmp_path):
  result = launch(*flags(tmp_path / 'nope.py', '--dry-run'), path=tmp_path)
  assert result.returncode == 2
  assert 'nope.py is not a file' in result.stderr and result.stdout == ''


def test_without_gcloud_fails_in_one_clear_line(config, tmp_path):
  result = launch(*flags(config), path=tmp_path)
  assert result.returncode != 0
  assert result.stdout == ''
  assert result.stderr.splitlines() == [
      'launch_tpu.py: error: gcloud is not on PATH; install the Google Cloud CLI '
      '(https://cloud.google.com/sdk/docs/install) or pass --dry-run']


def test_runs_in_order_and_deletes_even_when_pretrain_fails(config, fake_gcloud, tmp_path):
  result = launch(*flags(config, '--delete-after'), path=fake_gcloud)
  calls = (tmp_path / 'calls.log').read_text().splitlines()
  assert [c.split()[3] for c in calls] == ['create', 'scp', 'ssh', 'ssh', 'delete']
  assert result.returncode == 1
  assert result.stderr.splitlines()[-1].startswith('launch_tpu.py: error: exit status 3 from: ')
