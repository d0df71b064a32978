"""What pretraining buys on a CPU budget: configs/bert_cpu30.py pretrained, then adapted
against the same architecture trained from scratch, with the trivial baselines.

  python benchmarks/bench_pretrain_gain.py                      # ~30 min pretraining + adaptation
  python benchmarks/bench_pretrain_gain.py --minutes 5 --seeds 1 --tasks sst2,pos   # a quick look
  python benchmarks/bench_pretrain_gain.py --stage adapt --tasks sst2 --seeds 1 \
      --max-train sst2=0 --name pretrain_gain_sst2_all    # all of SST-2, on the checkpoint

Needs a data folder laid out like ../shared/data. Pretrains on WikiText-2 plus the task
training sets' unlabelled text (scripts/build_corpus.py) for --minutes, with a ridge probe on
POS every --probe-every steps (the probe score against steps is plotted), then runs
`ssljax evaluate` by ridge probe and by fine-tuning, from the pretrained weights and from
scratch (init=both), --seeds seeds, with each task's training set cut to a fixed subset:
SST-2, POS, STS-B and RTE at 1,000 training examples each (MRPC is not in
../shared/data; `--max-train sst2=0` takes all 67k of SST-2); fine-tuning picks its rate
among --lr on the carved validation split. Writes NAME_cpu.{json,md} (--name, default
pretrain_gain) and its plots under --out-dir; `--stage pretrain` writes
pretrain_OBJECTIVE_cpu.{json,md} (the pretraining half alone, e.g. `--objective mlm_sop`).
"""

import argparse
import json
import pathlib
import shutil
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
sys.path.insert(0, str(ROOT / 'benchmarks'))

import build_corpus  # noqa: E402

from ssljax import config as config_lib  # noqa: E402
from ssljax.adapt import hooks, run, suite  # noqa: E402
from ssljax.inference import loading  # noqa: E402
from ssljax.pretrain import loop, metrics  # noqa: E402

import bench_common  # noqa: E402

# Training examples per task (the budget: few labels is where pretraining pays).
MAX_TRAIN = {'sst2': 1000, 'pos': 1000, 'stsb': 1000, 'rte': 1000}


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--minutes', type=float, default=30.0, help='pretraining time budget')
  p.add_argument('--tasks', default='sst2,pos,stsb,rte')
  p.add_argument('--max-train', action='append', default=[], metavar='TASK=N',
                 help=f'training examples of TASK (repeatable; 0: all), instead of {MAX_TRAIN}')
  p.add_argument('--name', default='pretrain_gain',
                 help='results go to NAME_cpu.{json,md}, e.g. pretrain_gain_sst2_all')
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
  args = p.parse_args()
  try:
    args.max_train = {**MAX_TRAIN, **{task: int(n) for task, n in
                                      (item.split('=') for item in args.max_train)}}
  except ValueError:
    p.error(f'--max-train takes TASK=N, e.g. sst2=0 for all examples; got {args.max_train}')
  return args


def read_budget(workdir: pathlib.Path):
  """The step count the time budget fixed (WORKDIR/pretrain/budget.json), or None."""
  path = workdir / 'pretrain' / 'budget.json'
  return json.loads(path.read_text()) if path.is_file() else None


def describe_budget(args, budget, steps) -> str:
  return (f'{args.minutes} min budget -> {budget["steps"]} steps '
          f'({budget["seconds_per_step"]:.2f} s/step measured)' if budget else f'{steps} steps')


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
  budget = read_budget(workdir)
  steps = max(r['step'] for r in curve)
  record = {'machine': bench_common.machine(), 'args': vars(args), 'budget': budget,
            'seconds': seconds, 'steps': steps, 'final': final, 'probe_pos': probe}
  evals = [(r['step'], {k: round(v, 4) for k, v in r.items() if k.startswith('eval_')})
           for r in curve if any(k.startswith('eval_') for k in r)]
  sized = describe_budget(args, budget, steps)
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
  pre = loading.load(workdir / 'pretrain')
  names = [t for t in args.tasks.split(',') if t]
  start = time.perf_counter()
  suites = {}
  for task in names:  # a subset size per task: one evaluate call each
    s = run.load_settings([f'data_dir={data}', 'init=both', f'seeds={args.seeds}',
                           f'max_train_examples={args.max_train.get(task, 0)}',
                           'probe.kind=ridge', f'finetune.lr={args.lr}', 'progress=False'])
    suites[task] = suite.run_suite(pre, [task], ('probe', 'finetune'), workdir / 'eval' / task, s,
                                str(workdir / 'pretrain'))
  adapt_seconds = time.perf_counter() - start
  budget = read_budget(workdir)
  record = {
      'machine': bench_common.machine(), 'args': vars(args), 'budget': budget,
      'pretrain': {'seconds': pretrain_seconds, 'final': final, 'model': run.describe(pre),
                   'curve': curve},
      'adapt_seconds': round(adapt_seconds, 1), 'suites': suites}
  name = f'{args.name}_cpu'
  out.mkdir(parents=True, exist_ok=True)
  shutil.copy(plot, out / f'{name}_curves.png')
  reports = '\n\n'.join(f'## {task}\n\n' + (workdir / 'eval' / task / task / m / 'report.md')
                        .read_text() for task in names for m in ('probe', 'finetune')
                        if (workdir / 'eval' / task / task / m / 'report.md').is_file())
  subsets = ', '.join(f'{task} {args.max_train.get(task, 0) or "all"}' for task in names)
  bench_common.write(out, name, json.loads(json.dumps(record, default=str)), '\n'.join([
      '# What pretraining buys on a CPU budget', '', bench_common.describe(record['machine']),
      '', f'Pretraining: configs/bert_cpu30.py ({run.describe(pre)["params"] / 1e6:.1f} M '
      f'parameters), {describe_budget(args, budget, max(r["step"] for r in curve))}, '
      f'objective {args.objective}; final eval: '
      f'{json.dumps({k: round(v, 4) for k, v in final.items()})}. Ridge probe on POS during '
      f'pretraining (step, token accuracy): {probe}. Curves: {name}_curves.png.', '',
      f'Adaptation: {adapt_seconds:.0f} s; training examples per task: {subsets}; '
      f'{args.seeds} seed(s); fine-tuning rates {args.lr}.', '', reports, '']))


if __name__ == '__main__':
  main()
