"""What pretraining buys on a CPU budget: configs/bert_cpu30.py pretrained, then adapted
against the same architecture trained from scratch, with the trivial baselines.

  python benchmarks/bench_pretrain_gain.py                      # ~30 min pretraining + adaptation
  python benchmarks/bench_pretrain_gain.py --minutes 5 --seeds 1 --tasks sst2,pos   # a quick look

Needs a data folder laid out like ../shared/data. Pretrains on WikiText-2 plus the task
training sets' unlabelled text (scripts/build_corpus.py) for --minutes, with a ridge probe on
POS every --probe-every steps (the probe score against steps is plotted), then runs
`ssljax evaluate` by ridge probe and by fine-tuning, from the pretrained weights and from
scratch (init=both), --seeds seeds, with each task's training set cut to a fixed subset:
SST-2, POS, STS-B and RTE at 1,000 training examples each (MRPC is not in
../shared/data); fine-tuning picks its rate among --lr on the carved validation split.
Writes pretrain_gain_cpu.{json,md} and its plots under --out-dir; `--stage pretrain` writes
pretrain_OBJECTIVE_cpu.{json,md} (the pretraining half alone, e.g. `--objective mlm_sop`).
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import sys
import time

import jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
sys.path.insert(0, str(ROOT / 'benchmarks'))

import bench_common  # noqa: E402
import build_corpus  # noqa: E402
from ssljax import config as config_lib, pretrained  # noqa: E402
from ssljax.adapt import hooks, run  # noqa: E402
from ssljax.pretrain import loop, metrics  # noqa: E402

# Training examples per task (the budget: few labels is where pretraining pays).
MAX_TRAIN = {'sst2': 1000, 'pos': 1000, 'stsb': 1000, 'rte': 1000}


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--minutes', type=float, default=30.0, help='pretraining time budget')
  p.add_argument('--tasks', default='sst2,pos,stsb,rte')
  p.add_argument('--seeds', type=int, default=3)
  p.add_argument('--objective', default='mlm_nsp', help='mlm, mlm_nsp or mlm_sop: NSP/SOP '
                 'accuracy is reported beside MLM')
  p.add_argument('--lr', default='3e-4,1e-3', help='finetune.lr: the rates chosen among on '
                 'validation (auto: the full 4-point grid, twice the time)')
  p.add_argument('--probe-every', type=int, default=500)
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='an override of configs/bert_cpu30.py (repeatable), e.g. model.num_layers=2')
  p.add_argument('--stage', choices=('both', 'pretrain', 'adapt'), default='both',
                 help='adapt: reuse the checkpoint already in --workdir')
  p.add_argument('--workdir', default='/tmp/ssljax_bench_gain')
  p.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'))
  p.add_argument('--out-dir', default=str(pathlib.Path(__file__).parent / 'results'))
  return p.parse_args()


def pretrain(args, data: pathlib.Path, workdir: pathlib.Path) -> float:
  """Pretrains into workdir/pretrain; returns the seconds it took."""
  build_corpus.main(['--data', str(data), '--out', str(workdir / 'corpus')])
  config = config_lib.load(str(ROOT / 'configs' / 'bert_cpu30.py'), [
      f'objective={args.objective}', 'data.source=text', f'data.path={workdir / "corpus"}',
      f'train.time_budget={args.minutes}', 'probe.task=pos', f'probe.data_dir={data}',
      f'probe.every={args.probe_every}', 'probe.max_train_examples=1000',
      'probe.max_eval_examples=500', *args.set])
  start = time.perf_counter()
  loop.pretrain(config, workdir / 'pretrain', hooks=hooks.from_config(config))
  return time.perf_counter() - start


def write_pretraining(args, workdir, out, seconds, curve, final, probe):
  """The pretraining half's record: budget, final eval and the probe curve."""
  budget = json.loads((workdir / 'pretrain' / 'budget.json').read_text()) if (
      workdir / 'pretrain' / 'budget.json').is_file() else None
  steps = max(r['step'] for r in curve)
  record = {'machine': bench_common.machine(), 'args': vars(args), 'budget': budget,
            'seconds': seconds, 'steps': steps, 'final': final, 'probe_pos': probe}
  evals = [(r['step'], {k: round(v, 4) for k, v in r.items() if k.startswith('eval_')})
           for r in curve if any(k.startswith('eval_') for k in r)]
  sized = (f'{args.minutes} min budget -> {budget["steps"]} steps '
           f'({budget["seconds_per_step"]:.2f} s/step measured)' if budget else
           f'{steps} steps')
  bench_common.write(out, f'pretrain_{args.objective}_cpu', record, '\n'.join([
      f'# configs/bert_cpu30.py pretrained with objective {args.objective}', '',
      bench_common.describe(record['machine']), '',
      f'{sized}, {seconds / 60:.1f} min; overrides: {args.set or "none"}.', '',
      '| step | eval |', '|---|---|', *[f'| {step} | {json.dumps(e)} |' for step, e in evals],
      '', f'Ridge probe on POS during pretraining (step, token accuracy): {probe}.', '']))


