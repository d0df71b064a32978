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
ROOT = SCRIPT.parents[1]
WHEEL = 'ssljax-0.1.0-py3-none-any.whl'
# What `flags(config, '--accelerator-type', 'v4-32', '--spot', '--set', ..., '--delete-after')`
# prints, one command a line: the wheel of this checkout is built, then copied to and
# installed on every worker. {config} and {wheel} are the config's and the wheel's local paths.
BUILD = f'{sys.executable} -m pip wheel --no-deps --wheel-dir {ROOT}/dist {ROOT}'
EXPECTED = r"""
gcloud compute tpus tpu-vm create pod --zone=us-central2-b --project=proj --accelerator-type=v4-32 --version=tpu-ubuntu2204-base --spot
gcloud compute tpus tpu-vm scp {config} pod:bert.py --zone=us-central2-b --project=proj --worker=all
gcloud compute tpus tpu-vm scp {wheel} pod:ssljax-0.1.0-py3-none-any.whl --zone=us-central2-b --project=proj --worker=all
gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b --project=proj --worker=all '--command=python3 -m pip install -U uv && python3 -m uv venv --allow-existing --python 3.12 ~/ssljax-venv && python3 -m uv pip install --python ~/ssljax-venv/bin/python '"'"'jax[tpu]'"'"' gcsfs ~/ssljax-0.1.0-py3-none-any.whl'
gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b --project=proj --worker=all '--command=rm -f ~/ssljax.exit; setsid nohup sh -c '"'"'echo $$ > ~/ssljax.pid; trap "exit 143" TERM; SSLJAX_DISTRIBUTED=1 ~/ssljax-venv/bin/ssljax pretrain --config ~/bert.py --workdir gs://bucket/run --set optimizer.learning_rate=3e-4 --set '"'"'"'"'"'"'"'"'data.path=my corpus.txt'"'"'"'"'"'"'"'"'; echo $? > ~/ssljax.exit'"'"' > ~/ssljax.log 2>&1 < /dev/null &'
gcloud compute tpus tpu-vm delete pod --zone=us-central2-b --project=proj --quiet
"""  # noqa: E501
CREATE, SCP, SCP_WHEEL, INSTALL_SSLJAX, START, DELETE = EXPECTED.strip().splitlines()
INSTALL = INSTALL_SSLJAX.replace(f"~/{WHEEL}'", "{requirement}'")
WHERE = '--zone=us-central2-b --project=proj'
DESCRIBE = f"gcloud compute tpus tpu-vm describe pod {WHERE} '--format=value(state)'"
EXIT_CHECK = (f"gcloud compute tpus tpu-vm ssh pod {WHERE} --worker=0 "
              "'--command=cat ~/ssljax.exit 2>/dev/null || true'")
QUEUED = 'gcloud compute tpus queued-resources'
QUEUED_CREATE = (f'{QUEUED} create pod --node-id=pod {WHERE} --accelerator-type=v4-32 '
                 '--runtime-version=tpu-ubuntu2204-base --spot')
QUEUED_DESCRIBE = f"{QUEUED} describe pod {WHERE} '--format=value(state.state)'"
QUEUED_DELETE = f'{QUEUED} delete pod {WHERE} --force --quiet'
JOB_STATE = (f"gcloud compute tpus tpu-vm ssh pod {WHERE} --worker=0 '--command=if [ -f "
             "~/ssljax.exit ]; then echo exited with status $(cat ~/ssljax.exit); elif kill -0 "
             "$(cat ~/ssljax.pid 2>/dev/null) 2>/dev/null; then echo running; else echo not "
             "running; fi'")
STOP = (f"gcloud compute tpus tpu-vm ssh pod {WHERE} --worker=all '--command=pid=$(cat "
        "~/ssljax.pid 2>/dev/null) && kill -TERM -- -$pid 2>/dev/null && while kill -0 -- "
        "-$pid 2>/dev/null; do sleep 1; done || echo \"no ssljax job running on $(hostname)\"'")

