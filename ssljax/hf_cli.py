"""The `import-hf`, `export-hf` and `encode` subcommands; `cli.py` adds them to `ssljax`.

Imports stay inside the commands, so that building the parser loads neither JAX nor the
Hugging Face libraries.
"""

import pathlib

from ssljax.errors import UserError


def _import(args):
  from ssljax import hf  # pylint: disable=g-import-not-at-top
  report = hf.import_folder(args.folder, args.out)
  print(f'wrote {args.out}/checkpoints/0 from {args.folder}')
  if report.missing:
    print(f'newly initialized (not in the checkpoint): {report.missing}')
  if report.unexpected:
    print(f'not used (no ssljax parameter takes them): {report.unexpected}')


def _export(args):
  from ssljax import hf  # pylint: disable=g-import-not-at-top
  out = hf.export(hf.from_pretrained(args.checkpoint), args.out)
  print(f'wrote {out}: load it with transformers.AutoModel.from_pretrained({str(out)!r})')


def _encode(args):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ssljax import encode, hf  # pylint: disable=g-import-not-at-top
  source = pathlib.Path(args.input)
  if not source.is_file():
    raise UserError(f'--input {source} does not exist')
  texts = source.read_text(encoding='utf-8').splitlines()
  if not texts:
    raise UserError(f'--input {source} has no lines to encode')
  if args.batch_size < 1:
    raise UserError(f'--batch-size {args.batch_size} must be at least 1')
  features = encode.features(hf.from_pretrained(args.checkpoint), texts, args.pooling,
                             args.batch_size)
  np.save(args.output, features)
  print(f'wrote {args.output}: {features.shape[0]} x {features.shape[1]} float32 '
        f'({args.pooling} pooling)')


def add_commands(subparsers):
  """Adds import-hf, export-hf and encode to the `ssljax` subcommands."""
  q = subparsers.add_parser(
      'import-hf', help='import a Hugging Face BERT/RoBERTa/ALBERT/GPT-2 folder',
      description='Reads a Hugging Face model folder (config.json, model.safetensors or '
      'pytorch_model.bin, tokenizer files) and writes OUT/checkpoints/0 with a fresh '
      'optimizer state, the matching config and the tokenizer. Continue pretraining with '
      '`ssljax pretrain --set train.init_from=OUT --workdir NEW`; load it in Python with '
      'ssljax.from_pretrained(OUT). Tensors the folder lacks or has extra are listed.')
  q.add_argument('folder', help='a folder written by save_pretrained')
  q.add_argument('--out', required=True, help='the ssljax workdir to create')
  q.set_defaults(run=_import)

  q = subparsers.add_parser(
      'export-hf', help='write a checkpoint as a Hugging Face model folder',
      description='Writes config.json, model.safetensors and the tokenizer (tokenizer.json; '
      'a sentencepiece tokenizer also as spiece.model) into OUT, loadable with '
      'transformers.AutoModel and with BertForPreTraining, RobertaForMaskedLM, '
      'AlbertForPreTraining or GPT2LMHeadModel.')
  q.add_argument('checkpoint', help='an ssljax workdir, a checkpoints/STEP directory, or a '
                 'Hugging Face folder')
  q.add_argument('--out', required=True, help='the folder to write')
  q.set_defaults(run=_export)

  q = subparsers.add_parser(
      'encode', help='features of each line of a text file, as .npy',
      description='Writes one row per line of --input: the last hidden state pooled over '
      'the line\'s tokens (mean, ignoring padding) or taken at [CLS].')
  q.add_argument('--checkpoint', required=True, help='an ssljax workdir, a checkpoints/STEP '
                 'directory, or a Hugging Face folder')
  q.add_argument('--input', required=True, help='UTF-8 text, one text per line')
  q.add_argument('--output', required=True, help='the .npy file to write')
  q.add_argument('--pooling', choices=('mean', 'cls'), default='mean',
                 help='mean over tokens (default) or the first token')
  q.add_argument('--batch-size', type=int, default=64, help='texts per forward pass')
  q.set_defaults(run=_encode)
