"""Where the time of one BERT MLM training step goes, in ssljax and in Hugging Face/torch.

  python benchmarks/profile_step.py                 # bench_vs_hf.py's model; ~2 min on 2 CPU cores
  python benchmarks/profile_step.py --tag avx2      # results name for a CPU unlike the recorded one

Trains bench_vs_hf.py's model both ways (ssljax's default: f32, MLM head on the masked
positions; HF BertForMaskedLM eager f32) on the same batches, and profiles --steps steps of
each with the framework's own profiler: `jax.profiler` (read back by
`ssljax.pretrain.profile`) and `torch.profiler`. Ops are put in four groups: matrix
products, attention (torch's fused SDPA kernel), the optimizer update, and the rest
(elementwise, norms, softmax, reductions, gathers). Writes profile_step_<backend>[_<tag>]
.{json,md} under --out-dir.

Both sides time an op on the thread that launched it, its worker threads' work inside that
span: torch's self times add up to its step's wall time; XLA's exceed it where XLA runs
independent ops side by side on different threads.
"""

import argparse
import os
import re
import tempfile
import time

import torch

import ssljax.pretrain.loop
from ssljax.pretrain import profile

import bench_common
import torch_twin

# Op name patterns of each group: XLA's HLO names (its matmul libraries' fusions included)
# and torch's aten names.
GROUPS = {
    'matrix products': r'^(dot|ynn_fusion|xnn_fusion|onednn|convolution|__onednn\$matmul)'
                       r'|^aten::(mm|addmm|bmm|baddbmm|matmul|linear)$',
    'attention kernel': r'^aten::_scaled_dot_product|^aten::scaled_dot_product',
    'optimizer update': r'^Optimizer\.step|^aten::_fused_adamw|^aten::_foreach_',
}


def group_of(name: str) -> str:
  return next((g for g, pattern in GROUPS.items() if re.search(pattern, name)), 'the rest')


def grouped(seconds: dict[str, float]) -> dict[str, float]:
  out = dict.fromkeys([*GROUPS, 'the rest'], 0.0)
  for name, s in seconds.items():
    out[group_of(name)] += s
  return out


def torch_op_seconds(step, steps: int) -> dict[str, float]:
  """{aten op: self seconds per step}, as `profile.op_seconds` gives XLA's."""
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(steps):
      step()
  rows = {e.key: e.self_cpu_time_total * 1e-6 / steps for e in prof.key_averages()
          if e.self_cpu_time_total > 0}
  return dict(sorted(rows.items(), key=lambda kv: -kv[1]))


def wall_seconds(step, steps: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    step()
  return (time.perf_counter() - start) / steps


def markdown(result) -> str:
  lines = ['# Where a BERT MLM training step spends its time: ssljax vs Hugging Face/torch', '',
           bench_common.describe(result['machine']), '', result['model'], '',
           '| group | ssljax ms | ssljax share | torch ms | torch share |',
           '|---|---:|---:|---:|---:|']
  sides = result['sides']
  totals = {side: sum(r['groups'].values()) for side, r in sides.items()}
  for group in sides['ssljax']['groups']:
    cells = [f"{1e3 * sides[s]['groups'][group]:.0f} | "
             f"{100 * sides[s]['groups'][group] / totals[s]:.0f} %" for s in sides]
    lines.append(f"| {group} | {' | '.join(cells)} |")
  lines.append(f"| wall time per step | {1e3 * sides['ssljax']['wall_s']:.0f} | | "
               f"{1e3 * sides['torch']['wall_s']:.0f} | |")
  for side, title in (('ssljax', 'XLA ops (self time)'), ('torch', 'aten ops (self time)')):
    lines += ['', f'## {side}: {title}, by kind', '',
              profile.table(profile.by_kind(sides[side]['ops']))]
  lines += ['', __doc__.split('\n\n')[-1].strip(), '']
  return '\n'.join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--steps', type=int, default=5, help='profiled steps per side')
  bench_common.add_model_args(p)
  args = p.parse_args()
  if profile.compile_only_libtpu():  # jax.profiler would segfault
    raise SystemExit('profile_step: libtpu is installed but this machine has no TPU; both '
                     'sides run on the CPU: rerun with JAX_PLATFORMS=cpu')
  torch.set_num_threads(os.cpu_count())
  device = torch.device('cpu')
  with tempfile.TemporaryDirectory() as workdir:
    config = bench_common.mlm_config(args, 2 + args.steps, True, 'float32', 0.0)
    run = ssljax.pretrain.loop.setup(config, workdir)
    run.manager.close()
  batch = next(run.batches)
  trainers = {'ssljax': bench_common.ssljax_trainer(run),
              'torch': torch_twin.bert_mlm_trainer(run, device, bf16=False, compiled=False)[0]}
  sides = {}
  for side, train in trainers.items():
    step = lambda train=train: train([batch])  # noqa: E731
    step(), step()  # compile / allocate
    ops = (profile.op_seconds(step, args.steps) if side == 'ssljax'
           else torch_op_seconds(step, args.steps))
    sides[side] = {'wall_s': wall_seconds(step, args.steps), 'ops': ops, 'groups': grouped(ops)}
  cfg = run.model_cfg
  result = {
      'machine': torch_twin.machine(device),
      'model': f'BERT MLM {cfg.num_layers} x {cfg.hidden_size} ({cfg.num_heads} heads, mlp '
               f'{cfg.mlp_dim}), seq {args.seq_len}, batch {args.batch_size}, vocab '
               f'{cfg.vocab_size}, f32, AdamW; ssljax with its default masked-positions '
               f'head, HF eager with the head on all positions; {args.steps} profiled steps '
               f'after 2 warm-up steps, then {args.steps} timed without the profiler.',
      'sides': sides,
  }
  bench_common.write(args.out_dir, bench_common.results_name('profile_step', args), result,
                     markdown(result))


if __name__ == '__main__':
  main()
