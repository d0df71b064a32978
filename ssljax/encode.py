"""Sentence features: the pooled last hidden state of each text, in batches.

Texts are sorted by length so that a batch holds similar lengths, and padded to a multiple
of `_LENGTH_STEP` with a fixed batch size, so a file of any size compiles a few programs.
Mean pooling averages the real tokens ([CLS] and [SEP] included, as sentence-transformers
does) and ignores padding; `cls` takes the first token.
"""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssljax.errors import UserError

log = logging.getLogger(__name__)

POOLINGS = ('mean', 'cls')
_LENGTH_STEP = 16


def token_rows(pre, texts: list[str]) -> list[np.ndarray]:
  """Input ids of each text, cut to the position table: `[CLS] text [SEP]` for encoders;
  for GPT the text, or its end-of-text token when the text is empty."""
  tok, cfg = pre.tokenizer, pre.model_cfg
  limit = cfg.max_len - cfg.position_offset
  encoder = cfg.arch != 'gpt'
  body = limit - 2 if encoder else limit
  rows, truncated = [], 0
  for ids in tok.encode(texts):
    truncated += len(ids) > body
    ids = ids[:body]
    if encoder:
      ids = np.concatenate([[tok.cls_id], ids, [tok.sep_id]])
    rows.append(np.asarray(ids if len(ids) else [tok.sep_id], np.int32))
  if truncated:
    log.warning('%d of %d texts were cut to the %d positions the model has', truncated,
                len(rows), limit)
  return rows


def _pooled(graphdef, state, batch, pooling):
  hidden_BxLxH = nnx.merge(graphdef, state)(batch)
  if pooling == 'cls':
    return hidden_BxLxH[:, 0]
  real_BxLx1 = (batch['doc_ids'] > 0)[..., None]
  total_BxH = jnp.where(real_BxLx1, hidden_BxLxH, 0).sum(axis=1)
  return total_BxH / jnp.maximum(real_BxLx1.sum(axis=1), 1)


def _batch(rows, size, length, pad_id) -> dict[str, np.ndarray]:
  ids = np.full((size, length), pad_id, np.int32)
  real = np.zeros((size, length), np.int32)
  for i, row in enumerate(rows):
    ids[i, :len(row)] = row
    real[i, :len(row)] = 1
  return {'input_ids': ids, 'positions': np.broadcast_to(np.arange(length, dtype=np.int32),
                                                         ids.shape),
          'segment_ids': np.zeros_like(ids), 'doc_ids': real}


def features(pre, texts: list[str], pooling: str = 'mean', batch_size: int = 64) -> np.ndarray:
  """[len(texts), hidden] float32 features of `pre` (a `pretrained.Pretrained`)."""
  if pooling not in POOLINGS:
    raise UserError(f'pooling {pooling!r} is not one of {", ".join(POOLINGS)}')
  if pooling == 'cls' and pre.model_cfg.arch == 'gpt':
    raise UserError('a causal model\'s first token sees only itself; use --pooling mean')
  rows = token_rows(pre, texts)
  limit = pre.model_cfg.max_len - pre.model_cfg.position_offset
  graphdef, state = nnx.split(pre.model)
  forward = jax.jit(functools.partial(_pooled, graphdef, pooling=pooling))
  out = np.zeros((len(rows), pre.model_cfg.hidden_size), np.float32)
  order = np.argsort([len(r) for r in rows], kind='stable')
  for start in range(0, len(rows), batch_size):
    index = order[start:start + batch_size]
    longest = max(len(rows[i]) for i in index)
    length = min(-(-longest // _LENGTH_STEP) * _LENGTH_STEP, limit)
    batch = _batch([rows[i] for i in index], batch_size, length, pre.tokenizer.pad_id)
    out[index] = np.asarray(forward(state, batch))[:len(index)]
  return out
