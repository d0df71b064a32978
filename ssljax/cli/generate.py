"""The causal-LM subcommands: `generate` (text after prompts) and `lm-eval` (EleutherAI's
lm-evaluation-harness with the ssljax model registered).

Imports stay inside the commands, so that building the parser loads no JAX.
"""

import argparse

from ssljax import paths
from ssljax.errors import UserError


def _prompts(args) -> list[str]:
  if args.prompt is not None:
    return [args.prompt]
  return paths.input_lines(args.input, 'continue')


def _generate(args):
  import json

  from ssljax.inference import generation, loading
  sampling = generation.Sampling(args.temperature, args.top_k, args.top_p)
  sampling.check()  # before the checkpoint loads
  if args.batch_size < 1:
    raise UserError(f'--batch-size {args.batch_size} must be at least 1')
  prompts = _prompts(args)
  texts = generation.generate(loading.load(args.checkpoint), prompts,
                            max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                            batch_size=args.batch_size)
  if args.prompt is not None:
    print(args.prompt + texts[0])
    return
  for prompt, text in zip(prompts, texts):
    print(json.dumps({'prompt': prompt, 'completion': text}, ensure_ascii=False))


def _lm_eval(args):
  from ssljax.inference import harness  # registers the model
  harness.cli(args.lm_eval_args)


def add_commands(subparsers):
  """Adds generate and lm-eval to the `ssljax` subcommands."""
  q = subparsers.add_parser(
      'generate', help='continue prompts with a causal LM (gpt)',
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description='Writes the text a causal LM continues each prompt with: greedy at '
      'temperature 0 (the default), else sampled, the same for the same --seed. Stops at '
      'end-of-text or after --max-new-tokens. With --prompt it prints the prompt and its '
      'continuation; with --input one JSON line per input line: {"prompt", "completion"}.',
      epilog='examples:\n  ssljax generate --checkpoint runs/gpt --prompt "The function"\n'
      '  ssljax generate --checkpoint runs/gpt --input prompts.txt --temperature 0.8 '
      '--top-p 0.9 --seed 1')
  q.add_argument('--checkpoint', required=True, help='an ssljax workdir, a checkpoints/STEP '
                 'directory, or a Hugging Face GPT-2 folder')
  source = q.add_mutually_exclusive_group(required=True)
  source.add_argument('--prompt', help='the text to continue')
  source.add_argument('--input', help='UTF-8 text, one prompt per line')
  q.add_argument('--max-new-tokens', type=int, default=32, help='at most this many tokens '
                 'per prompt (default 32); prompt and new tokens must fit the context')
  q.add_argument('--temperature', type=float, default=0.0, help='0: greedy (default); '
                 'higher: more varied samples')
  q.add_argument('--top-k', type=int, default=0, help='sample among the k most likely '
                 'tokens (0: all, the default)')
  q.add_argument('--top-p', type=float, default=1.0, help='sample among the fewest tokens '
                 'whose probability reaches p, in (0, 1] (default 1: all)')
  q.add_argument('--seed', type=int, default=0, help='sampling seed (default 0)')
  q.add_argument('--batch-size', type=int, default=8, help='prompts decoded together')
  q.set_defaults(run=_generate)

  q = subparsers.add_parser(
      'lm-eval', help="EleutherAI's lm-evaluation-harness, with --model ssljax",
      add_help=False, prefix_chars='+',  # no options of its own: all go to lm-eval
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description='Runs lm-eval\'s own command line (the eval extra: `pip install -e '
      '".[eval]"` in the clone) after registering the ssljax model; every argument goes to '
      'lm-eval, --help included.',
      epilog='example:\n  ssljax lm-eval --model ssljax --model_args checkpoint=runs/gpt '
      '--tasks lambada_openai --limit 100')
  q.add_argument('lm_eval_args', nargs=argparse.REMAINDER, help='lm-eval\'s arguments')
  q.set_defaults(run=_lm_eval)