# The fake gcloud logs each call, then answers queries from scripted files in its folder:
# vm.txt (tpu-vm describe; NOT_FOUND and ERROR fail as gcloud does), queued.txt (queued
# resource state), exit.txt (the job's exit status on worker 0, an empty line while it runs),
# one line per call; a spent script answers READY, ACTIVE and 0, so every watch ends. A call
# that contains the text of fail.txt exits with status 3.
FAKE_GCLOUD = r'''#!{python}
import pathlib, shlex, sys
here = pathlib.Path({here!r})
command = shlex.join(['gcloud', *sys.argv[1:]])
with open(here / 'calls.log', 'a') as log:
  log.write(command + '\n')

def answer(name, default):
  path = here / name
  lines = path.read_text().splitlines() if path.exists() else []
  if lines:
    path.write_text(''.join(line + '\n' for line in lines[1:]))
  return lines[0] if lines else default

fail = here / 'fail.txt'
if fail.exists() and fail.read_text() in command:
  sys.exit(3)
if 'tpu-vm describe' in command:
  state = answer('vm.txt', 'READY')
  if state in ('NOT_FOUND', 'ERROR'):
    sys.exit(f'ERROR: (gcloud.compute.tpus.tpu-vm.describe) {{state}}: pod')
  print(state)
elif 'queued-resources describe' in command:
  print(answer('queued.txt', 'ACTIVE'))
elif 'ssljax.exit 2>' in command:
  print(answer('exit.txt', '0'))
elif 'then echo running' in command:
  print('running')
elif 'storage cat' in command:
  print('{{"step": 1, "loss": 7.0}}\n{{"step": 2, "loss": 6.5}}')
'''


@pytest.fixture
def config(tmp_path):
  path = tmp_path / 'bert.py'
  path.write_text('def get_config(): ...\n')
  return path


@pytest.fixture
def fake(tmp_path):
  """The folder of a fake gcloud, its scripts and its calls.log; `fake / 'bin'` goes on PATH."""
  (tmp_path / 'bin').mkdir()
  gcloud = tmp_path / 'bin' / 'gcloud'
  gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable, here=str(tmp_path)))
  gcloud.chmod(0o755)
  return tmp_path


def script(fake, name, *lines):
  (fake / name).write_text(''.join(line + '\n' for line in lines))


def calls(fake):
  log = fake / 'calls.log'
  return log.read_text().splitlines() if log.exists() else []


def local_wheel(fake) -> list[str]:
  """--package with a wheel file: runs against the fake gcloud build no real wheel."""
  (fake / WHEEL).write_bytes(b'')
  return ['--package', str(fake / WHEEL)]


def launch(*args, path):
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                        env={**os.environ, 'PATH': str(path)}, timeout=60)


def flags(config, *extra):
  return ['--name', 'pod', '--zone', 'us-central2-b', '--project', 'proj', '--config',
          str(config), '--workdir', 'gs://bucket/run', *extra]


def pod_flags(config, *extra):
  """A watched Spot v4-32 whose polls do not wait."""
  return flags(config, '--accelerator-type', 'v4-32', '--spot', '--set',
               'optimizer.learning_rate=3e-4', '--set', 'data.path=my corpus.txt',
               '--poll-seconds', '0', *extra)


def watched(config, fake, *extra):
  result = launch(*pod_flags(config, '--watch', *local_wheel(fake), *extra), path=fake / 'bin')
  return result, [line.replace(str(config), '{config}').replace(str(fake / WHEEL), '{wheel}')
                  for line in calls(fake)]


def test_dry_run_prints_every_command_and_runs_none(config, fake):
  result = launch(*pod_flags(config, '--delete-after', '--dry-run'), path=fake / 'bin')
  assert result.returncode == 0, result.stderr
  assert result.stderr == ''
  assert result.stdout == BUILD + '\n' + EXPECTED.lstrip().format(
      config=config, wheel=ROOT / 'dist' / WHEEL)
  assert calls(fake) == []


def test_launch_is_the_default_command(config, tmp_path):
  bare = launch(*flags(config, '--dry-run'), path=tmp_path)
  named = launch('launch', *flags(config, '--dry-run'), path=tmp_path)
  assert bare.returncode == 0 and bare.stdout == named.stdout


