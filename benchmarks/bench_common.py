"""What every benchmark records beside its figures: the machine, library versions and load,
and where the results go (`benchmarks/results/NAME.json` for tools, `.md` for people); how
the training benchmarks time ssljax; the BERT MLM model bench_vs_hf.py and profile_step.py
train. PyTorch's side is in torch_twin.py."""

import argparse
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import time

import numpy as np

RESULTS = pathlib.Path(__file__).parent / 'results'
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data'
# The CPU extensions that set matmul speed: hosts sold under one name ("AMD EPYC") differ
# 4x in f32 matmul rate, and without AVX-512 BF16 or AMX torch's bf16 matmul falls back
# to a path ~100x slower than its f32.
MATMUL_ISA = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')
MLM_CONFIG = pathlib.Path(__file__).parents[1] / 'configs' / 'bert_tiny.py'


def machine(*packages, peak_flops: float | None = None, **extra) -> dict:
  """The CPU, core count, 1-minute load average now (other jobs' share of the machine), the
  f32 matmul rate (`peak_flops` where the caller measured it already), JAX's device, the
  versions of `packages`, the date, and `extra`."""
  import jax

  from ssljax.pretrain import metrics
  cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
              if line.startswith('model name')), platform.processor())
  device = jax.devices()[0]
  return {
      'cpu': cpu, 'cpu_isa': cpu_isa(), 'cpu_cores': os.cpu_count(),
      'load_average_before': os.getloadavg()[0],
      # Shared machines of one kind differ several times from day to day: compare runs by it.
      'f32_matmul_gflops': round((peak_flops or metrics.measure_peak_flops()) / 1e9, 1),
      'jax_device': f'{device.platform}: {device.device_kind}',
      'python': platform.python_version(),
      **{name: _version(name) for name in ('jax',) + packages},
      'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
      **extra}


def cpu_isa() -> str:
  """The MATMUL_ISA extensions this CPU has, e.g. 'avx2 avx512f avx512_bf16'."""
  flags = next((line.split(':', 1)[1].split() for line in open('/proc/cpuinfo')
                if line.startswith('flags')), [])
  return ' '.join(isa for isa in MATMUL_ISA if isa in flags) or 'none of ' + ' '.join(MATMUL_ISA)


def _version(name):
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return 'not installed'


def describe(m: dict) -> str:
  """One Markdown line saying what ran the benchmark."""
  versions = ', '.join(f'{k} {m[k]}' for k in m if k not in (
      'cpu', 'cpu_isa', 'cpu_cores', 'load_average_before', 'jax_device', 'date', 'python')
      and isinstance(m[k], str))
  peak = (f"; f32 matmul {m['f32_matmul_gflops']:.0f} GFLOP/s measured"
          if 'f32_matmul_gflops' in m else '')
  isa = f" ({m['cpu_isa']})" if 'cpu_isa' in m else ''
  return (f"{m['cpu']}{isa}, {m['cpu_cores']} cores{peak}; JAX device {m['jax_device']}; python "
          f"{m['python']}, {versions}; {m['date']}; load average "
          f"{m['load_average_before']:.1f} before the run.")


def write(out_dir, name: str, result: dict, markdown: str) -> None:
  """Writes NAME.json and NAME.md under `out_dir` and prints the Markdown."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  (out / f'{name}.json').write_text(json.dumps(result, indent=2) + '\n')
  (out / f'{name}.md').write_text(markdown)
  print(markdown)
  print(f'wrote {out / name}.json and .md')


def timed(fn, *args):
  """(fn(*args), seconds)."""
  start = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - start


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


def ssljax_trainer(run):
  """A function that trains on a list of batches and returns the last loss once done."""
  import jax
  state = run.strategy.init(run.config.train.seed)

  def train(batches):
    nonlocal state
    for batch in batches:
      state, step_metrics = run.strategy.step(state, run.strategy.put_batch(batch))
    jax.block_until_ready(state)
    return float(step_metrics['loss'])

  return train


def add_model_args(p: argparse.ArgumentParser) -> None:
  """The flags of the BERT MLM model, batch and output of bench_vs_hf.py and profile_step.py."""
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--seq-len', type=int, default=128)
  p.add_argument('--layers', type=int, default=4)
  p.add_argument('--hidden', type=int, default=256, help='heads = hidden/64, mlp = 4 hidden')
  p.add_argument('--vocab-size', type=int, default=8000)
  p.add_argument('--out-dir', default=str(RESULTS))
  p.add_argument('--tag', default='', help='appended to the results name, e.g. avx2 for a '
                 'run on a different CPU than the recorded one')


def results_name(prefix: str, args) -> str:
  """PREFIX_BACKEND[_TAG]."""
  import jax
  return '_'.join([prefix, jax.default_backend()] + ([args.tag] if args.tag else []))


def mlm_config(args, steps: int, masked_only: bool, dtype: str, dropout: float):
  """configs/bert_tiny.py, objective mlm, at the sizes of `add_model_args`' flags, for a
  run of `steps` steps."""
  import ssljax.config
  return ssljax.config.load(str(MLM_CONFIG), [
      'objective=mlm', f'model.num_layers={args.layers}', f'model.hidden_size={args.hidden}',
      f'model.num_heads={max(1, args.hidden // 64)}', f'model.mlp_dim={4 * args.hidden}',
      f'model.max_len={args.seq_len}', f'data.seq_len={args.seq_len}',
      f'train.batch_size={args.batch_size}', f'train.steps={steps}',
      f'tokenizer.vocab_size={args.vocab_size}', f'mlm.masked_positions_only={masked_only}',
      f'model.dtype={dtype}', f'model.dropout_rate={dropout}',
      f'model.attention_dropout_rate={dropout}', 'train.progress=False'])
