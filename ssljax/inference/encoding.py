"""Pooling and sentence features: one vector per text from the last hidden states.

One `pool` serves probes, fine-tuning and `ssljax encode`:
  cls    BERT's sentence vector: the [CLS] state through the pretrained tanh pooler
  first  the first token's last hidden state (sentence-transformers' CLS pooling)
  mean   the mean over real tokens ([CLS] and [SEP] included, as sentence-transformers
         does), padding ignored
  last   the last real token (a causal model's summary of the whole text)

`sentence_features` batches texts by length (`batching.by_length`) with a fixed batch size,
so a file of any size compiles a few programs. `SentenceEncoder` gives it the
`encode(sentences)` interface that sentence-transformers-style tools and MTEB call.
"""

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssljax import models, progress
from ssljax.data import rows as rows_lib
from ssljax.errors import UserError
from ssljax.inference import batching
from ssljax.pretrained import Pretrained

log = logging.getLogger(__name__)

POOLINGS = ('cls', 'first', 'mean', 'last')


def check_pooling(model: nnx.Module, pooling: str) -> None:
  if pooling not in POOLINGS:
    raise UserError(f'pooling={pooling!r} is not one of {", ".join(POOLINGS)}')
  if pooling in ('cls', 'first') and not hasattr(model, 'pool'):
    raise UserError(f'pooling={pooling}: a causal model\'s first token sees only itself and '
                    'it has no [CLS] pooler; use pooling=last or pooling=mean')


def pool(model: models.Encoder | models.Decoder, hidden_BxLxH: jax.Array,
         doc_ids_BxL: jax.Array, pooling: str) -> jax.Array:
  """One vector per row, as `pooling` names (see the module docstring)."""
  if pooling == 'cls':
    assert isinstance(model, models.Encoder)  # check_pooling: only encoders have a pooler
    return model.pool(hidden_BxLxH)
  if pooling == 'first':
    return hidden_BxLxH[:, 0]
  real_BxL = doc_ids_BxL > 0
  if pooling == 'mean':
    total_BxH = jnp.where(real_BxL[..., None], hidden_BxLxH, 0).sum(axis=1)
    return total_BxH / jnp.maximum(real_BxL.sum(axis=1, keepdims=True), 1)
  last_B = jnp.maximum(real_BxL.sum(axis=1) - 1, 0)
  return jnp.take_along_axis(hidden_BxLxH, last_B[:, None, None], axis=1)[:, 0]


def truncate(model: nnx.Module, layers: int) -> nnx.Module:
  """`model` with its first `layers` blocks only (its final norm kept): the features of a
  lower block, to see where in the stack a task's information lies (in BERT-base, POS peaks
  below the top: Tenney et al. 2019). 0 keeps them all."""
  assert isinstance(model, models.Encoder | models.Decoder)
  cfg = model.cfg
  if layers == 0 or layers == cfg.num_layers:
    return model
  if not 0 < layers < cfg.num_layers:
    raise UserError(f'layer={layers}: the model has blocks 1 to {cfg.num_layers} '
                    '(0 for the last)')
  graphdef, state = nnx.split(nnx.eval_shape(
      lambda: models.build(dataclasses.replace(cfg, num_layers=layers), nnx.Rngs(0))))
  pure = nnx.to_pure_dict(nnx.state(model))
  stack = pure['stack']
  if 'layers' in stack:
    stack['layers'] = {i: block for i, block in stack['layers'].items() if i < layers}
  elif 'scanned' in stack:
    stack['scanned'] = jax.tree.map(lambda x: x[:layers], stack['scanned'])
  nnx.replace_by_pure_dict(state, pure)  # ALBERT's shared block: the same, applied fewer times
  return nnx.merge(graphdef, state)


def token_rows(pre: Pretrained, texts: list[str]) -> list[np.ndarray]:
  """Input ids of each text, cut to the position table: `[CLS] text [SEP]` for encoders;
  for GPT the text, or its end-of-text token when the text is empty."""
  tok, cfg = pre.tokenizer, pre.model_cfg
  limit = cfg.context_length
  encoder = cfg.arch != 'gpt'
  body = limit - 2 if encoder else limit
  rows, truncated = [], 0
  for ids in tok.encode(texts):
    truncated += len(ids) > body
    ids = ids[:body]
    if encoder:
      ids = rows_lib.bert_row(tok, ids)[0]
    rows.append(np.asarray(ids if len(ids) else [tok.sep_id], np.int32))
  if truncated:
    log.warning('%d of %d texts were cut to the %d positions the model has', truncated,
                len(rows), limit)
  return rows


