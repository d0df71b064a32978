"""Fixed-length pretraining examples from tokenized documents, one builder per objective.

Each example is a dict of length-`seq_len` int32 arrays (`word_start` is bool):
  input_ids      token ids, [PAD] after the end
  segment_ids    0 for `[CLS] A [SEP]`, 1 for `B [SEP]`; all 0 for mlm and clm
  positions      0..L-1; for clm 0..n-1 within each packed piece
  doc_ids        tokens attend only to tokens of the same nonzero doc_id; 0 on padding,
                 so `doc_ids > 0` marks the real tokens
  word_start     the token begins a word (special tokens count as one)
  sentence_label (scalar) NSP: 0 IsNext, 1 NotNext (Hugging Face's convention);
                 SOP: 0 in order, 1 swapped; 0 for mlm and clm

Examples are random access (`grain.MapDataset`) and their randomness is drawn from
(seed, example index), so a run resumes from a step count without replaying data.
"""

import grain
import numpy as np

from ssljax.config import OBJECTIVES
from ssljax.data.rows import bert_row, pad
from ssljax.errors import UserError
from ssljax.tokenizers import Tokenizer

MIN_SEQ_LEN = 8


def build_examples(token_docs: list[np.ndarray], tokenizer: Tokenizer, objective: str,
                   seq_len: int, seed: int) -> grain.MapDataset:
  """One epoch of `objective` examples of length `seq_len` from token documents."""
  builders = {'mlm': _mlm, 'mlm_nsp': _nsp, 'mlm_sop': _sop, 'clm': _clm}
  if objective not in builders:
    raise UserError(f'objective={objective!r} is not one of {", ".join(OBJECTIVES)}')
  if seq_len < MIN_SEQ_LEN:
    raise UserError(f'data.seq_len={seq_len} is too short; use at least {MIN_SEQ_LEN}')
  docs = [np.asarray(d, np.int32).reshape(-1) for d in token_docs]
  examples = builders[objective](docs, tokenizer, seq_len, seed % 2**32)
  if not len(examples):
    raise UserError(f'the corpus gives no {objective} examples: its documents are '
                    'empty after tokenization; add text')
  return examples


def _chunks(docs: list[np.ndarray], size: int, min_len: int) -> np.ndarray:
  """[N, 3] (doc, start, end) of consecutive `size`-token chunks, each in one doc."""
  lengths = np.array([len(d) for d in docs], np.int64)
  counts = -(-lengths // size)
  doc = np.repeat(np.arange(len(docs)), counts)
  first = np.repeat(np.cumsum(counts) - counts, counts)
  start = (np.arange(len(doc)) - first) * size
  end = np.minimum(start + size, lengths[doc])
  table = np.stack([doc, start, end], axis=1)
  return table[end - start >= min_len]


def _bert_example(tokenizer, seq_len: int, a: np.ndarray, b: np.ndarray | None = None,
                  label: int = 0) -> dict[str, np.ndarray]:
  """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, padded to `seq_len`."""
  ids, segments = bert_row(tokenizer, a, b)
  input_ids = pad([ids], seq_len, tokenizer.pad_id)[0]
  return {
      'input_ids': input_ids,
      'segment_ids': pad([segments], seq_len, 0)[0],
      'positions': np.arange(seq_len, dtype=np.int32),
      'doc_ids': (np.arange(seq_len) < len(ids)).astype(np.int32),
      'word_start': tokenizer.word_start[input_ids],
      'sentence_label': np.int32(label),
  }


def _mlm(docs, tokenizer, seq_len, seed):
  """`[CLS] chunk [SEP]` over consecutive chunks of each document."""
  del seed  # chunking is deterministic; masking happens later
  table = _chunks(docs, seq_len - 2, min_len=1)

  def example(row):
    d, start, end = row
    return _bert_example(tokenizer, seq_len, docs[d][start:end])

  return grain.MapDataset.source(table).map(example)


def _nsp(docs, tokenizer, seq_len, seed):
  """BERT: A and B split one chunk; half the time B comes from another document."""
  nonempty = np.flatnonzero([len(d) > 0 for d in docs])
  if len(nonempty) < 2:
    raise UserError(f'NSP needs at least two documents, got {len(nonempty)} non-empty; '
                    'add documents (blank lines separate them in .txt files) or use '
                    'objective=mlm_sop')
  table = _chunks(docs, seq_len - 3, min_len=2)

  def example(row, rng):
    d, start, end = row
    split = start + rng.integers(1, end - start)
    if rng.random() < 0.5:
      return _bert_example(tokenizer, seq_len, docs[d][start:split], docs[d][split:end], 0)
    pick = rng.integers(len(nonempty) - 1)
    other = docs[nonempty[pick + (pick >= np.searchsorted(nonempty, d))]]
    size = end - split
    offset = rng.integers(max(len(other) - size, 0) + 1)
    b = other[offset:offset + size]
    return _bert_example(tokenizer, seq_len, docs[d][start:split], b, 1)

  return grain.MapDataset.source(table).random_map(example, seed=seed)


def _sop(docs, tokenizer, seq_len, seed):
  """ALBERT: A and B are consecutive spans of one chunk, swapped half the time."""
  table = _chunks(docs, seq_len - 3, min_len=2)

  def example(row, rng):
    d, start, end = row
    split = start + rng.integers(1, end - start)
    a, b = docs[d][start:split], docs[d][split:end]
    if rng.random() < 0.5:
      return _bert_example(tokenizer, seq_len, a, b, 0)
    return _bert_example(tokenizer, seq_len, b, a, 1)

  return grain.MapDataset.source(table).random_map(example, seed=seed)


def _clm(docs, tokenizer, seq_len, seed):
  """GPT: documents, each ended by [SEP], packed back to back into rows.

  A row holds consecutive pieces of documents; each piece is its own attention group
  with positions from 0, also when it continues a document from the row before.
  """
  del seed  # packing is deterministic
  sep = np.array([tokenizer.sep_id], np.int32)
  stream = np.concatenate([np.zeros(0, np.int32)] + [
      np.concatenate([d, sep]) for d in docs if len(d)])
  lengths = np.array([len(d) + 1 for d in docs if len(d)], np.int64)
  starts = np.zeros(len(stream), bool)
  starts[np.cumsum(lengths) - lengths] = True

  def example(row):
    tokens = stream[row * seq_len:(row + 1) * seq_len]
    first = starts[row * seq_len:row * seq_len + len(tokens)].copy()
    first[0] = True
    n = len(tokens)
    index = np.arange(n)
    input_ids = np.full(seq_len, tokenizer.pad_id, np.int32)
    input_ids[:n] = tokens
    positions = np.zeros(seq_len, np.int32)
    positions[:n] = index - np.maximum.accumulate(np.where(first, index, 0))
    doc_ids = np.zeros(seq_len, np.int32)
    doc_ids[:n] = np.cumsum(first)
    return {
        'input_ids': input_ids,
        'segment_ids': np.zeros(seq_len, np.int32),
        'positions': positions,
        'doc_ids': doc_ids,
        'word_start': tokenizer.word_start[input_ids],
        'sentence_label': np.int32(0),
    }

  rows = -(-len(stream) // seq_len)
  return grain.MapDataset.range(rows).map(example)
