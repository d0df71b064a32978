"""The pretraining subcommands: `pretrain`, `tokenizer train` and `plot`.

Imports stay inside the commands, so that building the parser loads no JAX.
"""


def _pretrain(args):
  from ssljax import config as config_lib
  from ssljax.adapt import hooks
  from ssljax.inference import loading
  from ssljax.pretrain import loop
  config = config_lib.load(args.config, args.set)
  if args.print_config:
    print(config)
    return
  final = loop.pretrain(config, args.workdir, init=loading.init_from(config),
                        hooks=tuple(hooks.from_config(config)))
  if not final:  # nothing trained: the loop's start-up line said why
    return
  shown = {k: round(v, 4) for k, v in final.items() if 'loss' in k or 'accuracy' in k}
  print(f'done: {args.workdir} {shown}')


def _tokenizer_train(args):
  from ssljax import config as config_lib, schema, tokenizers
  from ssljax.data import corpus
  config = config_lib.load(args.config, args.set)
  if args.input:
    config.data.source = 'jsonl' if args.input.endswith('.jsonl') else 'text'
    config.data.path = args.input
  vocab = config.tokenizer.vocab_size if args.vocab_size is None else args.vocab_size
  schema.check_value('--vocab-size', vocab,
                     schema.field(config_lib.Config, 'tokenizer.vocab_size'))
  documents = corpus.load_documents(config.data)
  prefix = _model_prefix(args.out)
  tok = tokenizers.train(documents, vocab, prefix, config.tokenizer.model_type)
  print(f'wrote {prefix}.model: {tok.vocab_size} pieces from {len(documents)} documents')


def _model_prefix(out: str) -> str:
  """--out as the prefix of OUT.model: a folder (one that exists, or a path ending in /)
  gets FOLDER/tokenizer.model, not FOLDER/.model; OUT.model is taken for OUT."""
  import os
  if out.endswith(('/', os.sep)) or os.path.isdir(out):
    return os.path.join(out, 'tokenizer')
  return out.removesuffix('.model')


def _plot(args):
  from ssljax.pretrain import metrics
  print(f'wrote {metrics.plot(args.workdir, args.out)}')


def config_args(q):
  q.add_argument('--config', help='a config file from configs/ (default: the base config)')
  q.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='override any config key, e.g. --set train.steps=100 (repeatable)')


def add_commands(sub):
  q = sub.add_parser(
      'pretrain', help='pretrain, or continue the run in --workdir',
      description='Pretrains a model with the objective of the config. Rerunning on a '
      'workdir that has checkpoints continues from the latest one exactly. Writes '
      'WORKDIR/metrics.jsonl, WORKDIR/tensorboard, WORKDIR/checkpoints and '
      'WORKDIR/tokenizer.model. SIGTERM (a preemption) saves a checkpoint and exits 0; '
      'Ctrl-C (SIGINT) saves one and exits 130. '
      '--set train.profile_steps=5 traces five steps after step train.profile_from (10) and '
      'writes where their time goes, XLA op by op, to WORKDIR/profile.md.')
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
  q.add_argument('--vocab-size', type=int, help='default: tokenizer.vocab_size')
  q.add_argument('--out', required=True, help='output prefix: writes OUT.model '
                 '(FOLDER/tokenizer.model for a folder)')
  q.set_defaults(run=_tokenizer_train)

  q = sub.add_parser('plot', help='plot the loss curves of a run',
                     description='Writes WORKDIR/loss.png from WORKDIR/metrics.jsonl.')
  q.add_argument('workdir')
  q.add_argument('--out', help='PNG path (default WORKDIR/loss.png)')
  q.set_defaults(run=_plot)
