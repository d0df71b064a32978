#!/usr/bin/env python3
r"""Runs `ssljax pretrain` on a fresh Cloud TPU VM (single host or pod slice) through gcloud.

Steps: create the VM; copy the config (and a local wheel, if given) to every worker; install
ssljax with `jax[tpu]` into a Python 3.12 venv on every worker (jax>=0.8 needs Python 3.11+,
newer than the 3.10 that the Ubuntu 22.04 TPU images ship); start `ssljax pretrain` on all
workers at once with SSLJAX_DISTRIBUTED=1, so that each calls `jax.distributed.initialize()`,
which finds the coordinator itself on a TPU slice; optionally delete the VM at the end.

Example:

  python scripts/launch_tpu.py --name bert-pod --zone us-central2-b \
      --accelerator-type v4-32 --spot --config configs/bert_base.py \
      --workdir gs://my-bucket/bert-base --set optimizer.learning_rate=1e-4 --delete-after

Add --dry-run to print the gcloud commands instead of running them.
"""

import argparse
import pathlib
import shlex
import shutil
import subprocess
import sys

PROG = 'launch_tpu.py'
GCLOUD = ['gcloud', 'compute', 'tpus', 'tpu-vm']
VENV = '~/ssljax-venv'  # Left unquoted in remote commands so that the worker's shell expands ~.
PYTHON = '3.12'
# Runtime images per TPU generation; everything else (v2, v3, v4) takes the generic one.
RUNTIMES = {'v5litepod': 'v2-alpha-tpuv5-lite', 'v5p': 'v2-alpha-tpuv5', 'v6e': 'v2-alpha-tpuv6e'}
DEFAULT_RUNTIME = 'tpu-ubuntu2204-base'


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--name', required=True, help='TPU VM name')
  parser.add_argument('--zone', required=True, help='e.g. us-central2-b')
  parser.add_argument('--project', help='defaults to the gcloud core/project property')
  parser.add_argument('--accelerator-type', default='v4-8', help='default: %(default)s')
  parser.add_argument(
      '--runtime-version',
      help='TPU software version; defaults to the one for the accelerator generation '
      f'({DEFAULT_RUNTIME} for v2-v4)')
  parser.add_argument('--spot', action='store_true', help='create a Spot VM')
  parser.add_argument(
      '--package', default='ssljax',
      help='what to install: a pip requirement (PyPI name, git+ URL), a git repository URL, '
      'or a local .whl that gets copied to every worker; default: %(default)s')
  parser.add_argument('--config', required=True, help='local config file, copied to every worker')
  parser.add_argument('--workdir', required=True, help='gs:// path that every worker can reach')
  parser.add_argument(
      '--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
      help='config override passed through to ssljax pretrain; repeatable')
  parser.add_argument(
      '--delete-after', action='store_true',
      help='delete the VM at the end, also when a step fails')
  parser.add_argument('--dry-run', action='store_true', help='print the commands, run nothing')
  args = parser.parse_args(argv)
  # Checked here so that a typo fails before a VM is paid for.
  for path in [args.config] + ([args.package] if _is_local_wheel(args.package) else []):
    if not pathlib.Path(path).is_file():
      parser.error(f'{path} is not a file')
  return args


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


def build_commands(args: argparse.Namespace) -> list[list[str]]:
  """The gcloud commands that `args` asks for, in the order they run."""
  name = args.name
  where = [f'--zone={args.zone}'] + ([f'--project={args.project}'] if args.project else [])
  runtime = args.runtime_version or RUNTIMES.get(
      args.accelerator_type.rpartition('-')[0], DEFAULT_RUNTIME)

  def scp(path):
    return GCLOUD + ['scp', path, f'{name}:{pathlib.Path(path).name}'] + where + ['--worker=all']

  def ssh(command):
    return GCLOUD + ['ssh', name] + where + ['--worker=all', f'--command={command}']

  commands = [
      GCLOUD + ['create', name] + where
      + [f'--accelerator-type={args.accelerator_type}', f'--version={runtime}']
      + (['--spot'] if args.spot else []),
      scp(args.config),
  ]
  if _is_local_wheel(args.package):
    commands.append(scp(args.package))
  # uv runs from the system Python and brings its own 3.12 for the venv.
  commands.append(ssh(' && '.join([
      'python3 -m pip install -U uv',
      f'python3 -m uv venv --python {PYTHON} {VENV}',
      f"python3 -m uv pip install --python {VENV}/bin/python 'jax[tpu]' "
      + _requirement(args.package),
  ])))
  pretrain = [
      'SSLJAX_DISTRIBUTED=1', f'{VENV}/bin/ssljax', 'pretrain',
      '--config', '~/' + shlex.quote(pathlib.Path(args.config).name),
      '--workdir', shlex.quote(args.workdir),
  ]
  for item in args.overrides:
    pretrain += ['--set', shlex.quote(item)]
  commands.append(ssh(' '.join(pretrain)))
  if args.delete_after:
    commands.append(GCLOUD + ['delete', name] + where + ['--quiet'])
  return commands


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


def _run(commands: list[list[str]], delete_after: bool):
  """Runs the commands; with --delete-after the VM goes even after a failure, as it bills idle."""
  create, *rest = commands
  delete = rest.pop() if delete_after else None
  _check_call(create)
  try:
    for command in rest:
      _check_call(command)
  finally:
    if delete:
      _check_call(delete)


def _check_call(command: list[str]):
  print('+', shlex.join(command), file=sys.stderr, flush=True)
  subprocess.run(command, check=True)


def main(argv=None):
  args = parse_args(argv)
  _warn_about_workdir(args)
  commands = build_commands(args)
  if args.dry_run:
    for command in commands:
      print(shlex.join(command))
    return
  if shutil.which('gcloud') is None:
    sys.exit(f'{PROG}: error: gcloud is not on PATH; install the Google Cloud CLI '
             '(https://cloud.google.com/sdk/docs/install) or pass --dry-run')
  try:
    _run(commands, args.delete_after)
  except subprocess.CalledProcessError as e:
    sys.exit(f'{PROG}: error: exit status {e.returncode} from: {shlex.join(e.cmd)}')


if __name__ == '__main__':
  main()
