"""Corpora of any size: `ssljax prepare` throughput, and pretraining start-up on prepared
shards against the in-memory path, side by side in one run.

  python benchmarks/bench_prepare.py                 # ~25 min on 2 cores
  python benchmarks/bench_prepare.py --sizes-mb 20   # a quick look

The corpora are generated from ssljax's embedded text (Python's documentation), each
document numbered so no two are equal, written as blank-line separated .txt files.
1. Prepare throughput: the 20 MB corpus tokenized with 1 and 2 DirectRunner workers
   (tokenizer training timed apart, on its bounded sample).
2. Start-up: `ssljax pretrain --config configs/bert_tiny.py` for 2 steps in a fresh process,
   wall seconds and peak RSS, with data.source=text (in memory: read, train a tokenizer on
   everything, tokenize everything) against data.source=prepared. The largest prepared
   corpus is made by listing the shards of the 200 MB one ten times in a manifest (2 GB of
   text's worth of shards, hard links); the in-memory path is not run at that size (~20
   bytes of memory per byte of text: it would need ~45 GB on a 24 GB machine).
3. Input pipeline: BERT-base examples (MLM + NSP, seq 128, batch 256) through
   `data.batches`, from the in-memory path (the 20 MB corpus's documents) and from prepared
   shards (20 MB, and the 2 GB listing), against what one H100 at 50 % MFU consumes.
Writes `prepare_cpu.{json,md}` under --out-dir.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from flax import nnx

import ssljax.config
from ssljax import models
from ssljax.data import batches as batches_lib, corpus, examples as examples_lib, prepared
from ssljax.prepare import pipeline
from ssljax.pretrain import masking, metrics

import bench_common

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = str(ROOT / 'configs' / 'bert_tiny.py')
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s, NVIDIA's H100 SXM datasheet
# VmHWM, not ru_maxrss: a child's ru_maxrss starts from its parent's RSS at fork. RssAnon
# at exit is the memory that is not (reclaimable) pages of mapped files.
_RSS = ('import sys; from ssljax.cli import main; code = main(sys.argv[1:]); '
        'status = dict(l.split(":", 1) for l in open("/proc/self/status")); '
        'print("PEAK_RSS_KB", status["VmHWM"].split()[0], "ANON_KB", '
        'status["RssAnon"].split()[0]); sys.exit(code)')


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--sizes-mb', default='20,200', help='generated corpora, in MB of text')
  p.add_argument('--replicas', type=int, default=10,
                 help='the largest corpus listed this many times for the largest prepared one')
  p.add_argument('--batches', type=int, default=30, help='BERT-base batches read')
  p.add_argument('--split-mb', type=float, default=2.0,
                 help='prepare splits (one shard each): small, so that the largest listing '
                      'has as many shards as a batch has rows, as a 1 TB corpus would')
  p.add_argument('--out-dir', default=str(bench_common.RESULTS))
  return p.parse_args()


def generate(file: pathlib.Path, megabytes: float):
  """A text corpus of about `megabytes`, documents numbered so none repeats."""
  docs = corpus.embedded_documents()
  target, written, n = int(megabytes * 1e6), 0, 0
  with open(file, 'w', encoding='utf-8') as f:
    while written < target:
      text = f'Document {n}.\n{docs[n % len(docs)]}\n\n'
      f.write(text)
      written += len(text.encode())
      n += 1
  return n


def run_cli(args) -> dict:
  """Wall seconds and peak RSS of one `ssljax` command in a fresh process."""
  start = time.perf_counter()
  out = subprocess.run([sys.executable, '-c', _RSS, *args], capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS='cpu'), check=False)
  seconds = time.perf_counter() - start
  if out.returncode:
    raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
  figures = out.stdout.split('PEAK_RSS_KB')[1].split()
  return {'seconds': seconds, 'peak_rss_bytes': int(figures[0]) * 1024,
          'anon_rss_at_exit_bytes': int(figures[2]) * 1024}


def config(text_file, extra=()):
  return ssljax.config.load(TINY,
                            ['data.source=text', f'data.path={text_file}', *extra])


def throughput(text_file, work: pathlib.Path) -> dict:
  """Tokenizer training once, then tokenizing with 1 and 2 workers (that tokenizer)."""
  out = work / 'tok'
  started = time.perf_counter()
  pipeline.prepare(config(text_file), out, workers=1, progress=False)
  first = time.perf_counter() - started
  tokens = json.loads((out / prepared.MANIFEST).read_text())
  total = tokens['splits']['train']['tokens'] + tokens['splits']['eval']['tokens']
  result = {'first_prepare_s': first, 'tokens': total}
  for workers in (1, 2):
    cfg = config(text_file, [f'tokenizer.path={out / "tokenizer.model"}'])
    started = time.perf_counter()
    pipeline.prepare(cfg, work / f'w{workers}', workers=workers, progress=False,
                     split_bytes=4 << 20)
    seconds = time.perf_counter() - started
    result[f'workers_{workers}'] = {'seconds': seconds, 'tokens_per_s': total / seconds}
  return result


def replicate(folder: pathlib.Path, out: pathlib.Path, times: int) -> dict:
  """A prepared folder listing `folder`'s training shards `times` times (hard links)."""
  manifest = json.loads((folder / prepared.MANIFEST).read_text())
  (out / 'shards').mkdir(parents=True)
  os.link(folder / 'tokenizer.model', out / 'tokenizer.model')
  for e in manifest['splits']['eval']['shards']:  # the held-out shards, as they are
    for file in (folder / 'shards').glob(f'{e["name"]}*'):
      os.link(file, out / 'shards' / file.name)
  entries, chunks = [], {k: [] for k in manifest['chunks']}
  for r in range(times):
    for i, e in enumerate(manifest['splits']['train']['shards']):
      name = f'r{r}-{e["name"]}'
      os.link(folder / 'shards' / e['name'], out / 'shards' / name)
      for key in chunks:
        os.link(folder / 'shards' / f'{e["name"]}.chunks-{key}',
                out / 'shards' / f'{name}.chunks-{key}')
        chunks[key].append(manifest['chunks'][key]['train'][i])
      entries.append(e | {'name': name})
  manifest['splits']['train'] = {
      'documents': sum(e['documents'] for e in entries),
      'tokens': sum(e['tokens'] for e in entries), 'shards': entries}
  manifest['chunks'] = {k: {'train': v, 'eval': manifest['chunks'][k].get('eval', [])}
                        for k, v in chunks.items()}
  (out / prepared.MANIFEST).write_text(json.dumps(manifest))
  return manifest


