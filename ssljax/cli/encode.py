"""The `encode` subcommand: one feature vector per line of a text file.

Imports stay inside the command, so that building the parser loads no JAX.
"""

import argparse

from ssljax import paths
from ssljax.errors import UserError


def _encode(args):
  import numpy as np

  from ssljax.adapt import api
  from ssljax.inference import encoding
  from ssljax.interop import sentence_transformers
  texts = paths.input_lines(args.input, 'encode')
  if args.batch_size < 1:
    raise UserError(f'--batch-size {args.batch_size} must be at least 1')
  pooling, normalize = sentence_transformers.encode_settings(args.checkpoint, args.pooling,
                                                             args.normalize)
  out_NxH = encoding.sentence_features(api.load_model(args.checkpoint), texts, pooling,
                                       args.batch_size, normalize, show_progress=True)
  with paths.path(args.output).open('wb') as f:
    np.save(f, out_NxH)
  print(f'wrote {args.output}: {out_NxH.shape[0]} x {out_NxH.shape[1]} float32 '
        f'({pooling} pooling{", unit length" if normalize else ""})')


def add_commands(subparsers):
  """Adds encode to the `ssljax` subcommands."""
  q = subparsers.add_parser(
      'encode', help='features of each line of a text file, as .npy',
      description='Writes one row per line of --input: the last hidden states pooled over '
      'the line\'s tokens.')
  q.add_argument('--checkpoint', required=True, help='an ssljax workdir, a checkpoints/STEP '
                 'directory, a fine-tuned model/ folder, or a Hugging Face folder')
  q.add_argument('--input', required=True, help='UTF-8 text, one text per line')
  q.add_argument('--output', required=True, help='the .npy file to write (a local path, gs:// '
                 'or s3://)')
  q.add_argument('--pooling', default=None,
                 help='mean: over the real tokens (the default, unless a sentence-transformers '
                 'folder\'s modules.json names another); first: the first token\'s state '
                 '(sentence-transformers\' CLS pooling); cls: [CLS] through BERT\'s pooler; '
                 'last: the last token (causal models)')
  q.add_argument('--normalize', action=argparse.BooleanOptionalAction, default=None,
                 help='scale each row to unit length (the default where modules.json has a '
                 'Normalize module, as all-MiniLM-L6-v2 does)')
  q.add_argument('--batch-size', type=int, default=64, help='texts per forward pass')
  q.set_defaults(run=_encode)
