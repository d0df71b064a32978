"""`ssljax prepare`: a corpus of any size -> tokenizer, token shards and a manifest, on Beam.

Imports stay inside the command, so that building the parser loads neither JAX nor Beam.
"""

import argparse
import contextlib
import os
import sys
import tempfile

from ssljax.errors import UserError

DESCRIPTION = '''\
Tokenizes the corpus that the config's data.* keys name (text, JSONL or Parquet files,
local, gs:// or s3://, one file, a folder or a glob; or a tfds dataset) into token
shards in --out, once, with Apache Beam; then train on it with
  ssljax pretrain --config FILE --set data.source=prepared --set data.path=OUT ...
which opens the shards lazily: start-up time and memory do not grow with the corpus.

Without pipeline options Beam's DirectRunner runs one worker process per core. Options
after -- go to Beam, e.g. Dataflow:
  ssljax prepare --config configs/bert_base.py --set data.source=jsonl \\
      --set 'data.path=gs://BUCKET/corpus/*.jsonl' --out gs://BUCKET/prepared -- \\
      --runner=DataflowRunner --project=PROJECT --region=REGION \\
      --temp_location=gs://BUCKET/tmp --extra_packages=dist/ssljax-0.1.0-py3-none-any.whl

The tokenizer is trained on a seeded sample of tokenizer.sample_chars characters (or
taken from tokenizer.path); data.eval_fraction of the documents are held out by a seeded
draw per document. A killed prepare, rerun with the same command, finishes what is
missing; the manifest is written last.'''


@contextlib.contextmanager
def _beam_log(verbose: bool):
  """Sends file descriptor 2 to a log file while Beam runs, keeping sys.stderr (the progress
  bar, ssljax's own lines) on the terminal.

  Beam's parent process and its DirectRunner worker processes (which inherit descriptor 2)
  each log about a dozen routine warnings, and a failing worker pages of tracebacks, before
  the one line that matters. Yields the log's path; with -v everything stays on the terminal.
  """
  if verbose:
    yield None
    return
  with tempfile.NamedTemporaryFile('w', prefix='ssljax-prepare-', suffix='.log',
                                   delete=False) as log:
    sys.stderr.flush()
    saved = os.dup(2)
    terminal, before = os.fdopen(os.dup(saved), 'w', buffering=1), sys.stderr
    os.dup2(log.fileno(), 2)
    sys.stderr = terminal
    try:
      yield log.name
    finally:
      sys.stderr = before
      terminal.close()
      os.dup2(saved, 2)
      os.close(saved)


def _prepare(args):
  from ssljax import config as config_lib
  config = config_lib.load(args.config, args.set)
  with _beam_log(args.verbose) as log:
    try:
      _run(args, config)
    except UserError as e:
      if log and os.path.getsize(log):
        raise UserError(f"{e} (Beam's log: {log})") from None
      raise
  if log and os.path.getsize(log):
    print(f"Beam's log: {log}")
  elif log:
    os.remove(log)


def _run(args, config):
  from ssljax.prepare import pipeline
  if config.data.source == 'prepared':
    raise UserError('data.source=prepared is already prepared; point data.source at the '
                    'raw corpus (text, jsonl, parquet, tfds or embedded)')
  if args.split_mb <= 0:
    raise UserError(f'--split-mb must be positive, got {args.split_mb}')
  beam_args = [a for a in args.beam_args if a != '--']
  pipeline.prepare(config, args.out, beam_args, workers=args.workers,
                   split_bytes=int(args.split_mb * (1 << 20)))


def add_commands(sub):
  from ssljax.cli import pretrain  # the --config/--set pair every run command takes
  q = sub.add_parser('prepare', help='tokenize a corpus into shards once (Apache Beam)',
                     description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
  pretrain.config_args(q)
  q.add_argument('--out', required=True, help='the prepared folder (local, gs:// or s3://)')
  q.add_argument('--workers', type=int, default=None,
                 help='local worker processes (default: one per core)')
  q.add_argument('--split-mb', type=float, default=64,
                 help='text read by one unit of work, and so the size of a shard (64)')
  q.add_argument('beam_args', nargs=argparse.REMAINDER, metavar='-- BEAM_OPTIONS',
                 help='Apache Beam pipeline options, after --')
  q.set_defaults(run=_prepare)
