"""Training throughput of ssljax against Hugging Face `BertForMaskedLM` on one BERT MLM config.

  pip install -e '.[bench]'                             # torch==2.13.0, transformers
  python benchmarks/bench_vs_hf.py                      # 2-6 min on 2 CPU cores
  python benchmarks/bench_vs_hf.py --steps 40 --layers 2 --hidden 128

Both sides train the same model (sizes, vocabulary, dropout, tied MLM decoder) with AdamW,
global-norm clipping and the same warmup/linear-decay schedule (PyTorch's: torch_twin.py,
the parity-tested twin of ssljax's optimizer), on the same batches, in one process. ssljax
runs four ways: with the MLM head on all L positions (the work Hugging Face does: its loss
ignores unmasked positions but its logits cover them all), on the K = ceil(0.15 L) masked
positions only (ssljax's default), that with bf16 compute, and that with BERT's dropout 0.1.
Hugging Face runs in float32 and under bf16 autocast, each eager and `torch.compile`d
(inductor); ratios are to the fastest of the four. Where torch's CPU bf16 matmul is under a
quarter of its f32 rate (no AVX-512 BF16 or AMX), the autocast runs are listed as skipped.
Steps are timed in rounds that alternate between all runs, so load from other jobs on a
shared machine hits all alike.
Writes `bench_vs_hf_<backend>[_<tag>].json` and `.md` under --out-dir.
"""

import argparse
import os
import tempfile
import time

# On a GPU both frameworks share the device: JAX must not take 75 % of its memory up front.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

import jax
import numpy as np
import torch

import ssljax.config
import ssljax.pretrain.loop
from ssljax.pretrain import metrics

import bench_common
import torch_twin

HF = 'hf'
HF_BF16 = 'hf_bf16'
HF_COMPILED = 'hf_compiled'
HF_COMPILED_BF16 = 'hf_compiled_bf16'
ALL = 'ssljax_all_positions'
MASKED = 'ssljax_masked_only'
MASKED_BF16 = 'ssljax_masked_only_bf16'
MASKED_DROPOUT = 'ssljax_masked_only_dropout'
LABELS = {
    ALL: 'ssljax, MLM head on all positions',
    MASKED: 'ssljax, MLM head on masked positions only (default)',
    MASKED_BF16: 'ssljax, masked positions only, bf16 compute (model.dtype=bfloat16)',
    MASKED_DROPOUT: "ssljax, masked positions only, BERT's dropout 0.1 (attention unfused)",
    HF: 'HF BertForMaskedLM, MLM head on all positions',
    HF_BF16: 'HF BertForMaskedLM, bf16 autocast (torch.autocast)',
    HF_COMPILED: 'HF BertForMaskedLM, torch.compile',
    HF_COMPILED_BF16: 'HF BertForMaskedLM, torch.compile, bf16 autocast',
}
# Hugging Face runs: (bf16 autocast, torch.compile)
HF_RUNS = {HF: (False, False), HF_BF16: (True, False), HF_COMPILED: (False, True),
           HF_COMPILED_BF16: (True, True)}
# ssljax runs: (MLM head on masked positions only, compute dtype, dropout and attention
# dropout). With attention dropout the softmax is spelled out (no fused kernel).
SSLJAX_RUNS = {ALL: (False, 'float32', 0.0), MASKED: (True, 'float32', 0.0),
               MASKED_BF16: (True, 'bfloat16', 0.0), MASKED_DROPOUT: (True, 'float32', 0.1)}
WARMUP_STEPS = 2  # the first compiles (XLA) or allocates (torch); the second checks it
BF16_MIN_RATIO = 0.25  # torch's bf16 matmul rate / its f32 one below which autocast is skipped


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--steps', type=int, default=20, help='timed steps per run')
  p.add_argument('--rounds', type=int, default=4, help='the timed steps alternate in rounds')
  bench_common.add_model_args(p)
  args = p.parse_args()
  if not 1 <= args.rounds <= args.steps:
    p.error(f'--rounds={args.rounds} must lie in [1, --steps={args.steps}]')
  return args


