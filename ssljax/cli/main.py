"""The `ssljax` command. Each subcommand's --help says what it does and shows an example.

Bad input raises UserError, printed here as one line (`ssljax: error: ...`, exit code 2),
never as a traceback.
"""

import argparse
import errno
import importlib.metadata
import logging
import os
import signal
import sys

from ssljax.cli import (
  adapt,
  compile as compile_cmd,
  encode,
  generate,
  interop,
  prepare,
  pretrain,
  series,
)
from ssljax.errors import EXTRAS, MissingExtra, UserError

EPILOG = '''examples:
  ssljax pretrain --config configs/bert_tiny.py --workdir runs/bert_tiny
  ssljax pretrain --config configs/gpt_tiny.py --workdir runs/gpt --set train.steps=50
  ssljax tokenizer train --input corpus.txt --vocab-size 8000 --out tok
  ssljax prepare --config configs/bert_base.py --set data.source=text --set data.path=DIR --out prep
  ssljax plot runs/bert_tiny
  ssljax finetune --checkpoint runs/bert_tiny --task sst2 --data-dir GLUE --workdir out/sst2
  ssljax evaluate --checkpoint runs/bert_tiny --tasks sst2,cola,rte,stsb --data-dir GLUE \\
      --methods probe,finetune --workdir out/eval
  ssljax import-hf path/to/hf_model --out runs/imported
  ssljax encode --checkpoint runs/bert_tiny --input lines.txt --output features.npy
  ssljax generate --checkpoint runs/gpt --prompt "The function" --max-new-tokens 20
  ssljax lm-eval --model ssljax --model_args checkpoint=runs/gpt --tasks my_task.yaml
  ssljax pretrain --config configs/patchtst_gunpoint.py --workdir runs/gunpoint
  ssljax series probe runs/gunpoint --out out/gunpoint
'''


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='ssljax', description='Self-supervised BERT/ALBERT/GPT pretraining on JAX, and the '
      'evaluation of what it pretrained: probes, fine-tuning, prompting, GLUE.',
      epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('-v', '--verbose', action='store_true', help='log at INFO level')
  p.add_argument('--version', action='version',  # the installed distribution's
                 version=f"ssljax {importlib.metadata.version('ssljax')}")
  sub = p.add_subparsers(dest='command', required=True, metavar='COMMAND')

  pretrain.add_commands(sub)
  prepare.add_commands(sub)
  adapt.add_commands(sub, argparse.RawDescriptionHelpFormatter)
  interop.add_commands(sub)
  encode.add_commands(sub)
  generate.add_commands(sub)
  compile_cmd.add_commands(sub)
  series.add_commands(sub)
  return p


def _compilation_cache():
  """Reuses compiled steps across runs (a resumed run starts in seconds, not minutes)."""
  import jax

  from ssljax.pretrain import metrics
  if not jax.config.values.get('jax_compilation_cache_dir'):
    jax.config.update('jax_compilation_cache_dir', str(metrics.cache_dir() / 'xla'))


def _drop_closed_loop_noise(report):
  """Orbax closes its event loop while a failed restore's sibling reads are still in
  TensorStore; their callbacks then raise "Event loop is closed" as unraisable exceptions,
  dozens of tracebacks after the one line that matters. Those alone are dropped."""
  if not (isinstance(report.exc_value, RuntimeError)
          and str(report.exc_value) == 'Event loop is closed'):
    sys.__unraisablehook__(report)


def _cpu_without_accelerators(environ=os.environ):
  """JAX_PLATFORMS=cpu on a Linux machine with no TPU or GPU device file, unless set.

  With libtpu installed (the tpu and test extras), jax otherwise tries a TPU at every start
  and libtpu prints six lines of errors about host bounds and worker hostnames; there is
  nothing else to find. `ssljax compile` builds its compile-only devices either way.
  """
  from ssljax import chips  # no JAX: the parser stays light
  if (sys.platform == 'linux' and 'JAX_PLATFORMS' not in environ
      and not chips.present(chips.TPU_FILES + chips.GPU_FILES)):
    environ['JAX_PLATFORMS'] = 'cpu'