def test_job_runs_detached_with_values_with_spaces_whole(config, tmp_path):
  result = launch(*flags(config, '--set', 'data.path=my corpus.txt', '--dry-run'), path=tmp_path)
  run = shlex.split(result.stdout.splitlines()[-1])
  assert '--worker=all' in run
  remote = shlex.split(run[-1].removeprefix('--command='))
  assert remote[:7] == ['rm', '-f', '~/ssljax.exit;', 'setsid', 'nohup', 'sh', '-c']
  assert remote[8:] == ['>', '~/ssljax.log', '2>&1', '<', '/dev/null', '&']
  job = remote[7].split('; ')
  assert job[:2] == ['echo $$ > ~/ssljax.pid', 'trap "exit 143" TERM']
  assert job[-1] == 'echo $? > ~/ssljax.exit'
  assert shlex.split(job[2])[-2:] == ['--set', 'data.path=my corpus.txt']


def test_defaults_install_a_wheel_of_this_checkout_on_v4_8_and_keep_the_vm(config, tmp_path):
  result = launch(*flags(config, '--dry-run'), path=tmp_path)
  lines = result.stdout.splitlines()
  assert lines[0] == BUILD
  assert '--accelerator-type=v4-8' in lines[1] and '--spot' not in lines[1]
  assert lines[3] == SCP_WHEEL.format(wheel=ROOT / 'dist' / WHEEL)
  assert lines[4] == INSTALL.format(requirement=f'~/{WHEEL}')
  assert len(lines) == 6 and 'delete' not in lines[-1]


def test_no_worker_installs_a_bare_index_name(config, tmp_path):
  """ssljax is not on PyPI: a bare `ssljax` fails on every worker, or installs someone
  else's code once the name is taken."""
  result = launch(*flags(config, '--dry-run'), path=tmp_path)
  install = shlex.split(shlex.split(result.stdout.splitlines()[4])[-1].split(' && ')[-1])
  assert install[-3:] == ['jax[tpu]', 'gcsfs', f'~/{WHEEL}']
  assert not any(word.split('[')[0] in ('ssljax', 'ssljax==0.1.0') for word in install)


def test_the_built_wheel_is_named_as_the_launcher_expects(tmp_path):
  """pip builds what _wheel_name says: the name the dry run copies and installs."""
  subprocess.run(BUILD.replace(f'{ROOT}/dist', str(tmp_path)).split(), check=True,
                 capture_output=True, timeout=300)
  assert [p.name for p in tmp_path.iterdir()] == [WHEEL]


@pytest.mark.parametrize('accelerator, runtime', [
    ('v4-8', 'tpu-ubuntu2204-base'),
    ('v5litepod-16', 'v2-alpha-tpuv5-lite'),
    ('v5p-8', 'v2-alpha-tpuv5'),
    ('v6e-8', 'v2-alpha-tpuv6e'),
])
def test_runtime_follows_the_accelerator(config, tmp_path, accelerator, runtime):
  result = launch(*flags(config, '--accelerator-type', accelerator, '--dry-run'), path=tmp_path)
  assert f'--version={runtime}' in result.stdout.splitlines()[1]


def test_explicit_runtime_wins(config, tmp_path):
  result = launch(*flags(config, '--runtime-version', 'v2-alpha-tpuv5', '--dry-run'),
                  path=tmp_path)
  assert result.stdout.splitlines()[1].endswith('--version=v2-alpha-tpuv5')


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


@pytest.mark.parametrize('flag, warning', [
    ('--delete-after', '--delete-after deletes the checkpoints'),
    ('--watch', 'a recreated VM starts the run from scratch'),
])
def test_warns_what_a_local_workdir_loses(config, tmp_path, flag, warning):
  args = flags(config, '--workdir', '/tmp/run', flag, '--dry-run')
  assert warning in launch(*args, path=tmp_path).stderr


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


@pytest.mark.parametrize('command', [[], ['status'], ['logs'], ['stop']])
def test_without_gcloud_fails_in_one_clear_line(config, tmp_path, command):
  args = flags(config) if not command else [*command, '--name', 'pod', '--zone', 'z']
  result = launch(*args, path=tmp_path)
  assert result.returncode == 1
  assert result.stdout == ''
  assert result.stderr.splitlines() == [
      'launch_tpu.py: error: gcloud is not on PATH; install the Google Cloud CLI '
      '(https://cloud.google.com/sdk/docs/install) or pass --dry-run']