def torch_peak_flops(device, size=2048, repeats=5, dtype=torch.float32):
  """torch's matmul FLOP/s, measured as `metrics.measure_peak_flops` measures XLA's."""
  a = torch.ones(size, size, device=device, dtype=dtype)
  sync = torch.cuda.synchronize if device.type == 'cuda' else lambda: None
  a @ a
  sync()
  start = time.perf_counter()
  for _ in range(repeats):
    a @ a
  sync()
  return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def torch_bf16_skip_reason(device, size=512):
  """Why the bf16 autocast runs cannot be PyTorch's best here, or None when they can.

  Without AVX-512 BF16 or AMX, torch's CPU bf16 matmul falls back to a path ~100x slower
  than its f32 one (1 vs 98 GFLOP/s on an AVX2-only EPYC): the autocast runs would take
  hours and lose. Measured on a small matmul, so the check itself takes a second.
  """
  if device.type != 'cpu':
    return None
  rates = {dtype: bench_common.best_of(lambda d=dtype: torch_peak_flops(device, size, 3, d))
           for dtype in (torch.float32, torch.bfloat16)}
  ratio = rates[torch.bfloat16] / rates[torch.float32]
  if ratio >= BF16_MIN_RATIO:
    return None
  return (f"skipped: torch's bf16 matmul ran {rates[torch.bfloat16] / 1e9:.1f} GFLOP/s on "
          f"this CPU ({bench_common.cpu_isa()}), {ratio:.3f}x its float32 rate "
          f"({size}x{size}, best of 3), so autocast cannot be PyTorch's fastest mode here")


