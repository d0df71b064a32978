#!/usr/bin/env python3
r"""Runs `ssljax pretrain` on a Cloud TPU VM (single host or pod slice) through gcloud.

Commands (`launch` is the default, so the flags alone launch):

  launch  Build a wheel of this checkout (unless --package names what to install); create the
          VM (or, with --reuse, take the READY one of that name); copy the config and the
          wheel to every worker; install ssljax with `jax[tpu]` into
          a Python 3.12 venv on every worker (jax>=0.8 needs Python 3.11+, newer than the
          3.10 of the Ubuntu 22.04 TPU images); start `ssljax pretrain` on all workers at
          once with SSLJAX_DISTRIBUTED=1, so that each calls `jax.distributed.initialize()`,
          which finds the coordinator itself on a TPU slice. The job runs detached
          (nohup, output in ~/ssljax.log on each worker), so it outlives the ssh session.
  status  The VM's state, whether the job runs on worker 0 (or its exit status), and the
          last line of WORKDIR/metrics.jsonl when --workdir is given.
  logs    Follow worker 0's ~/ssljax.log (Ctrl-C stops following, not the job).
  stop    SIGTERM the job on every worker and wait until it has saved its checkpoint and
          exited; --delete then deletes the VM (or its queued resource).

--queued creates through a queued resource named like the VM, the way Spot capacity is
obtained now, and waits until it is ACTIVE.

--watch keeps launch running until the job ends: every --poll-seconds it reads the VM's
state; when the VM is preempted or gone (or its queued resource SUSPENDED or FAILED), it
deletes and recreates it as the first time, installs again and reruns the same command,
which resumes from the last checkpoint in the shared --workdir. The job is over when worker
0 has written its exit status to ~/ssljax.exit, which a job stopped by SIGTERM (preemption,
`stop`) does not. At most --max-restarts recreations. --delete-after implies --watch and
deletes the VM once the job is over, also when a step fails (an idle VM bills); Ctrl-C
stops only the watcher and leaves the job and the VM running.

Example:

  python scripts/launch_tpu.py --name bert-pod --zone us-central2-b \
      --accelerator-type v4-32 --spot --queued --config configs/bert_base.py \
      --workdir gs://my-bucket/bert-base --set optimizer.learning_rate=1e-4 --delete-after
  python scripts/launch_tpu.py status --name bert-pod --zone us-central2-b \
      --workdir gs://my-bucket/bert-base

--dry-run prints the gcloud commands that the command runs (for launch: onto a fresh VM,
without the polls of --queued and --watch) instead of running them.
"""

import argparse
import ast
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

PROG = 'launch_tpu.py'
COMMANDS = ('launch', 'status', 'logs', 'stop')
GCLOUD = ['gcloud', 'compute', 'tpus', 'tpu-vm']
QUEUED = ['gcloud', 'compute', 'tpus', 'queued-resources']
# Paths on the workers, left unquoted in remote commands so that the worker's shell expands ~.
VENV = '~/ssljax-venv'
LOG, PID, EXIT = '~/ssljax.log', '~/ssljax.pid', '~/ssljax.exit'
PYTHON = '3.12'
# The checkout this script belongs to: by default its code, as a wheel, is what every worker
# runs (ssljax is not on PyPI: a bare `ssljax` would fail, or install someone else's code).
ROOT = pathlib.Path(__file__).resolve().parents[1]
DIST = ROOT / 'dist'
# Runtime images per TPU generation; everything else (v2, v3, v4) takes the generic one.
RUNTIMES = {'v5litepod': 'v2-alpha-tpuv5-lite', 'v5p': 'v2-alpha-tpuv5', 'v6e': 'v2-alpha-tpuv6e'}
DEFAULT_RUNTIME = 'tpu-ubuntu2204-base'
# States after which the VM will not run the job again: the VM's own, NOT_FOUND once it is
# deleted, and a queued resource's (a Spot one goes SUSPENDING, then SUSPENDED, when preempted).
LOST = {'PREEMPTED', 'TERMINATED', 'NOT_FOUND', 'SUSPENDED', 'FAILED'}
# The job on one worker, as a process group; stop waits for it to end so that its checkpoint
# is saved before a --delete.
STOP = (f'pid=$(cat {PID} 2>/dev/null) && kill -TERM -- -$pid 2>/dev/null'
        ' && while kill -0 -- -$pid 2>/dev/null; do sleep 1; done'
        ' || echo "no ssljax job running on $(hostname)"')