def test_without_watch_starts_the_job_and_returns(config, fake):
  result = launch(*flags(config, *local_wheel(fake)), path=fake / 'bin')
  assert result.returncode == 0, result.stderr
  assert [c.split()[4] for c in calls(fake)] == ['create', 'scp', 'scp', 'ssh', 'ssh']
  assert 'the job runs detached on pod' in result.stderr


@pytest.mark.parametrize('accelerator, lost', [('v4-8', 'PREEMPTED'), ('v4-32', 'NOT_FOUND')])
def test_watch_recreates_a_lost_vm_and_reruns_until_the_job_is_done(config, fake, accelerator,
                                                                     lost):
  script(fake, 'vm.txt', 'READY', lost)  # Then READY.
  script(fake, 'exit.txt', '')  # Running at the first check, done (0) at the next.
  result, got = watched(config, fake, '--accelerator-type', accelerator, '--delete-after')
  assert result.returncode == 0, result.stderr
  create = CREATE.replace('v4-32', accelerator)
  assert got == [
      create, SCP, SCP_WHEEL, INSTALL_SSLJAX, START,
      DESCRIBE, EXIT_CHECK,
      DESCRIBE, DELETE,
      create, SCP, SCP_WHEEL, INSTALL_SSLJAX, START,
      DESCRIBE, EXIT_CHECK,
      DELETE,
  ]
  assert f'pod is {lost}' in result.stderr and 'recreating pod (1 of 20)' in result.stderr


def test_watch_waits_out_states_that_are_not_lost(config, fake):
  script(fake, 'vm.txt', 'ERROR', 'REPAIRING')  # gcloud failed, then the VM is busy.
  result, got = watched(config, fake)
  assert result.returncode == 0, result.stderr
  assert got[5:] == [DESCRIBE, DESCRIBE, DESCRIBE, EXIT_CHECK]


def test_watch_gives_up_after_max_restarts(config, fake):
  script(fake, 'vm.txt', 'PREEMPTED', 'PREEMPTED')
  result, got = watched(config, fake, '--max-restarts', '1', '--delete-after')
  assert result.returncode == 1
  assert got.count(CREATE) == 2 and got[-2:] == [DESCRIBE, DELETE]
  assert result.stderr.splitlines()[-1] == (
      'launch_tpu.py: error: pod is PREEMPTED and --max-restarts 1 recreations are spent; '
      'launch again to continue from the last checkpoint')


def test_failed_job_shows_the_end_of_its_log_then_deletes(config, fake):
  script(fake, 'exit.txt', '1')
  result, got = watched(config, fake, '--delete-after')
  assert result.returncode == 1
  assert got[5:] == [DESCRIBE, EXIT_CHECK, EXIT_CHECK.replace(
      "'--command=cat ~/ssljax.exit 2>/dev/null || true'", "'--command=tail -n 30 ~/ssljax.log'"),
      DELETE]
  assert result.stderr.splitlines()[-1] == (
      'launch_tpu.py: error: the job exited with status 1; the end of its log is above')


def test_a_failed_step_still_deletes_the_vm(config, fake):
  (fake / 'fail.txt').write_text('pretrain')
  result = launch(*flags(config, '--delete-after', *local_wheel(fake)), path=fake / 'bin')
  assert [c.split()[4] for c in calls(fake)] == ['create', 'scp', 'scp', 'ssh', 'ssh', 'delete']
  assert result.returncode == 1
  assert result.stderr.splitlines()[-1].startswith('launch_tpu.py: error: exit status 3 from: ')


@pytest.mark.parametrize('state, creates', [('READY', False), ('NOT_FOUND', True)])
def test_reuse_skips_creation_only_for_a_ready_vm(config, fake, state, creates):
  script(fake, 'vm.txt', state)
  result = launch(*pod_flags(config, '--reuse', *local_wheel(fake)), path=fake / 'bin')
  assert result.returncode == 0, result.stderr
  got = [line.replace(str(config), '{config}').replace(str(fake / WHEEL), '{wheel}')
         for line in calls(fake)]
  assert got == [DESCRIBE] + [CREATE] * creates + [SCP, SCP_WHEEL, INSTALL_SSLJAX, START]