def _rate(examples, cfg, num_batches: int) -> dict:
  """Examples per wall second through `data.batches` (grain's reader threads), as a run
  reads them, and per CPU second of this process (less sensitive to other jobs)."""
  stream = batches_lib.Batches(examples, cfg.train.batch_size, 0)
  next(stream)
  start, cpu = time.perf_counter(), time.process_time()
  for _ in range(num_batches):
    next(stream)
  n = num_batches * cfg.train.batch_size
  return {'wall': n / (time.perf_counter() - start), 'cpu': n / (time.process_time() - cpu)}


def input_rate(small: pathlib.Path, big: pathlib.Path, num_batches: int) -> dict:
  """BERT-base examples/s: the in-memory path and prepared shards side by side, against
  one H100 at 50 % MFU."""
  cfg = ssljax.config.load(str(ROOT / 'configs' / 'bert_base.py'), [])
  small_data = prepared.open_folder(small)
  store = small_data.store('train')
  docs = [store.read(*store.docs([d]), int(store.docs([d])[1][0]))[0]
          for d in range(store.num_docs)]
  rates = {'in memory (20 MB corpus)': examples_lib.build_examples(
               docs, small_data.tokenizer, cfg.objective, cfg.data.seq_len, 0)}
  for name, folder in (('prepared, 20 MB', small), ('prepared, 2 GB', big)):
    data = prepared.open_folder(folder)
    rates[f'{name} ({len(data.manifest["splits"]["train"]["shards"])} shards)'] = (
        data.examples('train', cfg.objective, cfg.data.seq_len, 0))
  rates = {k: _rate(v, cfg, num_batches) for k, v in rates.items()}
  model_cfg = models.ModelConfig.from_config(cfg.model, vocab_size=cfg.model.vocab_size or 30522)
  _, params = models.abstract(model_cfg)
  fraction = masking.num_predictions(cfg.data.seq_len, cfg.mlm.rate) / cfg.data.seq_len
  flops = metrics.flops_per_token(nnx.to_pure_dict(params), model_cfg, cfg.objective,
                                  cfg.data.seq_len, fraction)
  need = 0.5 * H100_BF16_PEAK / flops / cfg.data.seq_len
  return {'examples_per_s': rates, 'h100_needs_examples_per_s': need,
          'batch_size': cfg.train.batch_size, 'seq_len': cfg.data.seq_len,
          'load_average': os.getloadavg()[0]}


