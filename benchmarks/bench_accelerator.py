"""bf16 training throughput and MFU of ssljax's BERT-base and GPT-2 small configs against a
tuned PyTorch baseline on the same accelerator (issue 11: MFU >= 50 % on an H100/H200).

  pip install -e '.[bench]'   # on a GPU host: a CUDA build of torch, not the CPU pin
  python benchmarks/bench_accelerator.py                           # BERT 256 x 128, GPT 16 x 1024
  python benchmarks/bench_accelerator.py --set model.remat=False --gpt-batch 32
  python benchmarks/bench_accelerator.py --smoke                   # tiny sizes, any device, CPU too

ssljax trains `configs/bert_base.py` (MLM + NSP, seq 128) and `configs/gpt_small.py` (seq
1024) through `ssljax.pretrain.loop.setup` and its strategy's step, as `ssljax pretrain` does.
PyTorch trains Hugging Face `BertForPreTraining` / `GPT2LMHeadModel` of the same sizes under
bf16 autocast with `sdpa` attention, fused AdamW and `torch.compile`, on the same batches.
Steps are timed in rounds that alternate between the two. Prints, per model and side,
tokens/s, step time, MFU against the device's published dense bf16 peak (on CPU: the
measured XLA float32 matmul peak), the loss at the first and the last step, and the
ssljax / PyTorch ratio; writes `accelerator_<backend>.{json,md}` (`_smoke` appended with
--smoke) under --out-dir.
"""

import argparse
import gc
import os
import pathlib
import re
import tempfile
import time

# On a GPU both frameworks share the device: JAX must not take 75 % of its memory up front.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

import jax
import numpy as np
import torch
import torch.nn.functional as F
import transformers

import ssljax.config
import ssljax.pretrain.loop
from ssljax.pretrain import masking, metrics

import bench_common
import torch_twin

CONFIGS = pathlib.Path(__file__).parents[1] / 'configs'
MODELS = {
    'bert': ('BERT-base, MLM + NSP', CONFIGS / 'bert_base.py'),
    'gpt': ('GPT-2 small, next token', CONFIGS / 'gpt_small.py'),
}
DEFAULT_BATCH = {'bert': 256, 'gpt': 16}  # fit one 80-140 GB GPU with both frameworks loaded
SMOKE_SEQ_LEN = {'bert': 32, 'gpt': 64}
SMOKE_OVERRIDES = ['model.num_layers=2', 'model.hidden_size=64', 'model.num_heads=2',
                   'model.mlp_dim=256', 'tokenizer.vocab_size=1000']
WARMUP_STEPS = 3  # the first compiles (XLA, inductor); the others catch recompiles
# Published dense (no sparsity) bf16 FLOP/s per device, matched on the device name in order.
PEAKS = (
    ('H100 PCIe', r'h100.*pcie', 756e12),
    ('H100 SXM', r'h100(?!.*nvl)', 989e12),  # the NVL cards have lower clocks: n/a
    ('H200', r'h200(?!.*nvl)', 989e12),
    ('A100', r'a100', 312e12),
    ('L4', r'\bl4\b', 121e12),
    ('TPU v4', r'tpu v4', 275e12),
    ('TPU v5e', r'tpu v5 ?(lite|e)', 197e12),
    ('TPU v5p', r'tpu v5', 459e12),
    ('TPU v6e', r'tpu v6 ?(lite|e)', 918e12),
)
SIDES = ('ssljax', 'pytorch')


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--models', default='bert,gpt', help='comma-separated: bert, gpt')
  p.add_argument('--bert-batch', type=int, help=f"global batch (default {DEFAULT_BATCH['bert']})")
  p.add_argument('--gpt-batch', type=int, help=f"global batch (default {DEFAULT_BATCH['gpt']})")
  p.add_argument('--steps', type=int, help='timed steps per run (default 20; 3 with --smoke)')
  p.add_argument('--rounds', type=int, default=4, help='the timed steps alternate in rounds')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='config override for both models, e.g. model.remat=False')
  p.add_argument('--no-compile', action='store_true', help='PyTorch runs eagerly')
  p.add_argument('--smoke', action='store_true',
                 help='2 layers, hidden 64, seq 32/64, batch 4, vocab 1000: checks the script')
  p.add_argument('--out-dir', default=str(bench_common.RESULTS))
  args = p.parse_args()
  args.models = args.models.split(',')
  if unknown := set(args.models) - set(MODELS):
    p.error(f'--models: unknown {", ".join(sorted(unknown))}; choose from bert, gpt')
  small = 4 if args.smoke else None
  args.batch = {'bert': args.bert_batch or small or DEFAULT_BATCH['bert'],
                'gpt': args.gpt_batch or small or DEFAULT_BATCH['gpt']}
  args.steps = args.steps or (3 if args.smoke else 20)
  args.rounds = min(args.rounds, args.steps)
  return args