def test_queued_resource_is_created_awaited_and_replaced_when_suspended(config, fake):
  script(fake, 'queued.txt', 'WAITING_FOR_RESOURCES', 'PROVISIONING', 'ACTIVE', 'ACTIVE',
         'SUSPENDED')
  script(fake, 'exit.txt', '')
  result, got = watched(config, fake, '--queued', '--delete-after')
  assert result.returncode == 0, result.stderr
  setup = [SCP, SCP_WHEEL, INSTALL_SSLJAX, START]
  assert got == [
      QUEUED_CREATE, QUEUED_DESCRIBE, QUEUED_DESCRIBE, QUEUED_DESCRIBE, *setup,
      DESCRIBE, QUEUED_DESCRIBE, EXIT_CHECK,
      DESCRIBE, QUEUED_DESCRIBE, QUEUED_DELETE,
      QUEUED_CREATE, QUEUED_DESCRIBE, *setup,
      DESCRIBE, QUEUED_DESCRIBE, EXIT_CHECK,
      QUEUED_DELETE,
  ]


def test_failed_queued_resource_is_one_clear_error_and_gets_deleted(config, fake):
  script(fake, 'queued.txt', 'WAITING_FOR_RESOURCES', 'FAILED')
  result, got = watched(config, fake, '--queued', '--delete-after')
  assert result.returncode == 1
  assert got == [QUEUED_CREATE, QUEUED_DESCRIBE, QUEUED_DESCRIBE, QUEUED_DELETE]
  assert result.stderr.splitlines()[-1] == (
      'launch_tpu.py: error: queued resource pod is FAILED; see '
      f'`{QUEUED} describe pod {WHERE}`')


def other(command, *extra):
  return [command, '--name', 'pod', '--zone', 'us-central2-b', '--project', 'proj', *extra]


@pytest.mark.parametrize('args, expected', [
    (other('status'), [DESCRIBE, JOB_STATE]),
    (other('status', '--workdir', 'gs://bucket/run'),
     [DESCRIBE, JOB_STATE, 'gcloud storage cat -r -4096 gs://bucket/run/metrics.jsonl']),
    (other('status', '--workdir', 'run dir'),
     [DESCRIBE, JOB_STATE, f"gcloud compute tpus tpu-vm ssh pod {WHERE} --worker=0 "
      "'--command=tail -n 1 '\"'\"'run dir/metrics.jsonl'\"'\"''"]),
    (other('logs'),
     [f"gcloud compute tpus tpu-vm ssh pod {WHERE} --worker=0 '--command=tail -f ~/ssljax.log'"]),
    (other('stop'), [STOP]),
    (other('stop', '--delete'), [STOP, DELETE]),
    (other('stop', '--delete', '--queued'), [STOP, QUEUED_DELETE]),
])
def test_other_commands_print_their_command_lines(tmp_path, args, expected):
  result = launch(*args, '--dry-run', path=tmp_path)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == expected


def test_status_reads_the_vm_the_job_and_the_last_metrics(fake):
  result = launch(*other('status', '--workdir', 'gs://bucket/run'), path=fake / 'bin')
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == [
      'pod: READY', 'job on worker 0: running', 'last metrics: {"step": 2, "loss": 6.5}']
  assert len(calls(fake)) == 3 and result.stderr == ''


def test_status_of_a_deleted_vm(fake):
  script(fake, 'vm.txt', 'NOT_FOUND')
  result = launch(*other('status'), path=fake / 'bin')
  assert result.stdout.splitlines() == ['pod: NOT_FOUND'] and calls(fake) == [DESCRIBE]


def test_stop_signals_every_worker_then_deletes(fake):
  result = launch(*other('stop', '--delete'), path=fake / 'bin')
  assert result.returncode == 0, result.stderr
  assert calls(fake) == [STOP, DELETE]
