"""One token row, built one way everywhere: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`,
and the padded widths that keep the number of compiled programs small."""

import numpy as np

# Rows are padded to a multiple of this: a handful of widths compile, not one per length.
LENGTH_STEP = 16


def bert_row(tokenizer, a, b=None) -> tuple[np.ndarray, np.ndarray]:
  """(input ids, segment ids): segment 0 for `[CLS] a [SEP]`, 1 for `b [SEP]`."""
  first = np.concatenate([[tokenizer.cls_id], a, [tokenizer.sep_id]]).astype(np.int32)
  second = (np.concatenate([b, [tokenizer.sep_id]]).astype(np.int32) if b is not None
            else np.zeros(0, np.int32))
  segments = np.concatenate([np.zeros(len(first), np.int32), np.ones(len(second), np.int32)])
  return np.concatenate([first, second]), segments


def padded_length(longest: int, limit: int | None = None) -> int:
  """`longest` rounded up to LENGTH_STEP, never past `limit` (the model's positions)."""
  length = -(-longest // LENGTH_STEP) * LENGTH_STEP
  return length if limit is None else min(length, limit)


def pad(seqs, length: int, fill, dtype=np.int32) -> np.ndarray:
  """[len(seqs), length] with each sequence at the left, cut at `length`, `fill` after."""
  out = np.full((len(seqs), length), fill, dtype)
  for i, s in enumerate(seqs):
    s = np.asarray(s)[:length]
    out[i, :len(s)] = s
  return out