def ssljax_config(kind, args):
  """The model's config file with the benchmark's batch and length, a short warmup (so the
  loss falls within the run: speed does not depend on the learning rate), then --set.

  The model's vocabulary is the config's tokenizer.vocab_size even when the built-in corpus
  yields a smaller tokenizer, so the sizes are the published model's.
  """
  overrides = [f'train.batch_size={args.batch[kind]}',
               f'train.steps={WARMUP_STEPS + args.steps}',
               f'optimizer.warmup_steps={WARMUP_STEPS}', 'train.progress=False']
  if args.smoke:
    overrides += SMOKE_OVERRIDES + [f'data.seq_len={SMOKE_SEQ_LEN[kind]}']
  config = ssljax.config.load(str(MODELS[kind][1]), overrides + args.set)
  config.model.vocab_size = config.model.vocab_size or config.tokenizer.vocab_size
  return config


def published_peak(device_name: str):
  """(table entry, dense bf16 FLOP/s) for a device name, or (None, None)."""
  for entry, pattern, flops in PEAKS:
    if re.search(pattern, device_name.lower()):
      return entry, flops
  return None, None


def peaks(torch_device):
  """Per side: the FLOP/s MFU divides by, and where it comes from (None: MFU is n/a)."""
  if jax.default_backend() == 'cpu':
    measured = {'flops': bench_common.best_of(metrics.measure_peak_flops),
                'source': 'measured XLA float32 matmul peak (CPU: no published bf16 peak)'}
    return {'ssljax': measured, 'pytorch': measured}
  names = {'ssljax': jax.devices()[0].device_kind}
  if torch_device is not None and torch_device.type == 'cuda':
    names['pytorch'] = torch.cuda.get_device_name(torch_device)
  out = {}
  for side, name in names.items():
    entry, flops = published_peak(name)
    out[side] = {'flops': flops, 'source': (
        f'published dense bf16 peak of {entry}' if entry else
        f'n/a: {name!r} is not in the published-peak table (PEAKS in this script)')}
  return out


def bert_model(run):
  cfg = run.model_cfg
  return transformers.BertForPreTraining(transformers.BertConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      intermediate_size=cfg.mlp_dim, hidden_act=cfg.activation,
      hidden_dropout_prob=cfg.dropout_rate,
      attention_probs_dropout_prob=cfg.attention_dropout_rate,
      max_position_embeddings=cfg.max_len, type_vocab_size=cfg.type_vocab_size,
      layer_norm_eps=cfg.layer_norm_eps, pad_token_id=run.tokenizer.pad_id,
      attn_implementation='sdpa'))


def gpt_model(run):
  cfg = run.model_cfg
  model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=cfg.vocab_size, n_positions=cfg.max_len, n_embd=cfg.hidden_size,
      n_layer=cfg.num_layers, n_head=cfg.num_heads, n_inner=cfg.mlp_dim,
      activation_function='gelu_pytorch_tanh',  # GPT-2's tanh GELU as one fused kernel
      resid_pdrop=cfg.dropout_rate, embd_pdrop=cfg.dropout_rate,
      attn_pdrop=cfg.attention_dropout_rate, layer_norm_epsilon=cfg.layer_norm_eps,
      bos_token_id=None, eos_token_id=None,  # GPT-2's 50256 lies outside this vocabulary
      attn_implementation='sdpa'))
  # transformers finds no loss by this class name and logs so inside forward: a graph break
  model.loss_type = 'ForCausalLM'
  return model


