"""Series on a CPU budget: pretrained against scratch against trivial baselines.

  python benchmarks/bench_series.py                 # ~25 min on 2 shared cores
  python benchmarks/bench_series.py --steps 100 --seeds 1 --sets GunPoint --forecast-steps 100

Classification: configs/patchtst_gunpoint.py (masked patch modelling) pretrained on each UCR/
UEA set's training split only (train.seed = s), then `ssljax series probe`: a ridge probe on
the pretrained encoder's features and on a random init of seed s, scored on the test split,
beside the majority class, 1-NN (Euclidean) on the raw series and the archive's published
1-NN accuracies, and the same with the encoder fine-tuned (`ssljax series finetune`).
Forecasting: configs/patch_decoder_bleeding.py (next-patch) pretrained per
seed, then `ssljax series forecast` (2 patches = 32 steps ahead) on the held-out end of the
series against naive and seasonal-naive. Writes series_cpu.{json,md} under --out-dir.
"""

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))

import bench_common  # noqa: E402

# set -> (patch_len, patches per series); the series' length is their product
METHODS = ('ridge', 'finetune')
SETS = {'GunPoint': (10, 15), 'ItalyPowerDemand': (4, 6), 'BasicMotions': (10, 10)}
# 1-NN accuracies on the archive's split: Euclidean and DTW (full window). UCR: Dau et al.
# 2019, the archive's table; UEA: Bagnall et al. 2018 (BasicMotions: ED, DTW_D).
PUBLISHED = {'GunPoint': {'1nn_ed': 0.913, '1nn_dtw': 0.907},
             'ItalyPowerDemand': {'1nn_ed': 0.955, '1nn_dtw': 0.950},
             'BasicMotions': {'1nn_ed': 0.676, '1nn_dtw': 0.975}}


def classify(name, seeds, steps, work):
  from ssljax import config as config_lib
  from ssljax.adapt import series
  from ssljax.pretrain import loop
  patch_len, length = SETS[name]
  runs = []
  for seed in seeds:
    config = config_lib.load(str(ROOT / 'configs' / 'patchtst_gunpoint.py'), [
        f'data.path=ucr:{name}', f'model.patch_len={patch_len}', f'data.seq_len={length}',
        f'train.seed={seed}', f'train.steps={steps}', f'train.checkpoint_every={steps}',
        f'train.eval_every={steps}', 'train.progress=false'])
    workdir = work / f'{name}_{seed}'
    started = time.perf_counter()
    final = loop.pretrain(config, workdir)
    pretrain_s = time.perf_counter() - started
    run = {'seed': seed, 'pretrain_seconds': round(pretrain_s, 1),
           'eval_masked_patch_loss': final.get('eval_masked_patch_loss')}
    for method in METHODS:
      result = series.probe(workdir, f'ucr:{name}:train', f'ucr:{name}:test', (seed,), method)
      run |= {f"{method}_{r['init']}": r['accuracy'] for r in result['runs']}
    runs.append(run)
  columns = [f'{m}_{i}' for m in METHODS for i in ('pretrained', 'scratch')]
  return {'set': name, 'classes': result['classes'], 'train_size': result['train_size'],
          'test_size': result['test_size'], 'runs': runs,
          'median': {c: statistics.median(r[c] for r in runs) for c in columns},
          'baselines': result['baselines'], 'published': PUBLISHED[name]}


def forecast(seeds, steps, work):
  from ssljax import config as config_lib
  from ssljax.adapt import series
  from ssljax.pretrain import loop
  runs = []
  for seed in seeds:
    config = config_lib.load(str(ROOT / 'configs' / 'patch_decoder_bleeding.py'), [
        f'train.seed={seed}', f'train.steps={steps}', f'train.checkpoint_every={steps}',
        f'train.eval_every={steps}', 'train.progress=false'])
    workdir = work / f'bleeding_{seed}'
    started = time.perf_counter()
    loop.pretrain(config, workdir)
    pretrain_s = time.perf_counter() - started
    result = series.forecast(workdir, 2)
    runs.append({'seed': seed, 'pretrain_seconds': round(pretrain_s, 1), **result['scores']})
  return {'data': result['data'], 'horizon': result['horizon'], 'period': result['period'],
          'origins': result['origins'], 'runs': runs}


def markdown(result) -> str:
  lines = ['# Series: pretrained against scratch (CPU)', '',
           bench_common.describe(result['machine']), '',
           f"Test accuracy, median of {len(result['seeds'])} seeds (each seed's value in "
           f"brackets); masked patch modelling for {result['steps']} steps on the training "
           'split only, then a ridge probe on frozen features or fine-tuning (200 steps), from '
           'the pretrained weights and from a random init. 1-NN ED: ours on series '
           'z-normalised per channel; published: the archives\' tables.', '',
           '| set | classes | train / test | probe: pretrained | probe: scratch | fine-tune: '
           'pretrained | fine-tune: scratch | majority | 1-NN ED (ours) | 1-NN ED / DTW '
           '(published) |', '| --- ' * 10 + '|']
  for c in result['classification']:
    def cell(column, c=c):
      each = '/'.join(f'{r[column]:.3f}' for r in c['runs'])
      return f"{c['median'][column]:.3f} ({each})"
    lines.append(
        f"| {c['set']} | {c['classes']} | {c['train_size']} / {c['test_size']} | "
        + ' | '.join(cell(f'{m}_{i}') for m in METHODS for i in ('pretrained', 'scratch'))
        + f" | {c['baselines']['majority']:.3f} | {c['baselines']['1nn_euclidean']:.3f} | "
        f"{c['published']['1nn_ed']:.3f} / {c['published']['1nn_dtw']:.3f} |")
  if 'forecast' in result:
    f = result['forecast']
    lines += ['', f"Forecasts of {f['horizon']} steps from {f['origins']} origins of the "
              f"held-out end of {f['data']} (seasonal period {f['period']}), next-patch "
              f"pretraining for {result['forecast_steps']} steps:", '',
              '| seed | model MSE | MAE | naive MSE | MAE | seasonal naive MSE | MAE |',
              '| --- | --- | --- | --- | --- | --- | --- |']
    for r in f['runs']:
      lines.append(f"| {r['seed']} | {r['model']['mse']:.3g} | {r['model']['mae']:.3g} | "
                   f"{r['naive']['mse']:.3g} | {r['naive']['mae']:.3g} | "
                   f"{r['seasonal_naive']['mse']:.3g} | {r['seasonal_naive']['mae']:.3g} |")
  return '\n'.join(lines) + '\n'


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--sets', default=','.join(SETS))
  p.add_argument('--seeds', type=int, default=3)
  p.add_argument('--steps', type=int, default=600, help='masked-patch pretraining steps')
  p.add_argument('--forecast-steps', type=int, default=1500, help='0 skips forecasting')
  p.add_argument('--out-dir', default=str(ROOT / 'benchmarks' / 'results'))
  p.add_argument('--name', default='series_cpu')
  args = p.parse_args()
  seeds = list(range(args.seeds))
  result = {'machine': bench_common.machine('flax', 'optax'), 'seeds': seeds,
            'steps': args.steps, 'forecast_steps': args.forecast_steps}
  with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(tmp)
    result['classification'] = [classify(name, seeds, args.steps, work)
                                for name in args.sets.split(',')]
    if args.forecast_steps:
      result['forecast'] = forecast(seeds, args.forecast_steps, work)
  bench_common.write(args.out_dir, args.name, result, markdown(result))


if __name__ == '__main__':
  main()