def main(argv=None):
  _cpu_without_accelerators()
  previous = {s: signal.signal(s, _interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
  sys.unraisablehook = _drop_closed_loop_noise  # kept: the stray reads outlive main()
  try:
    return _main(argv)
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def _main(argv):
  args = parser().parse_args(argv)
  if args.command != 'compile':  # compile-only executables do not cache (cli/compile.py)
    _compilation_cache()
  elif not args.verbose:
    # XLA's own log lines (jax's default level 1 shows warnings), read as jax starts its
    # backends: for GPU, its rematerialization and scheduler say that a program exceeds the
    # memory it knows of; the one-line verdict of `ssljax compile` says more. -v shows them.
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
  logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                      format='%(levelname)s %(name)s: %(message)s')
  for noisy in ('orbax', 'jax._src'):
    logging.getLogger(noisy).setLevel(logging.INFO if args.verbose else logging.ERROR)
  # Object-store clients log each failed retry with a traceback, and Orbax (through absl)
  # each of its threads that a full disk stopped; the error itself ends in one line.
  for quiet in ('absl', 'gcsfs', 's3fs', 'aiobotocore', 'asyncio'):
    logging.getLogger(quiet).setLevel(logging.INFO if args.verbose else logging.CRITICAL)
  try:
    args.run(args)
  except UserError as e:
    return _fail(str(e))
  except ModuleNotFoundError as e:  # an optional dependency: name its extra
    module = (e.name or '').partition('.')[0]
    if module not in EXTRAS:
      raise
    return _fail(str(MissingExtra(module, f'ssljax {args.command}')))
  except KeyboardInterrupt as e:  # pretraining's, after its save; or another handler's
    print(f'ssljax: {e or "interrupted"}', file=sys.stderr)
    return 130
  except FileNotFoundError as e:
    folder = os.path.dirname(str(e.filename or ''))
    if folder and '://' not in folder and not os.path.isdir(folder):
      return _fail(f'{e.filename}: the folder {folder} does not exist; create it or pass '
                   'another path')
    return _fail(f'{e.filename or e}: no such file or folder')
  except PermissionError as e:  # a local folder, or a bucket the credentials cannot write
    return _fail(f'{e.filename or e}: permission denied; for a gs:// or s3:// path the '
                 'account needs object read, write and delete rights on the bucket (README: '
                 '"On a TPU pod slice")')
  except OSError as e:  # a full disk, a read-only file system, a file where a folder goes
    return _fail(_os_error(e))
  return 0


# errno -> what to do about it
FIXES = {
    errno.ENOSPC: 'no space left on the device; free some or pass a path on another disk '
                  '(what was saved before is intact)',
    errno.EROFS: 'the file system is read-only; pass a writable path',
    errno.EISDIR: 'is a folder; pass a file path',
    errno.ENOTDIR: 'a part of the path is a file, not a folder; pass a folder path',
    errno.EEXIST: 'is a file where a folder goes; pass a folder path',
    errno.EDQUOT: 'the disk quota is exceeded; free some space',
}


def _os_error(e: OSError) -> str:
  """One line for an OSError: the path and the fix, or (a bucket that cannot be reached) the
  first line of the message."""
  where = f'{e.filename}: ' if e.filename else ''
  if e.errno in FIXES:
    return where + FIXES[e.errno]
  text = ((e.strerror if e.filename else str(e)) or type(e).__name__).strip()
  text = text.splitlines()[0][:300]
  return f'{where}{text}; check the path, or for gs:// and s3:// the network and the bucket'


def _fail(message: str) -> int:
  print(f'ssljax: error: {message}', file=sys.stderr)
  return 2


def _interrupted(signum=signal.SIGINT, frame=None):
  """Ctrl-C or SIGTERM outside the training loop (which saves first; SIGTERM then exits 0):
  one line and exit 130 or 143 at once, even from inside a callback that would swallow the
  exception. Every write is atomic, so nothing is left half written; a pretraining lock
  left behind names a process that is gone, so the rerun takes it over."""
  del frame
  if signum == signal.SIGTERM:
    print('ssljax: terminated (SIGTERM); rerun the same command to continue', file=sys.stderr)
  else:
    print('ssljax: interrupted', file=sys.stderr)
  sys.stderr.flush()
  os._exit(128 + signum)