def bert_loss(model, run, device):
  """MLM + NSP loss of a batch, masked on device inside the step as ssljax masks.

  Each row gets round(0.15 x its tokens) chosen positions among K = ceil(0.15 L) slots, 80 /
  10 / 10 [MASK] / random / kept, and the MLM head runs on those K positions only: the
  layout of NVIDIA's tuned BERT, and ssljax's default, so both do the same FLOPs.
  """
  tok, mlm = run.tokenizer, run.config.mlm
  k = masking.num_predictions(run.config.data.seq_len, mlm.rate)
  special = torch.as_tensor(tok.special_ids, device=device)
  normal = torch.as_tensor(tok.normal_ids, device=device)

  def loss(t):
    ids_BxL = t['input_ids']
    maskable_BxL = (t['doc_ids'] > 0) & ~torch.isin(ids_BxL, special)
    score_BxL = torch.where(maskable_BxL, torch.rand(ids_BxL.shape, device=device), 2.0)
    positions_BxK = score_BxL.argsort(dim=1)[:, :k]
    maskable_B = maskable_BxL.sum(1)
    num_B = torch.minimum((maskable_B * mlm.rate).round().clamp(1, k), maskable_B)
    weights_BxK = (torch.arange(k, device=device) < num_B[:, None]).float()
    targets_BxK = ids_BxL.gather(1, positions_BxK)
    action_BxK = torch.rand(positions_BxK.shape, device=device)
    random_BxK = normal[torch.randint(len(normal), positions_BxK.shape, device=device)]
    new_BxK = torch.where(
        action_BxK < mlm.mask_fraction, tok.mask_id,
        torch.where(action_BxK < mlm.mask_fraction + mlm.random_fraction, random_BxK,
                    targets_BxK))
    masked_BxL = ids_BxL.scatter(1, positions_BxK,
                                 torch.where(weights_BxK > 0, new_BxK, targets_BxK))
    sequence_BxLxH, pooled_BxH = model.bert(
        input_ids=masked_BxL, attention_mask=(t['doc_ids'] > 0).long(),
        token_type_ids=t['segment_ids'], position_ids=t['positions'])[:2]
    hidden_BxKxH = sequence_BxLxH.gather(
        1, positions_BxK[..., None].expand(-1, -1, sequence_BxLxH.shape[-1]))
    logits_BxKxV = model.cls.predictions(hidden_BxKxH)
    xent_BK = F.cross_entropy(logits_BxKxV.flatten(0, 1).float(), targets_BxK.flatten(),
                              reduction='none')
    weights_BK = weights_BxK.flatten()
    mlm_loss = (xent_BK * weights_BK).sum() / weights_BK.sum().clamp(min=1.0)
    nsp_logits_Bx2 = model.cls.seq_relationship(pooled_BxH)
    return mlm_loss + F.cross_entropy(nsp_logits_Bx2.float(), t['sentence_label'])

  return loss


def gpt_loss(model, run, device):
  """Next-token loss inside each packed document, ssljax's targets; attention is causal over
  the whole row (what lets sdpa pick flash attention), where ssljax also masks across
  document boundaries."""
  del run, device

  def loss(t):
    doc_BxL = t['doc_ids']
    same_doc_BxL = F.pad((doc_BxL[:, 1:] == doc_BxL[:, :-1]) & (doc_BxL[:, 1:] > 0), (1, 0))
    labels_BxL = torch.where(same_doc_BxL, t['input_ids'], -100)
    return model(input_ids=t['input_ids'], position_ids=t['positions'],
                 labels=labels_BxL).loss

  return loss


TORCH_MODELS = {'bert': (bert_model, bert_loss), 'gpt': (gpt_model, gpt_loss)}


