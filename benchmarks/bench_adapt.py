"""What pretraining buys on CPU: a small BERT pretrained for a fixed budget, then adapted.

  python benchmarks/bench_adapt.py                  # ~45 min on 2 CPU cores; needs ../shared/data
  python benchmarks/bench_adapt.py --steps 200 --max-train 500 --seeds 1   # a quick look

Pretrains configs/bert_tiny.py (2 x 128) with MLM on WikiText-2 (valid + test articles) plus
the embedded corpus for --steps steps, then runs `ssljax evaluate` on SST-2, CoLA, RTE,
STS-B (GLUE dev) and UD English-EWT POS (dev) by linear probe and by fine-tuning, each from
the pretrained weights and from random ones (init=both), --seeds seeds each. Training sets
are cut to a fixed --max-train examples (same subset for every run). Writes
`adapt_cpu.json`, `adapt_cpu.md` and `adapt_cpu_methods.png` under --out-dir.
"""

import argparse
import datetime
import json
import pathlib
import platform
import re
import shutil
import time

import jax

from ssljax import config as config_lib, pretrained
from ssljax.data import corpus
from ssljax.pretrain import loop as train
from ssljax.adapt import run

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared' / 'data'
TASKS = ('sst2', 'cola', 'rte', 'stsb', 'pos')


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--steps', type=int, default=1200, help='pretraining steps (batch 32 x 128)')
  p.add_argument('--seeds', type=int, default=3)
  p.add_argument('--max-train', type=int, default=1500, help='training examples per task')
  p.add_argument('--epochs', type=int, default=3, help='fine-tuning epochs')
  p.add_argument('--workdir', default='/tmp/ssljax_bench_adapt')
  p.add_argument('--data', default=str(SHARED))
  p.add_argument('--out-dir', default=str(pathlib.Path(__file__).parent / 'results'))
  return p.parse_args()


def write_corpus(data: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  """WikiText-2 articles (split at their ` = Title = ` lines) and the embedded corpus, as
  blank-line-separated documents."""
  out.mkdir(parents=True, exist_ok=True)
  articles = []
  for name in ('wiki.valid.tokens', 'wiki.test.tokens'):
    text = (data / 'wikitext-2' / name).read_text(encoding='utf-8')
    for article in re.split(r'\n (?== [^=])', text):
      lines = [line.strip() for line in article.splitlines() if line.strip()]
      if len(lines) > 1:
        articles.append('\n'.join(lines))
  (out / 'wikitext2.txt').write_text('\n\n'.join(articles), encoding='utf-8')
  embedded = [d.replace('\n\n', '\n') for d in corpus.embedded_documents()]
  (out / 'embedded.txt').write_text('\n\n'.join(embedded), encoding='utf-8')
  return out


def main():
  args = parse_args()
  data = pathlib.Path(args.data)
  if not (data / 'glue').is_dir():
    raise SystemExit(f'{data} has no glue/: this benchmark reads ../shared/data')
  workdir = pathlib.Path(args.workdir)
  text_dir = write_corpus(data, workdir / 'corpus')
  config = config_lib.load(str(ROOT / 'configs' / 'bert_tiny.py'), [
      'objective=mlm', 'data.source=text', f'data.path={text_dir}',
      f'train.steps={args.steps}', 'train.checkpoint_every=500', 'train.eval_every=500'])
  start = time.perf_counter()
  final = train.pretrain(config, workdir / 'pretrain')
  pretrain_seconds = time.perf_counter() - start
  pre = pretrained.load(workdir / 'pretrain')
  s = run.load_settings([f'data_dir={data}', 'init=both', f'seeds={args.seeds}',
                         f'max_train_examples={args.max_train}', f'finetune.epochs={args.epochs}',
                         'finetune.lr=1e-4', 'max_len=128'])
  start = time.perf_counter()
  suite = run.evaluate(pre, TASKS, ('probe', 'finetune'), workdir / 'eval', s,
                       str(workdir / 'pretrain'))
  adapt_seconds = time.perf_counter() - start
  out = pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  record = {
      'date': datetime.date.today().isoformat(), 'machine': platform.processor() or
      platform.machine(), 'backend': jax.default_backend(), 'devices': jax.device_count(),
      'jax': jax.__version__, 'args': vars(args),
      'pretrain': {'steps': args.steps, 'seconds': round(pretrain_seconds, 1),
                   'final': final, 'model': run.describe(pre)},
      'adapt_seconds': round(adapt_seconds, 1), 'suite': suite}
  (out / 'adapt_cpu.json').write_text(json.dumps(record, indent=1))
  shutil.copy(workdir / 'eval' / 'methods.png', out / 'adapt_cpu_methods.png')
  table = (workdir / 'eval' / 'report.md').read_text()
  (out / 'adapt_cpu.md').write_text(
      f'# Pretrained vs from scratch, probe vs fine-tune (CPU)\n\n'
      f'{record["date"]}, {jax.device_count()} CPU device(s). Pretraining: bert_tiny, MLM, '
      f'{args.steps} steps x 32 x 128 tokens on WikiText-2 + embedded corpus in '
      f'{pretrain_seconds:.0f} s (final MLM loss {final.get("loss", float("nan")):.3f}). '
      f'Adaptation: {args.max_train} training examples per task, {args.seeds} seeds, '
      f'fine-tuning {args.epochs} epochs at lr 1e-4, linear probe 30 epochs on mean-pooled '
      f'features; {adapt_seconds:.0f} s in all.\n\n{table}')
  print(table)


if __name__ == '__main__':
  main()