def main():
  args = parse_args()
  data, workdir, out = (pathlib.Path(args.data), pathlib.Path(args.workdir),
                        pathlib.Path(args.out_dir))
  if not (data / 'glue').is_dir():
    raise SystemExit(f'{data} has no glue/: this benchmark reads ../shared/data')
  pretrain_seconds = None if args.stage == 'adapt' else pretrain(args, data, workdir)
  curve = metrics.read(workdir / 'pretrain')
  final = {k: v for r in curve for k, v in r.items() if k.startswith('eval_')}  # the last
  probe = [(r['step'], round(v, 4)) for r in curve for k, v in r.items()
           if k.startswith('probe_pos_') and k.endswith('_token_accuracy')]
  if args.stage == 'pretrain':
    write_pretraining(args, workdir, out, pretrain_seconds, curve, final, probe)
    return
  plot = metrics.plot(workdir / 'pretrain')
  pre = pretrained.load(workdir / 'pretrain')
  names = [t for t in args.tasks.split(',') if t]
  start = time.perf_counter()
  suites = {}
  for name in names:  # a subset size per task: one evaluate call each
    s = run.load_settings([f'data_dir={data}', 'init=both', f'seeds={args.seeds}',
                           f'max_train_examples={MAX_TRAIN.get(name, 0)}', 'probe.kind=ridge',
                           f'finetune.lr={args.lr}', 'progress=False'])
    suites[name] = run.evaluate(pre, [name], ('probe', 'finetune'), workdir / 'eval' / name, s,
                                str(workdir / 'pretrain'))
  adapt_seconds = time.perf_counter() - start
  out.mkdir(parents=True, exist_ok=True)
  budget = json.loads((workdir / 'pretrain' / 'budget.json').read_text())
  record = {
      'date': datetime.date.today().isoformat(),
      'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores',
      'load_average': os.getloadavg(), 'backend': jax.default_backend(), 'jax': jax.__version__,
      'args': vars(args), 'budget': budget,
      'pretrain': {'seconds': pretrain_seconds, 'final': final, 'model': run.describe(pre),
                   'curve': curve},
      'adapt_seconds': round(adapt_seconds, 1), 'suites': suites}
  (out / 'pretrain_gain_cpu.json').write_text(json.dumps(record, indent=1, default=str))
  shutil.copy(plot, out / 'pretrain_gain_cpu_curves.png')
  reports = '\n\n'.join(f'## {name}\n\n' + (workdir / 'eval' / name / name / m / 'report.md')
                        .read_text() for name in names for m in ('probe', 'finetune')
                        if (workdir / 'eval' / name / name / m / 'report.md').is_file())
  (out / 'pretrain_gain_cpu.md').write_text(
      f'# What pretraining buys on a CPU budget\n\n{record["date"]}, {record["machine"]}, '
      f'load average {record["load_average"][0]:.1f}, jax {jax.__version__}.\n\n'
      f'Pretraining: configs/bert_cpu30.py ({run.describe(pre)["params"] / 1e6:.1f} M '
      f'parameters), {args.minutes} min budget -> {budget["steps"]} steps '
      f'({budget["seconds_per_step"]:.2f} s/step measured), objective {args.objective}; '
      f'final eval: {json.dumps({k: round(v, 4) for k, v in final.items()})}. '
      f'Ridge probe on POS during '
      f'pretraining (step, token accuracy): {probe}. Curves: pretrain_gain_cpu_curves.png.\n\n'
      f'Adaptation: {adapt_seconds:.0f} s.\n\n{reports}\n')
  print((out / 'pretrain_gain_cpu.md').read_text())


if __name__ == '__main__':
  main()