JOB_STATE = (f'if [ -f {EXIT} ]; then echo exited with status $(cat {EXIT}); '
             f'elif kill -0 $(cat {PID} 2>/dev/null) 2>/dev/null; then echo running; '
             'else echo not running; fi')


def parse_args(argv=None) -> argparse.Namespace:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] not in COMMANDS + ('-h', '--help'):
    argv.insert(0, 'launch')  # Before the subcommands, launching was all there was.
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument('--name', required=True, help='TPU VM name')
  common.add_argument('--zone', required=True, help='e.g. us-central2-b')
  common.add_argument('--project', help='defaults to the gcloud core/project property')
  common.add_argument(
      '--queued', action='store_true',
      help='the VM comes from a queued resource of the same name (created, deleted with it)')
  common.add_argument('--dry-run', action='store_true', help='print the commands, run nothing')
  parser = argparse.ArgumentParser(
      prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest='command', metavar='COMMAND')
  launch = commands.add_parser('launch', parents=[common], help='create, install, start')
  _add_launch_flags(launch)
  status = commands.add_parser('status', parents=[common], help="the VM's and the job's state")
  status.add_argument('--workdir', help='also print the last line of WORKDIR/metrics.jsonl')
  commands.add_parser('logs', parents=[common], help="follow worker 0's output")
  stop = commands.add_parser('stop', parents=[common], help='SIGTERM the job on every worker')
  stop.add_argument('--delete', action='store_true', help='then delete the VM')
  args = parser.parse_args(argv)
  if args.command == 'launch':
    args.build = not args.package
    args.package = args.package or str(DIST / _wheel_name())
    _check_launch_args(launch, args)
    # The job runs detached, so only a watcher knows when the VM can go.
    args.watch = args.watch or args.delete_after
  return args


def _add_launch_flags(parser: argparse.ArgumentParser):
  parser.add_argument('--accelerator-type', default='v4-8', help='default: %(default)s')
  parser.add_argument(
      '--runtime-version',
      help='TPU software version; defaults to the one for the accelerator generation '
      f'({DEFAULT_RUNTIME} for v2-v4)')
  parser.add_argument('--spot', action='store_true', help='create a Spot VM')
  parser.add_argument('--reuse', action='store_true',
                      help='use the VM of that name if it exists and is READY')
  parser.add_argument(
      '--package', default='',
      help='what to install: a local .whl that gets copied to every worker, a git repository '
      'URL or another pip requirement; default: a wheel built from this checkout')
  parser.add_argument('--config', required=True, help='local config file, copied to every worker')
  parser.add_argument('--workdir', required=True, help='gs:// path that every worker can reach')
  parser.add_argument(
      '--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
      help='config override passed through to ssljax pretrain; repeatable')
  parser.add_argument('--watch', action='store_true',
                      help='wait for the job to end, recreating the VM whenever it is lost')
  parser.add_argument('--poll-seconds', type=float, default=60,
                      help='between state checks of --watch and --queued; default: %(default)s')
  parser.add_argument('--max-restarts', type=int, default=20,
                      help='recreations that --watch may make; default: %(default)s')
  parser.add_argument(
      '--delete-after', action='store_true',
      help='delete the VM once the job is over, also when a step fails; implies --watch')


def _check_launch_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
  """Fails on a typo before a VM is paid for."""
  wheel = [args.package] if _is_local_wheel(args.package) and not args.build else []
  for path in [args.config] + wheel:
    if not pathlib.Path(path).is_file():
      parser.error(f'{path} is not a file')
  if args.poll_seconds < 0 or args.max_restarts < 0:
    parser.error('--poll-seconds and --max-restarts take a number >= 0')