def markdown(r) -> str:
  t = r['throughput']
  lines = ['# Corpora of any size: prepare once, start in seconds', '',
           bench_common.describe(r['machine']), '',
           '## Prepare throughput (20 MB corpus, tokenizer given)', '',
           f"{t['tokens']:,} tokens. The first prepare (sampling, tokenizer training on "
           f"tokenizer.sample_chars, tokenizing with 1 worker) took {t['first_prepare_s']:.0f} s.",
           '', '| DirectRunner workers | seconds | tokens/s |', '|---:|---:|---:|']
  for w in (1, 2):
    x = t[f'workers_{w}']
    lines.append(f"| {w} | {x['seconds']:.1f} | {x['tokens_per_s']:,.0f} |")
  lines += ['', '## Pretraining start-up: a 2-step bert_tiny run in a fresh process', '',
            '| corpus | path | seconds | peak RSS | anonymous RSS at exit |',
            '|---|---|---:|---:|---:|']
  for row in r['startup']:
    lines.append(f"| {row['corpus']} | {row['path']} | {row['seconds']:.1f} | "
                 f"{row['peak_rss_bytes'] / 2**20:,.0f} MiB | "
                 f"{row['anon_rss_at_exit_bytes'] / 2**20:,.0f} MiB |")
  i = r['input']
  need = i['h100_needs_examples_per_s']
  lines += ['', '## Input pipeline (BERT-base, MLM + NSP)', '',
            f"Batch {i['batch_size']} x {i['seq_len']} through `data.batches`; one H100 at "
            f"50 % MFU consumes {need:,.0f} examples/s. Load average "
            f"{i['load_average']:.1f} while it ran.", '',
            '| examples from | examples/s | x one H100 at 50 % MFU | examples per CPU second |',
            '|---|---:|---:|---:|']
  for name, rate in i['examples_per_s'].items():
    lines.append(f"| {name} | {rate['wall']:,.0f} | {rate['wall'] / need:.1f}x | "
                 f"{rate['cpu']:,.0f} |")
  lines.append('')
  return '\n'.join(lines)


def main():
  args = parse_args()
  sizes = [float(s) for s in args.sizes_mb.split(',')]
  result = {'machine': bench_common.machine('apache-beam', 'sentencepiece', 'grain'),
            'startup': []}
  with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(tmp)
    texts = {}
    for size in sizes:
      texts[size] = work / f'corpus-{size:g}mb.txt'
      generate(texts[size], size)
    result['throughput'] = throughput(texts[sizes[0]], work / 'throughput')
    print('throughput', result['throughput'])
    tokenizer = work / 'throughput' / 'tok' / 'tokenizer.model'
    common = ['--set', 'train.steps=2', '--set', 'train.progress=False', '--set',
              'train.eval_every=0']
    for size, text in texts.items():
      memory = run_cli(['pretrain', '--config', TINY, '--workdir',
                        str(work / f'mem-{size:g}'), '--set', 'data.source=text', '--set',
                        f'data.path={text}', *common])
      result['startup'].append({'corpus': f'{size:g} MB', 'path': 'in memory', **memory})
      folder = work / f'prep-{size:g}'
      started = time.perf_counter()
      pipeline.prepare(config(text, [f'tokenizer.path={tokenizer}']), folder, workers=2,
                       progress=False, split_bytes=int(args.split_mb * 2**20))
      prepare_s = time.perf_counter() - started
      row = run_cli(['pretrain', '--config', TINY, '--workdir',
                     str(work / f'run-{size:g}'), '--set', 'data.source=prepared', '--set',
                     f'data.path={folder}', *common])
      result['startup'].append({'corpus': f'{size:g} MB', 'path': 'prepared', **row,
                                'prepare_s': prepare_s})
      print(result['startup'][-2:])
    largest = sizes[-1]
    big = work / 'prep-big'
    manifest = replicate(work / f'prep-{largest:g}', big, args.replicas)
    row = run_cli(['pretrain', '--config', TINY, '--workdir',
                   str(work / 'run-big'), '--set', 'data.source=prepared', '--set',
                   f'data.path={big}', *common])
    result['startup'].append({
        'corpus': f'{largest * args.replicas:g} MB ({manifest["splits"]["train"]["tokens"]:,} '
                  f'tokens, {len(manifest["splits"]["train"]["shards"])} shards: the '
                  f'{largest:g} MB ones listed {args.replicas}x)', 'path': 'prepared', **row})
    print(result['startup'][-1])
    result['input'] = input_rate(work / f'prep-{sizes[0]:g}', big, args.batches)
    print(result['input'])
  result['startup_shards'] = len(manifest['splits']['train']['shards'])
  bench_common.write(args.out_dir, 'prepare_cpu', result, markdown(result))


if __name__ == '__main__':
  np.seterr(all='ignore')
  main()
