"""Generation speed of ssljax against transformers' `generate` (KV cache) on a GPT-2.

  pip install -e '.[bench]'                # torch==2.13.0, transformers
  python benchmarks/bench_generate.py      # GPT-2 small (124 M), ~3 min on 2 CPU cores
  python benchmarks/bench_generate.py --layers 2 --hidden 128 --new-tokens 16

One process holds one randomly initialised GPT-2 twice: as transformers' GPT2LMHeadModel
and, with the same weights, as an ssljax model (`interop.huggingface.load_params`). Both
continue the same batch of prompts of different lengths (left padding), greedily, for
exactly --new-tokens tokens (no end-of-text stop), each with its KV cache:
`ssljax.inference.generation.generate_ids` and `model.generate(do_sample=False, use_cache=True)`,
the latter with all cores' threads and with one (the faster is the reference). Calls
alternate between the runs in rounds, so load from other jobs hits all alike; the first
call of each is a warm-up (XLA compiles). tokens/s counts new tokens, batch x
--new-tokens, over the whole call (prompt reading included). Writes
`generate_<backend>.json` and `.md` under --out-dir.
"""

import argparse
import os

import jax
import numpy as np
import tokenizers
import torch
import transformers
from flax import nnx

from ssljax import models, pretrained
from ssljax.data import corpus
from ssljax.inference import generation
from ssljax.interop import huggingface as hf_interop
from ssljax.tokenizers import huggingface as hf_tokenizer

import bench_common

SSLJAX, HF, HF_1 = 'ssljax', 'hf', 'hf_1_thread'
LABELS = {SSLJAX: 'ssljax generate_ids (jit, while_loop, KV cache)',
          HF: f'transformers generate (eager, KV cache), {os.cpu_count()} threads',
          HF_1: 'transformers generate (eager, KV cache), 1 thread'}
# torch threads per transformers run: on a machine other jobs share, torch's OpenMP threads
# wait for each other and one thread can be far faster than all of them.
THREADS = {HF: os.cpu_count(), HF_1: 1}


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--batch-sizes', default='1,8', help='comma-separated prompts per call')
  p.add_argument('--new-tokens', type=int, default=64)
  p.add_argument('--rounds', type=int, default=3, help='timed calls per run and batch size')
  p.add_argument('--layers', type=int, default=12)
  p.add_argument('--hidden', type=int, default=768, help='heads = hidden / 64')
  p.add_argument('--vocab-size', type=int, default=50257)
  p.add_argument('--positions', type=int, default=1024)
  p.add_argument('--out-dir', default=str(bench_common.RESULTS))
  return p.parse_args()


def models_pair(args):
  """(transformers GPT-2, the same weights as an ssljax `Pretrained`) with a byte-level BPE
  trained on the embedded corpus (it only makes the prompts; the vocabulary is the model's)."""
  torch.manual_seed(0)
  config = transformers.GPT2Config(vocab_size=args.vocab_size, n_positions=args.positions,
                                   n_embd=args.hidden, n_layer=args.layers,
                                   n_head=args.hidden // 64)
  theirs = transformers.GPT2LMHeadModel(config).eval()
  theirs.generation_config.eos_token_id = None  # always --new-tokens tokens
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(corpus.embedded_documents()[:200], vocab_size=2000,
                          special_tokens=['<|endoftext|>'])
  tok = hf_tokenizer.HFTokenizer(bpe.to_str(), {'eos_token': '<|endoftext|>'})
  section = hf_interop.model_values(config.to_dict(), 'gpt2')
  model_cfg = models.ModelConfig.from_config(section)
  ours = models.build(model_cfg, nnx.Rngs(0))
  weights = {k: v.numpy() for k, v in theirs.state_dict().items()}
  params, _ = hf_interop.load_params(weights, 'gpt2', model_cfg,
                                     nnx.to_pure_dict(nnx.state(ours)), 'transformers')
  nnx.update(ours, params)
  return theirs, pretrained.Pretrained(None, model_cfg, ours, tok, 0)


def prompts(tok, batch: int) -> list[np.ndarray]:
  """`batch` prompts of real text, 8 to 48 tokens long."""
  docs = [' '.join(d.split()) for d in corpus.embedded_documents()[:batch]]
  lengths = np.linspace(8, 48, batch).astype(int) if batch > 1 else [32]
  return [ids[:n] for ids, n in zip(tok.encode(docs), lengths)]


def runners(theirs, ours, rows, new_tokens):
  """{run: call} for one batch of prompt rows; each call returns the new tokens B x N."""
  width = max(map(len, rows))
  ids = np.zeros((len(rows), width), np.int64)
  mask = np.zeros_like(ids)
  for i, row in enumerate(rows):
    ids[i, width - len(row):], mask[i, width - len(row):] = row, 1
  ids, mask = torch.tensor(ids), torch.tensor(mask)

  def hf(threads):
    def call():
      torch.set_num_threads(threads)
      with torch.no_grad():
        out = theirs.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                              do_sample=False, use_cache=True, pad_token_id=0)
      return out[:, width:].numpy()
    return call

  def ssljax():
    new = generation.generate_ids(ours, rows, max_new_tokens=new_tokens, batch_size=len(rows),
                                stop_ids=())
    return np.stack(new)

  return {SSLJAX: ssljax} | {name: hf(threads) for name, threads in THREADS.items()}


