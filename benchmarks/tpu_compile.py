"""The pretraining step of six models compiled for four TPU slices on this machine (libtpu's
compile-only devices, `ssljax compile`): memory per chip and whether it fits, collective
bytes per step against the bf16 bytes of the parameters, the attention kernel found in the
program, compile seconds and the roofline MFU bound; then the largest model each slice fits.

  python benchmarks/tpu_compile.py                       # every model on every slice
  python benchmarks/tpu_compile.py --models bert_base gpt_small --topologies v5p-64

Each compile takes minutes on two shared cores. Results are rewritten after every row (a
stopped run keeps what it compiled, and tpu_compile.partial.jsonl lets a rerun with the
same --out-dir skip the rows it has).
Writes `tpu_compile.{json,md}` under --out-dir.
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_common  # noqa: E402

# name -> (config file, --set overrides): the paper sizes, on the configs' own recipes.
MODELS = {
    'bert_base': ('configs/bert_base.py', []),
    'bert_large': ('configs/bert_base.py', ['model.hidden_size=1024', 'model.num_layers=24',
                                            'model.num_heads=16', 'model.mlp_dim=4096']),
    'albert_base': ('configs/albert_base.py', []),
    'gpt_small': ('configs/gpt_small.py', []),
    'gpt_medium': ('configs/gpt_small.py', ['model.hidden_size=1024', 'model.num_layers=24',
                                            'model.num_heads=16', 'model.mlp_dim=4096']),
    'gpt_1b': ('configs/gpt_1b.py', []),
}
TOPOLOGIES = ('v4-8', 'v5e-16', 'v5p-64', 'v6e-8')


def run_one(model, topology, models=MODELS):
  from ssljax import config as config_lib
  from ssljax.aot import compile as compile_lib
  path, overrides = models[model]
  config = config_lib.load(path, overrides)
  r = compile_lib.compile_step(config, topology)
  row = {'model': model, 'topology': topology, 'config': path, 'set': overrides,
         'batch': config.train.batch_size, 'seq_len': config.data.seq_len,
         'grad_accum': config.train.grad_accum, **r}
  if 'parameters' in r:
    row['collective_over_bf16_params'] = (sum(r['collective_bytes'].values())
                                          / (2 * r['parameters']))
  return row


def markdown(rows, machine):
  gib = lambda b: f'{b / 2 ** 30:.2f}'
  lines = ['# `ssljax compile`: six models on four TPU slices', '',
           'Compiled on ' + bench_common.describe(machine), '',
           'Each row: the train step `pretrain` runs, compiled by libtpu for the slice\'s '
           'compile-only devices at the config\'s own global batch and mesh (FSDP over every '
           'chip for BERT and GPT, data parallel for ALBERT). Memory per chip and the OOM verdict '
           'are the compiler\'s; collective bytes are read from the optimized HLO with loop '
           'bodies counted as often as they run, per chip and step, and shown as a multiple of '
           'the bf16 bytes of all parameters. MFU is a roofline bound (model FLOPs over the '
           'slowest of compute, HBM and ICI time from chips.py), not a measurement.', '',
           '| model | slice | params | mesh | GiB/chip (of HBM) | fits | collectives GiB '
           '(x bf16 params) | attention | random-bit ops | compile s | roofline MFU (bound by) |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    mesh = 'x'.join(str(v) for v in r['mesh'].values())
    if r.get('fits'):
      coll = sum(r['collective_bytes'].values())
      kernels = ', '.join(k for k in r['attention_kernels'] if 'fwd' in k) or r['attention']
      lines.append(
          f"| {r['model']} | {r['topology']} | {r['parameters'] / 1e6:.0f} M | {mesh} | "
          f"{gib(r['bytes_per_chip'])} ({gib(r['hbm_bytes'])}) | yes | {gib(coll)} "
          f"({r['collective_over_bf16_params']:.1f}x) | {kernels} | {r['random_bit_ops']:.2g} | "
          f"{r['compile_seconds']:.0f} | {r['roofline_mfu']:.0%} "
          f"({max(r['roofline_seconds'], key=r['roofline_seconds'].get)}) |")
    else:
      lines.append(f"| {r['model']} | {r['topology']} | | {mesh} | | **no**: "
                   f"{r.get('error', '')} | | {r['attention']} | | "
                   f"{r['compile_seconds']:.0f} | |")
  missing = [f'{m} on {t}' for t in TOPOLOGIES for m in MODELS
             if (m, t) not in {(r['model'], r['topology']) for r in rows}]
  if missing:
    lines += ['', f'Not compiled in this run ({len(missing)} of {len(MODELS) * len(TOPOLOGIES)} '
              'pairs, for time on the shared cores; `python benchmarks/tpu_compile.py` adds '
              'them): ' + ', '.join(missing) + '.']
  lines += ['', '## The largest model each slice fits', '']
  for topology in dict.fromkeys(r['topology'] for r in rows):
    fit = [r for r in rows if r['topology'] == topology and r.get('fits')]
    best = max(fit, key=lambda r: r['parameters'], default=None)
    tried = ', '.join(r['model'] for r in rows if r['topology'] == topology)
    lines.append(f"- {topology}: {best['model']} ({best['parameters'] / 1e6:.0f} M "
                 f"parameters) of those tried ({tried})" if best else
                 f'- {topology}: none of {tried}')
  return '\n'.join(lines) + '\n'


def main(name='tpu_compile', topologies=TOPOLOGIES, write_markdown=None,
         packages=('jaxlib', 'libtpu', 'flax'), doc=__doc__, models=MODELS):
  """Compiles --models x --topologies, skipping the rows NAME.partial.jsonl has; writes
  NAME.{json,md} after every row (benchmarks/gpu_compile.py runs this for GPUs)."""
  write_markdown = write_markdown or markdown
  p = argparse.ArgumentParser(description=doc.splitlines()[0])
  p.add_argument('--models', nargs='+', default=list(models), choices=list(models))
  p.add_argument('--topologies', nargs='+', default=list(topologies))
  p.add_argument('--out-dir', default=str(bench_common.RESULTS))
  args = p.parse_args()
  partial = pathlib.Path(args.out_dir) / f'{name}.partial.jsonl'
  partial.parent.mkdir(parents=True, exist_ok=True)
  rows = [json.loads(line) for line in partial.read_text().splitlines()] if partial.exists() else []
  done = {(r['model'], r['topology']) for r in rows}
  machine = bench_common.machine(*packages, peak_flops=1.0)
  machine.pop('f32_matmul_gflops')  # nothing here runs on this CPU but the compiler
  write = lambda: _write(args.out_dir, name, topologies, models, rows, machine,
                         write_markdown)
  for topology in args.topologies:
    for model in args.models:
      if (model, topology) in done:
        continue
      row = run_one(model, topology, models)
      print(json.dumps({k: row.get(k) for k in ('model', 'topology', 'fits', 'bytes_per_chip',
                                                'collective_over_bf16_params', 'attention',
                                                'roofline_mfu', 'compile_seconds')}),
            flush=True)
      rows.append(row)
      with open(partial, 'a') as f:
        f.write(json.dumps(row, default=float) + '\n')
      write()  # after every row: a stopped run keeps its rows
  write()


def _write(out_dir, name, topologies, models, rows, machine, write_markdown):
  order = {m: i for i, m in enumerate(models)}
  rows = sorted(rows, key=lambda r: (topologies.index(r['topology']) if r['topology'] in
                                     topologies else 99, order[r['model']]))
  result = {'machine': machine, 'rows': rows}
  bench_common.write(out_dir, name, json.loads(json.dumps(result, default=float)),
                     write_markdown(rows, machine))


if __name__ == '__main__':
  main()