@functools.partial(jax.jit, static_argnames=('graphdef', 'pooling', 'per_position'))
def features_of(graphdef: nnx.GraphDef, state: nnx.State, inputs: dict[str, jax.Array],
                pooling: str, per_position: bool = False) -> jax.Array:
  """float32 pooled vectors (B x H), or every position's (B x L x H) with `per_position`.

  Jitted here, with the graphdef static, so that every call with the same model and batch
  width reuses one program: a probe run every N steps of pretraining compiles once.
  """
  model = nnx.merge(graphdef, state)
  hidden_BxLxH = model(inputs).astype(jnp.float32)
  if per_position:
    return hidden_BxLxH
  return pool(model, hidden_BxLxH, inputs['doc_ids'], pooling)


def _batch(rows: list[np.ndarray], size: int, length: int,
           pad_id: int) -> dict[str, np.ndarray]:
  rows = rows + [np.zeros(0, np.int32)] * (size - len(rows))
  ids = rows_lib.pad(rows, length, pad_id)
  return {'input_ids': ids,
          'positions': np.broadcast_to(np.arange(length, dtype=np.int32), ids.shape),
          'segment_ids': np.zeros_like(ids),
          'doc_ids': rows_lib.pad([np.ones(len(r), np.int32) for r in rows], length, 0)}


def sentence_features(pre: Pretrained, texts: list[str], pooling: str = 'mean',
                      batch_size: int = 64, normalize: bool = False,
                      show_progress: bool = False) -> np.ndarray:
  """[len(texts), hidden] float32 features of `pre`, unit length with `normalize` (as
  sentence-transformers' Normalize module makes them); a bar on stderr with
  `show_progress` when there is more than one batch."""
  check_pooling(pre.model, pooling)
  rows = token_rows(pre, texts)
  limit = pre.model_cfg.context_length
  graphdef, state = nnx.split(pre.model)
  out = np.zeros((len(rows), pre.model_cfg.hidden_size), np.float32)
  groups = batching.by_length([len(r) for r in rows], batch_size)
  with progress.bar(show_progress and len(groups) > 1, len(texts), 'encode',
                    unit='text') as bar:
    for index in groups:
      length = rows_lib.padded_length(max(len(rows[i]) for i in index), limit)
      batch = _batch([rows[i] for i in index], batch_size, length, pre.tokenizer.pad_id)
      out[index] = np.asarray(features_of(graphdef, state, batch, pooling))[:len(index)]
      bar.update(len(index))
  return unit_length(out) if normalize else out


def unit_length(x_NxH: np.ndarray) -> np.ndarray:
  """Each row divided by its L2 norm (a zero row stays zero)."""
  return x_NxH / np.maximum(np.linalg.norm(x_NxH, axis=1, keepdims=True), 1e-12)


class SentenceEncoder:
  """A sentence encoder with the `encode` interface that sentence-transformers-style tools
  and MTEB call: `SentenceEncoder(ssljax.from_pretrained(path)).encode(sentences)` -> [N, hidden]
  float32, with `ssljax encode`'s pooling. `inputs` may also be batches of {'text': [...]}
  (MTEB 2's DataLoader); keyword arguments such tools add (task names, prompt types,
  progress flags) change nothing and are accepted."""

  def __init__(self, pre: Pretrained, pooling: str = 'mean', batch_size: int = 64,
               normalize: bool = False):
    check_pooling(pre.model, pooling)
    self.pre, self.pooling, self.batch_size, self.normalize = pre, pooling, batch_size, normalize

  def encode(self, inputs, batch_size: int | None = None, **unused) -> np.ndarray:
    del unused
    texts: list = [inputs] if isinstance(inputs, str) else list(inputs)
    if texts and isinstance(texts[0], dict):  # batches of {'text': [...]}
      texts = [t for batch in texts for t in batch['text']]
    if not all(isinstance(t, str) for t in texts):
      raise UserError('SentenceEncoder.encode takes a list of strings (or batches of '
                      '{"text": ...})')
    return sentence_features(self.pre, texts, self.pooling, batch_size or self.batch_size,
                             self.normalize)