def measure(calls, rounds):
  """Seconds per call of each run, in rounds that rotate which run goes first."""
  seconds = {name: [] for name in calls}
  names = list(calls)
  for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
      seconds[name].append(bench_common.timed(calls[name])[1])
  return seconds


def markdown(result) -> str:
  m, s = result['machine'], result['setup']
  lines = [f"# ssljax generate vs transformers generate ({result['backend']})", '',
           bench_common.describe(m), '',
           f"GPT-2: {s['layers']} layers, hidden {s['hidden']}, {s['heads']} heads, vocab "
           f"{s['vocab_size']}, {s['params'] / 1e6:.1f} M parameters, float32, random "
           f"weights (the same on both sides). Greedy, {s['new_tokens']} new tokens per "
           f"prompt, prompts of 8-48 tokens left-padded; {s['rounds']} timed calls per run "
           'after a warm-up call, alternating. tokens/s: new tokens over the whole call.', '',
           '| batch | run | tokens/s | calls min-max (s) | vs transformers best | same tokens |',
           '|---:|---|---:|---:|---:|---:|']
  for batch, runs in result['batches'].items():
    best = max(runs[name]['tokens_per_s'] for name in THREADS)
    for name, run in runs.items():
      ratio = run['tokens_per_s'] / best
      lines.append(f"| {batch} | {LABELS[name]} | {run['tokens_per_s']:,.1f} | "
                   f"{min(run['seconds']):.2f}-{max(run['seconds']):.2f} | {ratio:.2f}x | "
                   f"{run['same_tokens']:.0%} |")
  lines += ['', 'same tokens: the share of new tokens equal to transformers\' (float32 '
            'rounding can flip a near tie, and a flipped token changes the rest of its row).',
            '']
  return '\n'.join(lines)


def main():
  args = parse_args()
  machine = bench_common.machine('torch', 'transformers', 'flax')
  theirs, ours = models_pair(args)
  batches = {}
  for batch in map(int, args.batch_sizes.split(',')):
    calls = runners(theirs, ours, prompts(ours.tokenizer, batch), args.new_tokens)
    first = {name: call() for name, call in calls.items()}  # warm-up: XLA compiles
    seconds = measure(calls, args.rounds)
    batches[batch] = {name: {
        'seconds': seconds[name],
        'tokens_per_s': batch * args.new_tokens * len(seconds[name]) / sum(seconds[name]),
        'same_tokens': float(np.mean(first[name] == first[HF])),
    } for name in calls}
    print(f'batch {batch}: ' + ', '.join(f'{n} {r["tokens_per_s"]:.1f} tokens/s'
                                         for n, r in batches[batch].items()))
  result = {
      'backend': jax.default_backend(), 'machine': machine,
      'setup': {'layers': args.layers, 'hidden': args.hidden, 'heads': args.hidden // 64,
                'vocab_size': args.vocab_size, 'positions': args.positions,
                'params': sum(p.numel() for p in theirs.parameters()),
                'new_tokens': args.new_tokens, 'rounds': args.rounds},
      'batches': batches,
      'ratio_ssljax_to_transformers_best': {
          b: r[SSLJAX]['tokens_per_s'] / max(r[name]['tokens_per_s'] for name in THREADS)
          for b, r in batches.items()},
  }
  bench_common.write(args.out_dir, f'generate_{result["backend"]}', result, markdown(result))


if __name__ == '__main__':
  main()