def _wheel_name() -> str:
  """The file name `pip wheel` gives this checkout (pure Python: py3-none-any), from the one
  place the version is written."""
  tree = ast.parse((ROOT / 'ssljax' / '__init__.py').read_text())
  version = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and [t.id for t in node.targets if isinstance(t, ast.Name)] == ['__version__'])
  return f'ssljax-{version}-py3-none-any.whl'


def _build(args) -> list[list[str]]:
  """The local command that builds the checkout's wheel; none when --package was given."""
  if not args.build:
    return []
  return [[sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--wheel-dir', str(DIST),
           str(ROOT)]]


def _is_local_wheel(package: str) -> bool:
  return package.endswith('.whl') and '://' not in package


def is_multi_host(accelerator_type: str) -> bool:
  """Whether the slice spans several VMs, whose processes share only what is on gs://.

  The size suffix counts TensorCores on v2-v4 and v5p, chips on v5e and v6e; a host holds 8
  of either, so any size above 8 means more than one host.
  """
  size = accelerator_type.rpartition('-')[2]
  return size.isdigit() and int(size) > 8


def _requirement(package: str) -> str:
  """The pip requirement on the workers, shell-quoted for the remote command."""
  if _is_local_wheel(package):
    return '~/' + shlex.quote(pathlib.Path(package).name)
  if '://' in package and not package.startswith('git+') and not package.endswith(
      ('.whl', '.tar.gz', '.zip')):
    package = 'git+' + package  # A bare repository URL: pip needs to be told it is git.
  return shlex.quote(package)


def _backend(workdir: str) -> str:
  """The fsspec back-end of a bucket workdir (what the gcs and s3 extras add)."""
  return {'gs': 'gcsfs ', 's3': 's3fs '}.get(workdir.split('://', 1)[0] if '://' in workdir
                                            else '', '')


# The gcloud commands, as lists.


def _where(args) -> list[str]:
  return [f'--zone={args.zone}'] + ([f'--project={args.project}'] if args.project else [])


def _ssh(args, command: str, worker='all') -> list[str]:
  return GCLOUD + ['ssh', args.name] + _where(args) + [f'--worker={worker}', f'--command={command}']


def _scp(args, path: str) -> list[str]:
  return GCLOUD + ['scp', path, f'{args.name}:{pathlib.Path(path).name}'] + _where(args) + [
      '--worker=all']


def _create(args) -> list[str]:
  runtime = args.runtime_version or RUNTIMES.get(
      args.accelerator_type.rpartition('-')[0], DEFAULT_RUNTIME)
  spot = ['--spot'] if args.spot else []
  if args.queued:
    return QUEUED + ['create', args.name, f'--node-id={args.name}'] + _where(args) + [
        f'--accelerator-type={args.accelerator_type}', f'--runtime-version={runtime}'] + spot
  return GCLOUD + ['create', args.name] + _where(args) + [
      f'--accelerator-type={args.accelerator_type}', f'--version={runtime}'] + spot


def _delete(args) -> list[str]:
  if args.queued:  # --force deletes the VM first, which a queued resource otherwise refuses.
    return QUEUED + ['delete', args.name] + _where(args) + ['--force', '--quiet']
  return GCLOUD + ['delete', args.name] + _where(args) + ['--quiet']


def _describe(args) -> list[str]:
  return GCLOUD + ['describe', args.name] + _where(args) + ['--format=value(state)']


def _describe_queued(args) -> list[str]:
  return QUEUED + ['describe', args.name] + _where(args) + ['--format=value(state.state)']


def _setup(args) -> list[list[str]]:
  """Copy, install and start on every worker: what a new VM needs before it runs the job."""
  commands = [_scp(args, args.config)]
  if _is_local_wheel(args.package):
    commands.append(_scp(args, args.package))
  # uv runs from the system Python and brings its own 3.12 for the venv; --allow-existing
  # installs into the venv of a reused VM, which newer uv otherwise refuses to replace.
  commands.append(_ssh(args, ' && '.join([
      'python3 -m pip install -U uv',
      f'python3 -m uv venv --allow-existing --python {PYTHON} {VENV}',
      f"python3 -m uv pip install --python {VENV}/bin/python 'jax[tpu]' "
      + _backend(args.workdir) + _requirement(args.package),
  ])))
  commands.append(_ssh(args, _start(args)))
  return commands


