"""The pretraining step of six models compiled for NVIDIA GPU nodes on this machine (the CUDA
plugin's compiler and the target configs ssljax ships, no GPU: `ssljax compile`), and
BERT-base without attention dropout (the fused kernel's case): memory per GPU and whether it
fits, collective bytes per step against the bf16 bytes of the parameters, the attention
kernels in the program, compile seconds and the roofline bound.

  python benchmarks/gpu_compile.py                      # every model on every node
  python benchmarks/gpu_compile.py --models bert_base gpt_small --topologies h100:8

Needs the gpu-compile extra. Rows are written as they finish and a rerun with the same
--out-dir skips those in gpu_compile.partial.jsonl (see tpu_compile.py, whose models and
loop this shares). Writes `gpu_compile.{json,md}` under --out-dir.
"""

import os
import pathlib
import sys

# Before jax starts: on a machine without a GPU the CUDA plugin then registers its compiler
# only (the ssljax command sets this itself).
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_common  # noqa: E402
import tpu_compile  # noqa: E402

TOPOLOGIES = ('h100:1', 'h100:8', 'h100:2x8', 'a100:8')
# BERT's paper recipe has attention dropout, which cuDNN's kernel has not: XLA's attention
# runs; bert_base_fused is the same model without it, on the fused kernel.
# gpt_small_masked lifts the GPT configs' cap of 16 documents a row: cuDNN then reads a
# dense B x 1 x L x L document mask as a bias instead of its packed layout.
MODELS = {**tpu_compile.MODELS,
          'bert_base_fused': ('configs/bert_base.py', ['model.attention_dropout_rate=0']),
          'gpt_small_masked': ('configs/gpt_small.py', ['model.max_docs_per_row=0'])}
# Published training throughput to hold the bounds against, as issue 30 quotes them.
PUBLISHED = ('llm.c\'s GPT-2 124M: about 468k tokens/s per H100, about 41 % MFU; '
             'ModernBERT-base: about 304k tokens/s per H100, about 25 % MFU')


def markdown(rows, machine):
  gib = lambda b: f'{b / 2 ** 30:.2f}'
  approximate = next((r['approximate'] for r in rows if r.get('approximate')), [])
  lines = ['# `ssljax compile`: six models on NVIDIA GPU nodes', '',
           'Compiled on ' + bench_common.describe(machine), '',
           'Each row: the train step `pretrain` runs, compiled by the CUDA plugin (jax '
           "0.10.2) for compile-only devices built from XLA's target config of the GPU "
           '(`ssljax/aot/gpus/`), at the config\'s own global batch and mesh (FSDP over '
           'every GPU for BERT and GPT, data parallel for ALBERT). `h100:2x8` is two hosts of '
           'eight. Memory per GPU is `memory_analysis()` against what jax\'s allocator takes '
           '(75 % of the device memory unless XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise); '
           'the verdict is ssljax\'s, since XLA for GPU compiles a program of any size. '
           'Collective bytes are read from the optimized HLO with loop bodies counted as often '
           'as they run, per GPU and step, as a multiple of the bf16 bytes of all parameters. '
           'The roofline bound is model FLOPs over the slowest of compute, HBM traffic and '
           'the collectives over NVLink (one host) or the network (two hosts), from the '
           'published figures in `chips.py`; not a measurement.', '',
           'Approximate, and why: ' + '; '.join(approximate) + '. HBM traffic is counted '
           'instruction by instruction from the HLO (`hlo.py`): XLA\'s GPU fusions before '
           'autotuning, so an estimate.', '',
           '| model | node | params | mesh | GiB/GPU (usable) | fits | collectives GiB '
           '(x bf16 params) | attention kernels | compile s | step ms bound | tokens/s/GPU '
           'bound | roofline MFU (bound by) |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    mesh = 'x'.join(str(v) for v in r['mesh'].values())
    if 'parameters' not in r:  # no figures: an error before them
      lines.append(f"| {r['model']} | {r['topology']} | | {mesh} | | **no**: "
                   f"{r.get('error', '')} | | {r['attention']} | {r['compile_seconds']:.0f} "
                   '| | | |')
      continue
    coll = sum(r['collective_bytes'].values())
    kernels = ', '.join(k.replace('__cudnn$', '') for k in r['attention_kernels']) or (
        f"none ({r['attention']})")
    bound = max(r['roofline_seconds'], key=r['roofline_seconds'].get)
    tokens = r['batch'] * r['seq_len'] / r['roofline_step_seconds'] / r['chips']
    fits = 'yes' if r['fits'] else f"**no**: {r['error']}"
    lines.append(
        f"| {r['model']} | {r['topology']} | {r['parameters'] / 1e6:.0f} M | {mesh} | "
        f"{gib(r['bytes_per_chip'])} ({gib(r['usable_bytes'])}) | {fits} | {gib(coll)} "
        f"({r['collective_over_bf16_params']:.1f}x) | {kernels} | {r['compile_seconds']:.0f} | "
        f"{r['roofline_step_seconds'] * 1e3:.0f} | {tokens / 1e3:.0f}k | "
        f"{r['roofline_mfu']:.0%} ({bound}) |")
  missing = [f'{m} on {t}' for t in TOPOLOGIES for m in MODELS
             if (m, t) not in {(r['model'], r['topology']) for r in rows}]
  if missing:
    lines += ['', f'Not compiled in this run ({len(missing)} of '
              f'{len(MODELS) * len(TOPOLOGIES)} pairs, for time on the shared '
              'cores; `python benchmarks/gpu_compile.py` adds them): ' + ', '.join(missing) + '.']
  lines += ['', '## Against published throughput', '',
            f'{PUBLISHED}. The bounds above are ceilings from the compiled program, not '
            'speeds: where the bound is HBM, the count is of XLA\'s un-autotuned fusions. '
            'cuDNN without the dense document mask (bert_base_fused: lengths; gpt_small and '
            'gpt_1b: the packed layout, against gpt_small_masked) moves these '
            'bounds by a few percent at most: the count reads a custom call\'s operands '
            'once, not the mask tile per head that cuDNN re-reads, so what dropping the mask '
            'saves on a real GPU is not in it. BERT-base below 50 %: 90 % of its HBM count is the '
            'elementwise fusions inside the layers at hidden 768 (docs/pods.md, "GPU nodes", '
            'has the breakdown and what would lift it).']
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  tpu_compile.main('gpu_compile', TOPOLOGIES, markdown,
                   ('jaxlib', 'jax-cuda12-plugin', 'nvidia-cudnn-cu12', 'flax'), __doc__, MODELS)