def torch_trainer(kind, run, device, compiled: bool):
  """(train, parameter count) for the Hugging Face twin, trained as ssljax's config says:
  torch_twin's AdamW (fused), schedule and clipping; bf16 autocast over float32 weights, as
  ssljax computes in bf16 over float32 parameters; the loss function `torch.compile`d when
  `compiled`."""
  torch.manual_seed(run.config.train.seed)
  build_model, build_loss = TORCH_MODELS[kind]
  model = build_model(run).to(device).train()
  loss_fn = build_loss(model, run, device)
  if compiled:
    loss_fn = torch.compile(loss_fn)
  opt = run.config.optimizer
  optimizer, schedule = torch_twin.adamw(model, opt, run.config.train.steps, fused=True)
  bf16 = run.config.model.dtype == 'bfloat16'

  def step(batch):
    t = {k: torch.from_numpy(np.asarray(v, np.int64)).to(device) for k, v in batch.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
      loss = loss_fn(t)
    loss.backward()
    torch_twin.update(optimizer, schedule, opt.clip_norm)
    return loss.detach()

  return torch_twin.trainer(step, device), sum(p.numel() for p in model.parameters())


def measure(kind, args, device, workdir, compiled):
  """Sets up both sides on shared batches, warms them up, times them; returns the figures."""
  config = ssljax_config(kind, args)
  run = ssljax.pretrain.loop.setup(config, workdir / kind)
  run.manager.close()  # no checkpoints here
  batches = [next(run.batches) for _ in range(WARMUP_STEPS + args.steps)]
  trainers = {'ssljax': bench_common.ssljax_trainer(run)}
  params = {'ssljax': sum(x.size for x in jax.tree.leaves(run.strategy.abstract.params))}
  if device is not None:
    trainers['pytorch'], params['pytorch'] = torch_trainer(kind, run, device, compiled)
  first_loss, warmup_s = {}, {}
  for name, train in trainers.items():
    start = time.perf_counter()
    first_loss[name] = train(batches[:1])
    train(batches[1:WARMUP_STEPS])
    warmup_s[name] = time.perf_counter() - start
  seconds, losses = bench_common.time_rounds(trainers, batches[WARMUP_STEPS:], args.rounds)
  cfg, seq_len = run.model_cfg, run.config.data.seq_len
  k = masking.num_predictions(seq_len, run.config.mlm.rate)
  # PyTorch's MLM head always runs on the K masked positions (see bert_loss).
  torch_flops = metrics.flops_per_token(run.strategy.abstract.params, cfg,
                                        run.config.objective, seq_len, k / seq_len)
  flops = {'ssljax': ssljax.pretrain.loop.flops_per_token(run), 'pytorch': torch_flops}
  devices = {'ssljax': 1 if jax.default_backend() == 'cpu' else run.strategy.num_devices,
             'pytorch': 1}
  tokens_per_step = run.config.train.batch_size * seq_len
  chunks = [len(c) for c in np.array_split(np.arange(args.steps), args.rounds)]
  figures = {
      name: {
          'params': int(params[name]),
          'devices': devices[name],
          'tokens_per_s': tokens_per_step * args.steps / sum(seconds[name]),
          'round_tokens_per_s': [tokens_per_step * n / s
                                 for n, s in zip(chunks, seconds[name], strict=True)],
          'step_s': sum(seconds[name]) / args.steps,
          'warmup_s': warmup_s[name],
          'flops_per_token': flops[name],
          'loss_first': first_loss[name],
          'loss_end': losses[name],
          'trains': bool(np.isfinite(losses[name]) and losses[name] < first_loss[name]),
      } for name in trainers}
  m = run.config.model
  setup = {
      'config': MODELS[kind][1].name, 'overrides': args.set,
      'layers': cfg.num_layers, 'hidden': cfg.hidden_size, 'heads': cfg.num_heads,
      'mlp': cfg.mlp_dim, 'vocab_size': cfg.vocab_size,
      'tokenizer_vocab_size': run.tokenizer.vocab_size, 'seq_len': seq_len,
      'batch_size': run.config.train.batch_size, 'objective': run.config.objective,
      'mlm_positions': (('K' if run.config.mlm.masked_positions_only else 'all')
                        if run.config.objective != 'clm' else None),
      'dtype': m.dtype, 'scan_layers': m.scan_layers, 'remat': m.remat,
      'dropout': m.dropout_rate, 'attention_dropout': m.attention_dropout_rate,
      'mesh': (dict(run.strategy.mesh.shape) if run.config.parallel.strategy == 'jit'
               else 'pmap'),
  }
  del trainers, run  # frees both sides' device memory before the next model
  gc.collect()
  if device is not None and device.type == 'cuda':
    torch.cuda.empty_cache()
  return setup, figures


def add_mfu(figures, peak):
  """Adds FLOP/s, MFU (None without a peak) and ssljax's per-device ratio to PyTorch."""
  for name, r in figures.items():
    r['flops_per_s'] = r['tokens_per_s'] * r['flops_per_token']
    p = peak[name]['flops']
    r['mfu'] = r['flops_per_s'] / (p * r['devices']) if p else None
  if 'pytorch' in figures:
    per_device = lambda r: r['tokens_per_s'] / r['devices']
    figures['ssljax']['vs_pytorch'] = per_device(figures['ssljax']) / per_device(
        figures['pytorch'])


def markdown(result):
  m = result['machine']
  peak, goal = result['peak_flops'], result['goal_mfu']
  device = m['jax_device'] + (f", torch {m['torch_device']}" if 'torch_device' in m else '')
  lines = [
      f"# ssljax vs PyTorch, bf16 training on {device}"
      + (' (smoke: tiny sizes)' if result['smoke'] else ''),
      '',
      f"{bench_common.describe(m)} torch threads {m['torch_threads']}.",
      '',
  ]
  shared = len({p['source'] for p in peak.values()}) == 1
  for side, p in (list(peak.items())[:1] if shared else peak.items()):
    value = f"{p['flops'] / 1e12:.4g} TFLOP/s, " if p['flops'] else ''
    lines.append(f"- MFU peak, {'both sides' if shared else side}: {value}{p['source']}.")
  lines.append(f"- PyTorch: {result['pytorch']}.")
  lines += ['', '| model | run | devices | params | tokens/s | rounds min-max | step ms '
            '| FLOPs/token | TFLOP/s | MFU | vs PyTorch | loss first -> end |',
            '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for kind, entry in result['models'].items():
    for name, r in entry['runs'].items():
      mfu = f"{100 * r['mfu']:.1f} %" if r['mfu'] is not None else 'n/a'
      ratio = f"{r['vs_pytorch']:.2f}x" if 'vs_pytorch' in r else ''
      falls = '' if r['trains'] else ' (not falling)'
      lines.append(
          f"| {MODELS[kind][0]} | {name} | {r['devices']} | {r['params'] / 1e6:.1f} M "
          f"| {r['tokens_per_s']:,.0f} | {min(r['round_tokens_per_s']):,.0f}-"
          f"{max(r['round_tokens_per_s']):,.0f} | {1e3 * r['step_s']:,.1f} "
          f"| {r['flops_per_token'] / 1e6:,.1f} M | {r['flops_per_s'] / 1e12:.4g} | {mfu} "
          f"| {ratio} | {r['loss_first']:.3f} -> {r['loss_end']:.3f}{falls} |")
  lines.append('')
  for kind, entry in result['models'].items():
    c = entry['setup']
    lines.append(
        f"- {MODELS[kind][0]}: configs/{c['config']}"
        + (f" with --set {' '.join(c['overrides'])}" if c['overrides'] else '')
        + f"; {c['layers']} layers, hidden {c['hidden']}, {c['heads']} heads, mlp {c['mlp']}, "
        f"vocab {c['vocab_size']} (tokenizer {c['tokenizer_vocab_size']}), batch "
        f"{c['batch_size']} x seq {c['seq_len']}, {c['dtype']} compute, scan_layers "
        f"{c['scan_layers']}, remat {c['remat']}, dropout {c['dropout']} / attention "
        f"{c['attention_dropout']}, mesh {c['mesh']}"
        + (f", MLM head on {c['mlm_positions']} positions" if c['mlm_positions'] else '')
        + '; warm-up (compile) ' + ', '.join(f"{n} {r['warmup_s']:.0f} s"
                                             for n, r in entry['runs'].items()) + '.')
  lines += [
      '',
      f"{result['steps']} timed steps per run in {result['rounds']} alternating rounds after "
      f"{WARMUP_STEPS} warm-up steps, each round ending on a device sync; host-to-device "
      'batch copies are inside the step on both sides. FLOPs/token is '
      "`ssljax.pretrain.metrics.flops_per_token` for both sides (model FLOPs: 6 x the matmul "
      'weights that run, the tied vocabulary projection on the positions the head runs on, '
      'attention QK^T and AV over the full L x L, forward and backward; rematerialised '
      'recomputation is not counted). MFU = FLOP/s / (peak x devices); vs PyTorch is '
      'tokens/s per device. loss first -> end: the loss of the first step and of the last; '
      '"not falling" marks a side that did not train (the warmup is shortened to '
      f'{WARMUP_STEPS} steps so the loss falls within the run; the learning rate does not '
      'change the speed).',
  ]
  if result['backend'] == 'cpu':
    lines += ['', 'On a shared CPU these figures only check that the script runs: the '
              'denominator is a float32 peak, and eager PyTorch at tiny sizes measures its '
              'per-op overhead and the other jobs on the machine.']
  if goal is not None:
    lines += ['', f'Goal (issue 11), ssljax MFU >= 50 %: {goal}.']
  return '\n'.join(lines) + '\n'


def goal_status(result):
  """Each model's ssljax MFU against the 50 % goal, or None where no published peak applies."""
  mfus = {kind: e['runs']['ssljax']['mfu'] for kind, e in result['models'].items()}
  if result['smoke'] or jax.default_backend() == 'cpu' or None in mfus.values():
    return None
  return ', '.join(f"{MODELS[kind][0]} {100 * mfu:.1f} % ({'met' if mfu >= 0.5 else 'not met'})"
                   for kind, mfu in mfus.items())


def describe_pytorch(device, compiled, why_eager):
  """What the PyTorch side runs, in words."""
  if device is None:
    return 'not run: JAX runs on a device torch cannot use here (torch_xla is not used)'
  mode = 'torch.compile (inductor)' if compiled else f'eager (no torch.compile: {why_eager})'
  tf32 = ', TF32 allowed' if device.type == 'cuda' else ''
  return (f'HF BertForPreTraining / GPT2LMHeadModel on {device.type}, sdpa attention, bf16 '
          f'autocast over float32 weights, fused AdamW, {mode}{tf32}')


def main():
  args = parse_args()
  torch.set_num_threads(os.cpu_count())
  backend = jax.default_backend()
  if torch.cuda.is_available():
    device = torch.device('cuda')
    torch.set_float32_matmul_precision('high')  # TF32 where a kernel stays in float32
  elif backend == 'cpu':
    device = torch.device('cpu')
  else:  # JAX on a TPU: torch has no device here (torch_xla is not used)
    device = None
  # inductor takes minutes per model on 2 CPU cores: smoke runs skip it there
  smoke_on_cpu = args.smoke and device is not None and device.type == 'cpu'
  compiled = not (args.no_compile or smoke_on_cpu)
  pytorch = describe_pytorch(device, compiled,
                             'no-compile' if args.no_compile else 'smoke on CPU')
  print(f'PyTorch: {pytorch}', flush=True)
  peak = peaks(device)
  host = torch_twin.machine(device or torch.device('cpu'))  # the load before the run
  models = {}
  with tempfile.TemporaryDirectory() as workdir:
    for kind in args.models:
      print(f'{MODELS[kind][0]}: setting up and timing', flush=True)
      setup, figures = measure(kind, args, device, pathlib.Path(workdir), compiled)
      add_mfu(figures, peak)
      models[kind] = {'setup': setup, 'runs': figures}
  result = {
      'backend': backend, 'smoke': args.smoke,
      'machine': host,
      'pytorch': pytorch, 'steps': args.steps, 'rounds': args.rounds,
      'peak_flops': peak, 'models': models,
  }
  result['goal_mfu'] = goal_status(result)
  name = f'accelerator_{backend}' + ('_smoke' if args.smoke else '')
  bench_common.write(args.out_dir, name, result, markdown(result))


if __name__ == '__main__':
  main()