def _start(args) -> str:
  """Starts the job detached, in its own process group (which `stop` signals).

  The exit status is written only when the job ends by itself: when SIGTERM stops it
  (preemption, `stop`), the shell's trap exits first, so --watch does not take a checkpoint
  saved on the way down for the end of the run.
  """
  pretrain = [
      'SSLJAX_DISTRIBUTED=1', f'{VENV}/bin/ssljax', 'pretrain',
      '--config', '~/' + shlex.quote(pathlib.Path(args.config).name),
      '--workdir', shlex.quote(args.workdir),
  ]
  for item in args.overrides:
    pretrain += ['--set', shlex.quote(item)]
  job = f'echo $$ > {PID}; trap "exit 143" TERM; {" ".join(pretrain)}; echo $? > {EXIT}'
  return f'rm -f {EXIT}; setsid nohup sh -c {shlex.quote(job)} > {LOG} 2>&1 < /dev/null &'


def _metrics(args) -> list[str]:
  path = args.workdir.rstrip('/') + '/metrics.jsonl'
  if path.startswith('gs://'):  # The last 4 kB hold the last line; -r -N is a suffix range.
    return ['gcloud', 'storage', 'cat', '-r', '-4096', path]
  return _ssh(args, f'tail -n 1 {shlex.quote(path)}', worker=0)


def plan(args) -> list[list[str]]:
  """The commands that `args.command` runs, in order, leaving out polls and checks."""
  if args.command == 'launch':
    return _build(args) + [_create(args)] + _setup(args) + (
        [_delete(args)] if args.delete_after else [])
  if args.command == 'status':
    return [_describe(args), _ssh(args, JOB_STATE, worker=0)] + (
        [_metrics(args)] if args.workdir else [])
  if args.command == 'logs':
    return [_ssh(args, f'tail -f {LOG}', worker=0)]
  return [_ssh(args, STOP)] + ([_delete(args)] if args.delete else [])


# Running them.


def call(command: list[str], capture=False, check=True) -> subprocess.CompletedProcess:
  """Every gcloud call goes through here; actions are echoed, queries (captured) are not."""
  if not capture:
    print('+', shlex.join(command), file=sys.stderr, flush=True)
  return subprocess.run(command, check=check, capture_output=capture, text=True)


def _vm_state(args) -> str:
  """READY, PREEMPTED, ...; NOT_FOUND once deleted; UNKNOWN when gcloud could not tell."""
  result = call(_describe(args), capture=True, check=False)
  if result.returncode == 0:
    return result.stdout.strip()
  return 'NOT_FOUND' if 'NOT_FOUND' in result.stderr else 'UNKNOWN'


def _state(args) -> str:
  """The VM's state, or its queued resource's when that one is lost."""
  state = _vm_state(args)
  if args.queued and state == 'READY':
    queued = call(_describe_queued(args), capture=True, check=False).stdout.strip()
    if queued in LOST:
      return queued
  return state


def _bring_up(args, reuse: bool):
  """A VM that runs the job: created (unless a READY one is reused), set up, job started."""
  if not (reuse and _vm_state(args) == 'READY'):
    call(_create(args))
    if args.queued:
      _wait_until_active(args)
  for command in _setup(args):
    call(command)


def _wait_until_active(args):
  """A queued resource is created as a request; its VM exists once the request is ACTIVE."""
  while (state := call(_describe_queued(args), capture=True).stdout.strip()) != 'ACTIVE':
    if state in ('FAILED', 'SUSPENDED'):
      sys.exit(f'{PROG}: error: queued resource {args.name} is {state}; see '
               f'`{shlex.join(_describe_queued(args)[:-1])}`')
    time.sleep(args.poll_seconds)


def _exit_status(args) -> str:
  """The job's exit status on worker 0; '' while it runs (or when ssh failed this time)."""
  command = _ssh(args, f'cat {EXIT} 2>/dev/null || true', worker=0)
  return call(command, capture=True, check=False).stdout.strip()


