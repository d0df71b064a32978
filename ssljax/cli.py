"""The `ssljax` command. Each subcommand's --help says what it does and shows an example.

Bad input raises UserError, printed here as one line (`ssljax: error: ...`, exit code 2),
never as a traceback.
"""

import argparse
import logging
import os
import pathlib
import sys

from ssljax import hf_cli
from ssljax.adapt import cli as adapt_cli
from ssljax.errors import UserError

EPILOG = '''examples:
  ssljax pretrain --config configs/bert_tiny.py --workdir runs/bert_tiny
  ssljax pretrain --config configs/gpt_tiny.py --workdir runs/gpt --set train.steps=50
  ssljax tokenizer train --input corpus.txt --vocab-size 8000 --out tok
  ssljax plot runs/bert_tiny
  ssljax finetune --checkpoint runs/bert_tiny --task sst2 --data-dir GLUE --workdir out/sst2
  ssljax evaluate --checkpoint runs/bert_tiny --tasks sst2,cola,rte,stsb --data-dir GLUE \\
      --methods probe,finetune --workdir out/eval
  ssljax import-hf path/to/hf_model --out runs/imported
'''


def _pretrain(args):
  from ssljax import config as config_lib, train
  config = config_lib.load(args.config, args.set)
  if args.print_config:
    print(config)
    return
  final = train.pretrain(config, args.workdir)
  if not final:
    print(f'{args.workdir} is already at train.steps={config.train.steps}; raise '
          'train.steps to train further')
    return
  shown = {k: round(v, 4) for k, v in final.items() if 'loss' in k or 'accuracy' in k}
  print(f'done: {args.workdir} {shown}')


def _tokenizer_train(args):
  from ssljax import config as config_lib, corpus, tokenizer
  config = config_lib.load(args.config, args.set)
  if args.input:
    config.data.source = 'jsonl' if args.input.endswith('.jsonl') else 'text'
    config.data.path = args.input
  documents = corpus.load_documents(config.data)
  vocab = args.vocab_size or config.tokenizer.vocab_size
  tok = tokenizer.train(documents, vocab, args.out, config.tokenizer.model_type)
  print(f'wrote {args.out}.model: {tok.vocab_size} pieces from {len(documents)} documents')


def _plot(args):
  from ssljax import metrics
  print(f'wrote {metrics.plot(args.workdir, args.out)}')


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='ssljax', description='Self-supervised BERT/ALBERT/GPT pretraining on JAX, and the '
      'evaluation of what it pretrained: probes, fine-tuning, prompting, GLUE.',
      epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('-v', '--verbose', action='store_true', help='log at INFO level')
  sub = p.add_subparsers(dest='command', required=True, metavar='COMMAND')

  def config_args(q):
    q.add_argument('--config', help='a config file from configs/ (default: the base config)')
    q.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='override any config key, e.g. --set train.steps=100 (repeatable)')

  q = sub.add_parser(
      'pretrain', help='pretrain, or continue the run in --workdir',
      description='Pretrains a model with the objective of the config. Rerunning on a '
      'workdir that has checkpoints continues from the latest one exactly. Writes '
      'WORKDIR/metrics.jsonl, WORKDIR/tensorboard, WORKDIR/checkpoints and '
      'WORKDIR/tokenizer.model. SIGTERM/SIGINT save a checkpoint before exiting.')
  config_args(q)
  q.add_argument('--workdir', required=True, help='where checkpoints and metrics go')
  q.add_argument('--print-config', action='store_true', help='print the config and exit')
  q.set_defaults(run=_pretrain)

  tok = sub.add_parser('tokenizer', help='train a sentencepiece tokenizer')
  tok_sub = tok.add_subparsers(dest='tokenizer_command', required=True, metavar='ACTION')
  q = tok_sub.add_parser(
      'train', help='train a tokenizer on a corpus',
      description='Trains a sentencepiece tokenizer with [PAD] [UNK] [CLS] [SEP] [MASK] at '
      'ids 0-4 on --input (a .txt file or folder, or .jsonl) or on the data source of the '
      'config (default: the embedded corpus). Use it with --set tokenizer.path=OUT.model.')
  config_args(q)
  q.add_argument('--input', help='text file, folder of .txt files, or .jsonl file')
  q.add_argument('--vocab-size', type=int, default=0, help='default: tokenizer.vocab_size')
  q.add_argument('--out', required=True, help='output prefix: writes OUT.model')
  q.set_defaults(run=_tokenizer_train)

  q = sub.add_parser('plot', help='plot the loss curves of a run',
                     description='Writes WORKDIR/loss.png from WORKDIR/metrics.jsonl.')
  q.add_argument('workdir')
  q.add_argument('--out', help='PNG path (default WORKDIR/loss.png)')
  q.set_defaults(run=_plot)

  adapt_cli.add_commands(sub, argparse.RawDescriptionHelpFormatter)
  hf_cli.add_commands(sub)
  return p


def _compilation_cache():
  """Reuses compiled steps across runs (a resumed run starts in seconds, not minutes)."""
  import jax
  if not jax.config.jax_compilation_cache_dir:
    default = pathlib.Path(os.environ.get('XDG_CACHE_HOME', '~/.cache')).expanduser()
    jax.config.update('jax_compilation_cache_dir', str(default / 'ssljax' / 'xla'))


def main(argv=None):
  args = parser().parse_args(argv)
  _compilation_cache()
  logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                      format='%(levelname)s %(name)s: %(message)s')
  for noisy in ('absl', 'orbax', 'jax._src'):
    logging.getLogger(noisy).setLevel(logging.INFO if args.verbose else logging.ERROR)
  try:
    args.run(args)
  except UserError as e:
    print(f'ssljax: error: {e}', file=sys.stderr)
    return 2
  except FileNotFoundError as e:
    print(f'ssljax: error: {e.filename or e}: no such file', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
