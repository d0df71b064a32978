"""The `ssljax` command. Each subcommand's --help says what it does and shows an example.

Bad input raises UserError, printed here as one line (`ssljax: error: ...`, exit code 2),
never as a traceback.
"""

import argparse
import logging
import sys

from ssljax.cli import adapt, encode, generate, interop, pretrain
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
  ssljax encode --checkpoint runs/bert_tiny --input lines.txt --output features.npy
  ssljax generate --checkpoint runs/gpt --prompt "The function" --max-new-tokens 20
  ssljax lm-eval --model ssljax --model_args checkpoint=runs/gpt --tasks my_task.yaml
'''


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='ssljax', description='Self-supervised BERT/ALBERT/GPT pretraining on JAX, and the '
      'evaluation of what it pretrained: probes, fine-tuning, prompting, GLUE.',
      epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('-v', '--verbose', action='store_true', help='log at INFO level')
  sub = p.add_subparsers(dest='command', required=True, metavar='COMMAND')

  pretrain.add_commands(sub)
  adapt.add_commands(sub, argparse.RawDescriptionHelpFormatter)
  interop.add_commands(sub)
  encode.add_commands(sub)
  generate.add_commands(sub)
  return p


def _compilation_cache():
  """Reuses compiled steps across runs (a resumed run starts in seconds, not minutes)."""
  import jax
  from ssljax.pretrain import metrics
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', str(metrics.cache_dir() / 'xla'))


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
  except PermissionError as e:  # a local folder, or a bucket the credentials cannot write
    print(f'ssljax: error: {e.filename or e}: permission denied; for a gs:// or s3:// path '
          'the account needs object read, write and delete rights on the bucket (README: '
          '"On a TPU pod slice")', file=sys.stderr)
    return 2
  return 0