def _watch(args) -> str:
  """Polls until the job is over, recreating a lost VM; returns the job's exit status."""
  restarts, last = 0, 'READY'
  while True:
    time.sleep(args.poll_seconds)
    state = _state(args)
    if state != last:
      print(f'{PROG}: {args.name} is {state}', file=sys.stderr, flush=True)
      last = state
    if state == 'READY' and (status := _exit_status(args)):
      return status
    if state in LOST:
      if restarts == args.max_restarts:
        sys.exit(f'{PROG}: error: {args.name} is {state} and --max-restarts {args.max_restarts} '
                 'recreations are spent; launch again to continue from the last checkpoint')
      restarts += 1
      print(f'{PROG}: recreating {args.name} ({restarts} of {args.max_restarts})',
            file=sys.stderr, flush=True)
      call(_delete(args), check=False)  # It may be gone already.
      _bring_up(args, reuse=False)


def _launch(args):
  for command in _build(args):  # before anything is paid for
    call(command)
  _bring_up(args, reuse=args.reuse)
  if not args.watch:
    print(f'{PROG}: the job runs detached on {args.name}; follow it with `{PROG} logs`, '
          f'`{PROG} status` or end it with `{PROG} stop` (same --name and --zone)',
          file=sys.stderr)
    return
  status = _watch(args)
  if status != '0':
    call(_ssh(args, f'tail -n 30 {LOG}', worker=0), check=False)
    sys.exit(f'{PROG}: error: the job exited with status {status}; the end of its log is above')


def launch(args):
  """--delete-after deletes the VM even when a step fails, as an idle VM bills; but not on
  Ctrl-C, which stops only this watcher while the detached job runs on."""
  interrupted = False
  try:
    _launch(args)
  except KeyboardInterrupt:
    interrupted = True
    print(f'{PROG}: stopped watching; the job and {args.name} keep running', file=sys.stderr)
    raise
  finally:
    if args.delete_after and not interrupted:
      call(_delete(args))


def status(args):
  state = _vm_state(args)
  print(f'{args.name}: {state}')
  if state == 'READY':
    job = call(_ssh(args, JOB_STATE, worker=0), capture=True, check=False).stdout.strip()
    print(f'job on worker 0: {job or "unknown (ssh failed)"}')
  if args.workdir and (state == 'READY' or args.workdir.startswith('gs://')):
    lines = call(_metrics(args), capture=True, check=False).stdout.splitlines()
    print(f'last metrics: {lines[-1] if lines else "none readable"}')


def _run_plan(args):
  for command in plan(args):
    call(command)


def _warn_about_workdir(args: argparse.Namespace):
  if args.workdir.startswith('gs://'):
    return
  if is_multi_host(args.accelerator_type):
    print(f'{PROG}: warning: --workdir {args.workdir} is not on gs://, but the hosts of '
          f'{args.accelerator_type} share no disk: each would hold only part of a checkpoint',
          file=sys.stderr)
  if args.delete_after:
    print(f'{PROG}: warning: --workdir {args.workdir} is not on gs://, so --delete-after '
          'deletes the checkpoints with the VM', file=sys.stderr)
  elif args.watch:
    print(f'{PROG}: warning: --workdir {args.workdir} is not on gs://, so a recreated VM '
          'starts the run from scratch', file=sys.stderr)


def main(argv=None):
  args = parse_args(argv)
  if args.command == 'launch':
    _warn_about_workdir(args)
  if args.dry_run:
    for command in plan(args):
      print(shlex.join(command))
    return
  if shutil.which('gcloud') is None:
    sys.exit(f'{PROG}: error: gcloud is not on PATH; install the Google Cloud CLI '
             '(https://cloud.google.com/sdk/docs/install) or pass --dry-run')
  try:
    {'launch': launch, 'status': status}.get(args.command, _run_plan)(args)
  except subprocess.CalledProcessError as e:
    why = (e.stderr or '').strip().rpartition('\n')[2]  # What a query said; actions show it.
    sys.exit(f'{PROG}: error: exit status {e.returncode} from: {shlex.join(e.cmd)}'
             + (f': {why}' if why else ''))
  except KeyboardInterrupt:
    sys.exit(130)


if __name__ == '__main__':
  main()
