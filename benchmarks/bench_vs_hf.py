"""Training throughput of ssljax against Hugging Face `BertForMaskedLM` on one BERT MLM config.

  pip install -e '.[bench]'                             # torch==2.13.0, transformers
  python benchmarks/bench_vs_hf.py                      # 2-6 min on 2 CPU cores
  python benchmarks/bench_vs_hf.py --steps 40 --layers 2 --hidden 128

Both sides train the same model (sizes, vocabulary, dropout, tied MLM decoder) with AdamW,
global-norm clipping and the same warmup/linear-decay schedule, on the same batches, in
one process. ssljax runs four ways: with the MLM head on all L positions (the work Hugging
Face does: its loss ignores unmasked positions but its logits cover them all), on the
K = ceil(0.15 L) masked positions only (ssljax's default), that with bf16 compute, and that
with BERT's dropout 0.1. Hugging Face runs in float32 and under bf16 autocast, each eager
and `torch.compile`d (inductor); ratios are to the fastest of the four. Where torch's CPU
bf16 matmul is under a quarter of its f32 rate (no AVX-512 BF16 or AMX), the autocast runs
are listed as skipped. Steps are timed in rounds that alternate between all runs, so load
from other jobs on a shared machine hits all alike.
Writes `bench_vs_hf_<backend>[_<tag>].json` and `.md` under --out-dir.
"""

import argparse
import os
import pathlib
import tempfile
import time

# On a GPU both frameworks share the device: JAX must not take 75 % of its memory up front.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

import jax
import numpy as np
import torch
import transformers

import ssljax.config
import ssljax.pretrain.loop
from ssljax.pretrain import metrics

import bench_common

CONFIG = pathlib.Path(__file__).parents[1] / 'configs' / 'bert_tiny.py'
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


def add_model_args(p: argparse.ArgumentParser) -> None:
  """The model, batch and output flags, shared with profile_step.py."""
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--seq-len', type=int, default=128)
  p.add_argument('--layers', type=int, default=4)
  p.add_argument('--hidden', type=int, default=256, help='heads = hidden/64, mlp = 4 hidden')
  p.add_argument('--vocab-size', type=int, default=8000)
  p.add_argument('--out-dir', default=str(pathlib.Path(__file__).parent / 'results'))
  p.add_argument('--tag', default='', help='appended to the results name, e.g. avx2 for a '
                 'run on a different CPU than the recorded one')


def results_name(prefix: str, args) -> str:
  return '_'.join([prefix, jax.default_backend()] + ([args.tag] if args.tag else []))


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--steps', type=int, default=20, help='timed steps per run')
  p.add_argument('--rounds', type=int, default=4, help='the timed steps alternate in rounds')
  add_model_args(p)
  args = p.parse_args()
  if not 1 <= args.rounds <= args.steps:
    p.error(f'--rounds={args.rounds} must lie in [1, --steps={args.steps}]')
  return args


def ssljax_config(args, masked_only, dtype, dropout):
  return ssljax.config.load(str(CONFIG), [
      'objective=mlm', f'model.num_layers={args.layers}', f'model.hidden_size={args.hidden}',
      f'model.num_heads={max(1, args.hidden // 64)}', f'model.mlp_dim={4 * args.hidden}',
      f'model.max_len={args.seq_len}', f'data.seq_len={args.seq_len}',
      f'train.batch_size={args.batch_size}', f'train.steps={WARMUP_STEPS + args.steps}',
      f'tokenizer.vocab_size={args.vocab_size}', f'mlm.masked_positions_only={masked_only}',
      f'model.dtype={dtype}', f'model.dropout_rate={dropout}',
      f'model.attention_dropout_rate={dropout}', 'train.progress=False'])


def ssljax_trainer(run):
  """A function that trains on a list of batches and returns the last loss once done."""
  state = run.strategy.init(run.config.train.seed)

  def train(batches):
    nonlocal state
    for batch in batches:
      state, step_metrics = run.strategy.step(state, run.strategy.put_batch(batch))
    jax.block_until_ready(state)
    return float(step_metrics['loss'])

  return train


def hf_model(run):
  cfg = run.model_cfg
  config = transformers.BertConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      intermediate_size=cfg.mlp_dim, hidden_act='gelu', hidden_dropout_prob=cfg.dropout_rate,
      attention_probs_dropout_prob=cfg.attention_dropout_rate,
      max_position_embeddings=cfg.max_len,
      type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layer_norm_eps,
      pad_token_id=run.tokenizer.pad_id)
  return transformers.BertForMaskedLM(config)


