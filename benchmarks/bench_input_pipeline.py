"""Input pipeline headroom: how fast corpus -> tokenizer -> examples -> batches runs against
how fast the train step consumes batches, for bert_tiny and BERT-base.

  python benchmarks/bench_input_pipeline.py          # ~5 min on 2 CPU cores
  python benchmarks/bench_input_pipeline.py --batches 50 --base-steps 1

The corpus is ssljax's embedded default (no download) or, with --text FILE, a text file.
Tokenizing happens once at setup (every document, before the first step), so it is
reported as setup time and tokens/s. The per-step path is grain's: examples built per index
(chunking, [CLS]/[SEP], NSP pairs), shuffled, batched in background threads; it is timed
as the loop reads it, at grain's settings in `ssljax.data.batches` and with more threads.
Consumption is the measured step rate on this machine, and, for BERT-base, the rate of one
H100 at 50 % MFU (989 dense bf16 TFLOP/s published) as the accelerator a host must feed.
Writes `input_pipeline_cpu.{json,md}` under --out-dir.
"""

import argparse
import pathlib
import tempfile
import time

import grain
import jax

import ssljax.config
from ssljax.data import batches as batches_lib, corpus, examples
from ssljax.pretrain import loop

import bench_common

CONFIGS = pathlib.Path(__file__).parents[1] / 'configs'
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s, NVIDIA's H100 SXM datasheet
THREADS = (0, 2, 4)


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--text', default='', help='a text file instead of the embedded corpus')
  p.add_argument('--batches', type=int, default=200, help='batches read per pipeline run')
  p.add_argument('--tiny-steps', type=int, default=10)
  p.add_argument('--base-steps', type=int, default=2, help='BERT-base steps (batch 8)')
  p.add_argument('--out-dir', default=str(bench_common.RESULTS))
  return p.parse_args()


def config(name, args, batch_size=None):
  overrides = ['train.progress=False']
  if args.text:
    overrides += ['data.source=text', f'data.path={args.text}']
  if batch_size:
    overrides.append(f'train.batch_size={batch_size}')
  return ssljax.config.load(str(CONFIGS / f'{name}.py'), overrides)


def pipeline(cfg, workdir, num_batches):
  """Setup seconds per stage, and batches/s read through grain at each thread count."""
  seed = cfg.train.seed
  docs, load_s = bench_common.timed(corpus.load_documents, cfg.data)
  train_docs, _ = corpus.split_documents(docs, cfg.data.eval_fraction, seed)
  tokenizer, train_tok_s = bench_common.timed(loop.load_tokenizer, cfg,
                                              ssljax.paths.path(workdir), train_docs)
  token_docs, encode_s = bench_common.timed(tokenizer.encode, train_docs)
  dataset, build_s = bench_common.timed(examples.build_examples, token_docs, tokenizer,
                                        cfg.objective, cfg.data.seq_len, seed)
  tokens = sum(len(d) for d in token_docs)
  rates = {}
  for threads in THREADS:
    batches_lib._READ_OPTIONS = grain.ReadOptions(
        num_threads=threads, prefetch_buffer_size=4)
    stream = batches_lib.Batches(dataset, cfg.train.batch_size, seed)
    next(stream)
    _, seconds = bench_common.timed(lambda: [next(stream) for _ in range(num_batches)])
    rates[threads] = num_batches / seconds
  return {'documents': len(docs), 'characters': sum(map(len, docs)), 'tokens': tokens,
          'examples': len(dataset), 'load_s': load_s, 'tokenizer_train_s': train_tok_s,
          'encode_s': encode_s, 'encode_tokens_per_s': tokens / encode_s,
          'build_s': build_s, 'batches_per_s': rates}


def step_rate(cfg, workdir, steps):
  """Train steps per second of `cfg` on this machine, after one compiling step."""
  run = loop.setup(cfg, workdir)
  run.manager.close()
  state = run.strategy.init(cfg.train.seed)
  batches = [run.strategy.put_batch(next(run.batches)) for _ in range(steps + 1)]
  state, out = run.strategy.step(state, batches[0])
  jax.block_until_ready(out)
  start = time.perf_counter()
  for batch in batches[1:]:
    state, out = run.strategy.step(state, batch)
  jax.block_until_ready(out)
  return steps / (time.perf_counter() - start), loop.flops_per_token(run)


def markdown(result):
  lines = ['# Input pipeline headroom', '', bench_common.describe(result['machine']), '',
           f"Corpus: {result['corpus']}.", '']
  for name, r in result['configs'].items():
    p = r['pipeline']
    lines += [
        f"## {name} (objective {r['objective']}, batch {r['batch_size']} x {r['seq_len']})",
        '',
        f"Setup, once per run: load {p['load_s']:.1f} s ({p['documents']:,} documents, "
        f"{p['characters']:,} characters); tokenizer training {p['tokenizer_train_s']:.1f} s "
        f"(skipped when the workdir has one); tokenizing {p['encode_s']:.1f} s "
        f"({p['tokens']:,} tokens, {p['encode_tokens_per_s']:,.0f} tokens/s); examples index "
        f"{p['build_s']:.2f} s ({p['examples']:,} examples).", '',
        '| consumer | examples/s it needs | pipeline examples/s (grain threads) | headroom |',
        '|---|---:|---:|---:|']
    for consumer, need in r['consumers'].items():
      for threads, rate in p['batches_per_s'].items():
        have = rate * r['batch_size']
        lines.append(f'| {consumer} | {need:,.{2 if need < 10 else 0}f} | {have:,.0f} ({threads}) '
                     f'| {have / need:,.1f}x |')
    lines.append('')
  return '\n'.join(lines)


def main():
  args = parse_args()
  result = {'machine': bench_common.machine('grain', 'sentencepiece'),
            'corpus': args.text or 'embedded (Python documentation)', 'configs': {}}
  for name, steps, batch in (('bert_tiny', args.tiny_steps, None),
                             ('bert_base', args.base_steps, 8)):
    with tempfile.TemporaryDirectory() as workdir:
      cfg = config(name, args)
      p = pipeline(cfg, workdir, args.batches)
      rate, flops = step_rate(config(name, args, batch), workdir, steps)
    per_step = batch or cfg.train.batch_size
    consumers = {f'train step on this CPU (batch {per_step})': rate * per_step}
    if name == 'bert_base':
      consumers['one H100 at 50 % MFU'] = 0.5 * H100_BF16_PEAK / flops / cfg.data.seq_len
    result['configs'][name] = {'objective': cfg.objective, 'batch_size': cfg.train.batch_size,
                               'seq_len': cfg.data.seq_len, 'pipeline': p,
                               'consumers': consumers, 'flops_per_token': flops}
    print(name, p['batches_per_s'], consumers)
  bench_common.write(args.out_dir, 'input_pipeline_cpu', result, markdown(result))


if __name__ == '__main__':
  main()
