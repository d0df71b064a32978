"""The newcomer's path: the README demo's checkpoint, then `ssljax probe` and `ssljax finetune`
with `--set init=both` on POS and SST-2 at 1,000 labelled examples, default settings, 3 seeds.

  ssljax pretrain --config configs/bert_tiny.py --workdir runs/bert_tiny     # the README demo
  python benchmarks/bench_demo_adapt.py --checkpoint runs/bert_tiny --data ../shared/data

Runs the commands docs/pretraining.md shows, each into --work/TASK_METHOD (a rerun skips the
ones that wrote their results.json), and writes demo_adapt_cpu.{json,md} under --out-dir: per
task and method the median of 3 seeds of each init with its spread, the trivial baseline, the
blocks (probe) or rates and epochs (fine-tune) each seed chose, and fine-tuning's first epoch
against its steady speed (what compiling costs). --data is a folder laid out like
../shared/data (glue/SST-2, ud_english_ewt).
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_common  # noqa: E402

JOBS = (('pos', 'probe'), ('pos', 'finetune'), ('sst2', 'probe'), ('sst2', 'finetune'))
DATA = {'pos': 'ud_english_ewt', 'sst2': 'glue'}


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--checkpoint', required=True, help='the demo\'s --workdir')
  p.add_argument('--data', required=True, help='a folder laid out like ../shared/data')
  p.add_argument('--work', default='runs/demo_adapt', help='where each command writes')
  p.add_argument('--seeds', type=int, default=3)
  p.add_argument('--max-train', type=int, default=1000)
  p.add_argument('--out-dir', default=str(pathlib.Path(__file__).parent / 'results'))
  return p.parse_args()


def command(args, task: str, method: str) -> list[str]:
  """The command docs/pretraining.md shows for `task` and `method`."""
  return ['ssljax', method, '--checkpoint', args.checkpoint, '--task', task,
          '--data-dir', str(pathlib.Path(args.data) / DATA[task]),
          '--workdir', str(pathlib.Path(args.work) / f'{task}_{method}'),
          '--set', 'init=both', '--set', f'seeds={args.seeds}',
          '--set', f'max_train_examples={args.max_train}']


def speeds(runs: list[dict]) -> dict:
  """Fine-tuning's examples/s in the chosen rate's first epoch against its later ones
  (median over seeds): the first pays for compiling where a step is not reused."""
  first, later = [], []
  for run in runs:
    curve = [c for c in run.get('curve', []) if c.get('examples_per_s')]
    if len(curve) > 1:
      first.append(curve[0]['examples_per_s'])
      later += [c['examples_per_s'] for c in curve[1:]]
  if not first:
    return {}
  return {'first_epoch_examples_per_s': statistics.median(first),
          'later_epochs_examples_per_s': statistics.median(later)}


def summary(results: dict) -> dict:
  """The figures of one command's results.json."""
  main = results['metrics_names'][0]
  split = next(iter(results['baseline']))
  row = {'metric': main, 'split': split, 'baseline_name': results['baseline_name'],
         'baseline': results['baseline'][split][main], 'seconds': results['seconds'],
         'warnings': results['warnings']}
  for init in ('pretrained', 'scratch'):
    stats = results['metrics'][init][split][main]
    runs = [r for r in results['runs'] if r['init'] == init]
    row[init] = {'median': stats['median'], 'std': stats['std'], 'values': stats['values'],
                 'chosen': [{k: r[k] for k in ('seed', 'layer', 'lr', 'epoch') if k in r}
                            for r in runs], **speeds(runs)}
  return row


def markdown(rows: dict, m: dict, args) -> str:
  lines = ['# From the demo checkpoint, as a newcomer\'s next command', '',
           bench_common.describe(m), '',
           f'`ssljax METHOD --checkpoint {args.checkpoint} --task TASK --data-dir DATA '
           f'--set init=both --set seeds={args.seeds} --set max_train_examples={args.max_train}`'
           ' (DATA: ud_english_ewt for pos, glue for sst2), default settings otherwise; '
           f'checkpoint step {m["checkpoint_step"]}. Median of {args.seeds} seeds (std).', '',
           '| task | method | pretrained | scratch | delta | trivial baseline | chosen '
           '(pretrained; scratch) |', '|---|---|---|---|---|---|---|']
  for name, r in rows.items():
    task, method = name.split('_')
    chosen = '; '.join(', '.join(
        ' '.join(f'{k} {v:.3g}' if k == 'lr' else f'{k} {v}' for k, v in c.items()
                 if k != 'seed') for c in r[init]['chosen']) for init in ('pretrained', 'scratch'))
    lines.append(
        f'| {task} | {method} | {r["pretrained"]["median"]:.3f} ({r["pretrained"]["std"]:.3f}) '
        f'| {r["scratch"]["median"]:.3f} ({r["scratch"]["std"]:.3f}) | '
        f'{100 * (r["pretrained"]["median"] - r["scratch"]["median"]):+.1f} | '
        f'{r["baseline"]:.3f} ({r["baseline_name"]}) | {chosen} |')
  lines += ['', 'Fine-tuning speed, examples/s (median over seeds, inits and rates):', '']
  for name, r in rows.items():
    p = r['pretrained']
    if 'first_epoch_examples_per_s' in p:
      lines.append(f'- {name}: first epoch {p["first_epoch_examples_per_s"]:.0f}, later '
                   f'epochs {p["later_epochs_examples_per_s"]:.0f} (pretrained init)')
  return '\n'.join(lines) + '\n'


def main():
  args = parse_args()
  m = bench_common.machine('flax', 'optax')
  rows = {}
  for task, method in JOBS:
    folder = pathlib.Path(args.work) / f'{task}_{method}'
    if not (folder / 'results.json').is_file():
      start = time.time()
      subprocess.run(command(args, task, method), check=True)
      print(f'{task} {method}: {time.time() - start:.0f} s')
    results = json.loads((folder / 'results.json').read_text())
    m['checkpoint_step'] = results['checkpoint_step']
    rows[f'{task}_{method}'] = summary(results)
  bench_common.write(args.out_dir, 'demo_adapt_cpu', {'machine': m, 'rows': rows},
                     markdown(rows, m, args))


if __name__ == '__main__':
  main()