def hf_trainer(run, device, bf16: bool, compiled: bool):
  """As `ssljax_trainer`, for BertForMaskedLM trained the way a torch user would; with
  `bf16` the forward pass runs under torch.autocast (bfloat16), with `compiled` the model
  is `torch.compile`d (inductor, compiled during the warm-up steps).

  Masking runs inside the timed step, as ssljax's does on device: BERT's 80/10/10 recipe,
  drawn per token as Hugging Face's DataCollatorForLanguageModeling draws it.
  """
  torch.manual_seed(run.config.train.seed)
  model = hf_model(run).to(device).train()
  forward = torch.compile(model) if compiled else model
  opt_cfg, mlm_cfg = run.config.optimizer, run.config.mlm
  no_decay = [p for n, p in model.named_parameters() if n.endswith('bias') or 'LayerNorm' in n]
  decay = [p for n, p in model.named_parameters() if not any(p is q for q in no_decay)]
  optimizer = torch.optim.AdamW(
      [{'params': decay}, {'params': no_decay, 'weight_decay': 0.0}], lr=opt_cfg.learning_rate,
      betas=(opt_cfg.b1, opt_cfg.b2), eps=opt_cfg.eps, weight_decay=opt_cfg.weight_decay)
  schedule = transformers.get_linear_schedule_with_warmup(
      optimizer, opt_cfg.warmup_steps, run.config.train.steps)
  tok = run.tokenizer
  special = torch.as_tensor(tok.special_ids, device=device)
  normal = torch.as_tensor(tok.normal_ids, device=device)

  def step(batch):
    t = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
    ids = t['input_ids'].long()
    chosen = ((torch.rand(ids.shape, device=device) < mlm_cfg.rate)
              & (t['doc_ids'] > 0) & ~torch.isin(ids, special))
    action = torch.rand(ids.shape, device=device)
    replace = normal[torch.randint(len(normal), ids.shape, device=device)].long()
    masked = torch.where(chosen & (action < mlm_cfg.mask_fraction), tok.mask_id, ids)
    masked = torch.where(chosen & (action >= mlm_cfg.mask_fraction)
                         & (action < mlm_cfg.mask_fraction + mlm_cfg.random_fraction),
                         replace, masked)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
      out = forward(input_ids=masked, attention_mask=(t['doc_ids'] > 0).long(),
                  token_type_ids=t['segment_ids'].long(), position_ids=t['positions'].long(),
                  labels=torch.where(chosen, ids, -100))
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), opt_cfg.clip_norm)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return out.loss.detach()

  return torch_trainer(step, device), model


def torch_trainer(step, device):
  """A function that runs `step` on each of a list of batches and returns the last loss
  once the device is done, as `ssljax_trainer` does."""

  def train(batches):
    for batch in batches:
      loss = step(batch)
    if device.type == 'cuda':
      torch.cuda.synchronize()
    return float(loss)

  return train


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
  rates = {dtype: best_of(lambda d=dtype: torch_peak_flops(device, size, 3, d))
           for dtype in (torch.float32, torch.bfloat16)}
  ratio = rates[torch.bfloat16] / rates[torch.float32]
  if ratio >= BF16_MIN_RATIO:
    return None
  return (f"skipped: torch's bf16 matmul ran {rates[torch.bfloat16] / 1e9:.1f} GFLOP/s on "
          f"this CPU ({bench_common.cpu_isa()}), {ratio:.3f}x its float32 rate "
          f"({size}x{size}, best of 3), so autocast cannot be PyTorch's fastest mode here")


def best_of(measure, tries=3):
  """Peaks are the best of a few tries: other jobs on a shared machine only lower them."""
  return max(measure() for _ in range(tries))


def time_rounds(trainers, batches, rounds):
  """Seconds per round and last loss of each trainer; rounds rotate who goes first."""
  seconds, losses = {name: [] for name in trainers}, {}
  names = list(trainers)
  for r, chunk in enumerate(np.array_split(np.arange(len(batches)), rounds)):
    for name in names[r % len(names):] + names[:r % len(names)]:
      start = time.perf_counter()
      losses[name] = trainers[name]([batches[i] for i in chunk])
      seconds[name].append(time.perf_counter() - start)
  return seconds, losses


def machine(torch_device, peak_flops=None):
  return bench_common.machine(
      'torch', 'transformers', peak_flops=peak_flops,
      torch_device=(torch.cuda.get_device_name(torch_device) if torch_device.type == 'cuda'
                    else 'cpu'),
      torch_threads=torch.get_num_threads())


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
    runs = {name: ssljax.pretrain.loop.setup(ssljax_config(args, *how), workdir)
            for name, how in SSLJAX_RUNS.items()}
    for run in runs.values():
      run.manager.close()  # no checkpoints here
  batches = [next(runs[ALL].batches) for _ in range(WARMUP_STEPS + args.steps)]
  trainers = {name: ssljax_trainer(run) for name, run in runs.items()}
  bf16_skipped = torch_bf16_skip_reason(device)
  skipped = {name: bf16_skipped for name, (bf16, _) in HF_RUNS.items() if bf16 and bf16_skipped}
  for name, (bf16, compiled) in HF_RUNS.items():
    if name not in skipped:
      trainers[name], model = hf_trainer(runs[ALL], device, bf16, compiled)
  info = {name: {'params': sum(x.size for x in jax.tree.leaves(run.strategy.abstract.params)),
                 'flops_per_token': ssljax.pretrain.loop.flops_per_token(run)}
          for name, run in runs.items()}
  for name in HF_RUNS.keys() - skipped.keys():
    info[name] = {'params': sum(p.numel() for p in model.parameters()),
                  'flops_per_token': info[ALL]['flops_per_token']}
  peaks = {'xla': best_of(metrics.measure_peak_flops),
           'torch': best_of(lambda: torch_peak_flops(device))}
  for train in trainers.values():
    train(batches[:WARMUP_STEPS])
  seconds, losses = time_rounds(trainers, batches[WARMUP_STEPS:], args.rounds)
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
      'machine': machine(device, peaks['xla']),  # the XLA peak of the MFU columns
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
  bench_common.write(args.out_dir, results_name('bench_vs_hf', args), result, markdown(result))


if __name__ == '__main__':
  main()