def markdown(result):
  m, c = result['machine'], result['config']
  peaks = result['peak_flops']
  lines = [
      f"# ssljax vs Hugging Face BertForMaskedLM ({result['backend']})",
      '',
      f"{bench_common.describe(m)} torch device {m['torch_device']} "
      f"({m['torch_threads']} threads).",
      '',
      f"BERT MLM, {c['layers']} layers, hidden {c['hidden']}, {c['heads']} heads, mlp "
      f"{c['mlp']}, seq {c['seq_len']}, batch {c['batch_size']}, vocab {c['vocab_size']}, "
      f"dropout {c['dropout']}, AdamW, float32 unless the row says bf16; {c['steps']} timed "
      "steps each in "
      f"{c['rounds']} alternating rounds after {WARMUP_STEPS} warm-up steps. HF attention: "
      f"{c['hf_attention']}.",
      '',
      f"f32 matmul peak ({c['peak_matmul']}): XLA {peaks['xla'] / 1e9:,.0f} GFLOP/s, "
      f"torch {peaks['torch'] / 1e9:,.0f} GFLOP/s.",
      '',
      '| run | params | tokens/s | rounds min-max | vs PyTorch best | FLOPs/token '
      '| GFLOP/s '
      '| % XLA peak | % torch peak | loss at end |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for name, r in result['runs'].items():
    lines.append(
        f"| {LABELS[name]} | {r['params'] / 1e6:.2f} M | {r['tokens_per_s']:,.0f} "
        f"| {min(r['round_tokens_per_s']):,.0f}-{max(r['round_tokens_per_s']):,.0f} "
        f"| {r['vs_torch_best']:.2f}x | {r['flops_per_token'] / 1e6:.1f} M "
        f"| {r['flops_per_s'] / 1e9:.1f} | {100 * r['flops_per_s'] / peaks['xla']:.0f} % "
        f"| {100 * r['flops_per_s'] / peaks['torch']:.0f} % | {r['loss']:.2f} |")
  lines += [f'| {LABELS[name]}: {reason} |' + ' - |' * 9
            for name, reason in result['skipped'].items()]
  lines += [
      '',
      'FLOPs/token: 6 x the matmul parameters that run, plus attention (QK^T and AV, forward '
      'and backward), plus the tied vocabulary projection on the positions the MLM head runs '
      'on; embedding lookups are not counted. HF rows count the same FLOPs as the ssljax '
      "all-positions row. ssljax's parameter count includes a pooler and sentence head that "
      'objective mlm never runs (no FLOPs counted for them). tokens/s counts all '
      'batch x seq positions, padding included, on both sides.',
  ]
  return '\n'.join(lines) + '\n'


def measure(args, device):
  """Builds the trainers on shared batches, warms them up, and times them."""
  with tempfile.TemporaryDirectory() as workdir:  # later setups reuse the tokenizer
    runs = {name: ssljax.pretrain.loop.setup(
        bench_common.mlm_config(args, WARMUP_STEPS + args.steps, *how), workdir)
            for name, how in SSLJAX_RUNS.items()}
    for run in runs.values():
      run.manager.close()  # no checkpoints here
  batches = [next(runs[ALL].batches) for _ in range(WARMUP_STEPS + args.steps)]
  trainers = {name: bench_common.ssljax_trainer(run) for name, run in runs.items()}
  bf16_skipped = torch_bf16_skip_reason(device)
  skipped = {name: bf16_skipped for name, (bf16, _) in HF_RUNS.items() if bf16 and bf16_skipped}
  for name, (bf16, compiled) in HF_RUNS.items():
    if name not in skipped:
      trainers[name], model = torch_twin.bert_mlm_trainer(runs[ALL], device, bf16, compiled)
  info = {name: {'params': sum(x.size for x in jax.tree.leaves(run.strategy.abstract.params)),
                 'flops_per_token': ssljax.pretrain.loop.flops_per_token(run)}
          for name, run in runs.items()}
  for name in HF_RUNS.keys() - skipped.keys():
    info[name] = {'params': sum(p.numel() for p in model.parameters()),
                  'flops_per_token': info[ALL]['flops_per_token']}
  peaks = {'xla': bench_common.best_of(metrics.measure_peak_flops),
           'torch': bench_common.best_of(lambda: torch_peak_flops(device))}
  for train in trainers.values():
    train(batches[:WARMUP_STEPS])
  seconds, losses = bench_common.time_rounds(trainers, batches[WARMUP_STEPS:], args.rounds)
  cfg = runs[ALL].model_cfg
  config = {
      'layers': cfg.num_layers, 'hidden': cfg.hidden_size, 'heads': cfg.num_heads,
      'mlp': cfg.mlp_dim, 'seq_len': args.seq_len, 'batch_size': args.batch_size,
      'vocab_size': cfg.vocab_size, 'dropout': cfg.dropout_rate,
      'attention_dropout': cfg.attention_dropout_rate, 'steps': args.steps,
      'rounds': args.rounds, 'hf_attention': model.config._attn_implementation,
      'peak_matmul': ('2048x2048, TF32 in both' if device.type == 'cuda'
                      else '2048x2048 float32') + ', best of 3',
  }
  return config, peaks, info, seconds, losses, skipped


def main():
  args = parse_args()
  torch.set_num_threads(os.cpu_count())
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  if device.type == 'cuda':
    torch.set_float32_matmul_precision('high')  # TF32, as XLA's default f32 matmul on GPU
  config, peaks, info, seconds, losses, skipped = measure(args, device)
  tokens_per_step = args.batch_size * args.seq_len
  chunks = [len(c) for c in np.array_split(np.arange(args.steps), args.rounds)]
  tokens_per_s = {name: tokens_per_step * args.steps / sum(s) for name, s in seconds.items()}
  torch_best = max(tokens_per_s[name] for name in HF_RUNS if name not in skipped)
  result = {
      'backend': jax.default_backend(),
      'machine': torch_twin.machine(device, peaks['xla']),  # the XLA peak of the MFU columns
      'config': config,
      'peak_flops': peaks,
      'runs': {
          name: {
              'label': LABELS[name],
              'params': int(info[name]['params']),
              'tokens_per_s': tokens_per_s[name],
              'round_tokens_per_s': [tokens_per_step * n / s
                                     for n, s in zip(chunks, seconds[name], strict=True)],
              'vs_torch_best': tokens_per_s[name] / torch_best,
              'flops_per_token': info[name]['flops_per_token'],
              'flops_per_s': tokens_per_s[name] * info[name]['flops_per_token'],
              'loss': losses[name],
          } for name in LABELS if name not in skipped
      },
      'skipped': skipped,
  }
  bench_common.write(args.out_dir, bench_common.results_name('bench_vs_hf', args), result,
                     markdown(result))


if __name__ == '__main__':
  main()
