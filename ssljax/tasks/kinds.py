"""What each task kind puts on the encoder: outputs, loss, decoding and scoring.

A registry keyed by `TaskSpec.kind`, so probes and fine-tuning share one path for every
task: classification and regression read one pooled vector per row; token classification
reads every position; extractive QA scores a start and an end vector against every
position and decodes the best span across all windows of a question.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssljax.inference import batching
from ssljax.tasks import scores, task_rows
from ssljax.tasks.readers import Example, TaskSpec


def linear(hidden: int, outputs: int, rngs: nnx.Rngs, use_bias: bool = True) -> nnx.Linear:
  """A task head, initialised like BERT's heads."""
  return nnx.Linear(hidden, outputs, use_bias=use_bias,
                    kernel_init=nnx.initializers.normal(0.02), rngs=rngs)


def _class_loss(logits_XxC, targets):
  """Softmax cross-entropy (sum, count) over targets >= 0; X is B (rows) or BxL (tokens)."""
  labels_X = targets['labels']
  valid_X = labels_X >= 0
  logp_XxC = jax.nn.log_softmax(logits_XxC.astype(jnp.float32))
  picked_X = jnp.take_along_axis(logp_XxC, jnp.maximum(labels_X, 0)[..., None], -1)[..., 0]
  return -jnp.where(valid_X, picked_X, 0).sum(), valid_X.sum()


def _squared_loss(out_Bx1, targets):
  labels_B = targets['labels']
  valid_B = jnp.isfinite(labels_B)
  error_B = jnp.where(valid_B, out_Bx1[:, 0] - jnp.where(valid_B, labels_B, 0), 0)
  return (error_B ** 2).sum(), valid_B.sum()


def _span_loss(out_BxLx2, targets):
  """Mean of the start and end cross-entropies over the real positions of each row."""
  logits_BxLx2 = jnp.where((targets['doc_ids'] > 0)[..., None], out_BxLx2, -1e9)
  total, count = 0.0, 0
  for side, name in enumerate(('start', 'end')):
    part, count = _class_loss(logits_BxLx2[..., side], {'labels': targets[name]})
    total += part / 2
  return total, count


def _argmax_ids(spec, rows, out, examples):
  del spec, rows, examples
  return [int(i) for i in np.argmax(out, axis=-1)]


def _values(spec, rows, out, examples):
  del spec, rows, examples
  return [float(v) for v in np.asarray(out)[:, 0]]


def _tag_lists(spec, rows, out_WxC, examples):
  """Tag names per word; words cut off by max_len get 'O' (no entity) when the task has
  it, else the first label."""
  fill = 'O' if 'O' in spec.labels else spec.labels[0]
  tags = [[fill] * len(e.words) for e in examples]
  for (row, _, word), tag in zip(rows.words, np.argmax(out_WxC, axis=-1)):
    tags[rows.example[row]][word] = spec.labels[tag]
  return tags


def _answers(spec, rows, out_NxLx2, examples, max_answer_len=30):
  del spec
  return best_spans(out_NxLx2[..., 0], out_NxLx2[..., 1], rows.offsets, rows.example,
                    [e.context for e in examples], max_answer_len)


def best_spans(start_NxL, end_NxL, offsets_NxLx2, example_N, contexts, max_answer_len=30):
  """The context text of the best-scoring span of each example over all its windows.

  A span runs from a context token to one at or after it, at most `max_answer_len` tokens,
  scored start + end logit; the best window wins. An example with no context token gets ''.
  """
  length = offsets_NxLx2.shape[1]
  i_LxL, j_LxL = np.indices((length, length))
  allowed_LxL = (j_LxL >= i_LxL) & (j_LxL - i_LxL < max_answer_len)
  best: dict = {}
  for row in range(len(example_N)):
    context_L = offsets_NxLx2[row, :, 0] >= 0
    valid_LxL = allowed_LxL & context_L[:, None] & context_L[None, :]
    score_LxL = np.where(valid_LxL, np.add.outer(np.asarray(start_NxL[row], np.float64),
                                                 np.asarray(end_NxL[row], np.float64)),
                         -np.inf)
    s, e = np.unravel_index(np.argmax(score_LxL), score_LxL.shape)
    owner = int(example_N[row])
    if valid_LxL[s, e] and score_LxL[s, e] > best.get(owner, (-np.inf,))[0]:
      best[owner] = (score_LxL[s, e], offsets_NxLx2[row, s, 0], offsets_NxLx2[row, e, 1])
  return [contexts[k][best[k][1]:best[k][2]] if k in best else ''
          for k in range(len(contexts))]


def _class_truths(spec, examples):
  del spec
  return [e.label for e in examples]


def _tag_truths(spec, examples):
  return [[spec.labels[t] for t in e.tags] for e in examples]


def _answer_truths(spec, examples):
  del spec
  return [[text for text, _ in e.answers] for e in examples]


@dataclasses.dataclass(frozen=True)
class Kind:
  per_position: bool  # the head reads every position, not one pooled vector per row
  outputs: Callable  # spec -> head width
  loss: Callable  # (outputs, batch) -> (sum, count)
  decode: Callable  # (spec, rows, outputs, examples) -> a prediction per example
  truths: Callable  # (spec, examples) -> what scores.compute compares the predictions with


KINDS = {
    'classification': Kind(False, lambda s: len(s.labels), _class_loss, _argmax_ids,
                           _class_truths),
    'regression': Kind(False, lambda s: 1, _squared_loss, _values, _class_truths),
    'tokens': Kind(True, lambda s: len(s.labels), _class_loss, _tag_lists, _tag_truths),
    'span': Kind(True, lambda s: 2, _span_loss, _answers, _answer_truths),
}


def collect(fn: Callable, rows: task_rows.Rows, batch_size: int, spec: TaskSpec) -> np.ndarray:
  """`fn(batch)` over all rows, batched by length (`batching.by_length`) in fixed-size
  batches that `task_rows.gather` cuts short: its outputs for each row in row order
  (per-position outputs padded back to the split's width), or for token tasks its outputs
  at each word's first sub-token (W x ..., in `rows.words` order)."""
  order = np.concatenate(batching.by_length(rows.lengths(), batch_size))
  slot_N = np.empty(len(rows), np.int64)  # each row's place in its batch
  slot_N[order] = np.arange(len(rows)) % batch_size
  if spec.kind == 'tokens':
    assert rows.words is not None  # token rows map each word start
    words = rows.words
    batch_W = np.empty(len(rows), np.int64)
    batch_W[order] = np.arange(len(rows)) // batch_size
    batch_W = batch_W[words[:, 0]]
  width, out_all = rows.arrays['input_ids'].shape[1], None
  for number, batch in enumerate(task_rows.batches(rows, batch_size, order)):
    out = np.asarray(fn(batch))
    if spec.kind == 'tokens':
      where = np.flatnonzero(batch_W == number)
      values = out[slot_N[words[where, 0]], words[where, 1]]
      total = len(words)
    else:
      where = order[number * batch_size:(number + 1) * batch_size]
      values = out[:len(where)]
      if KINDS[spec.kind].per_position:
        values = np.pad(values, [(0, 0), (0, width - values.shape[1])] +
                        [(0, 0)] * (values.ndim - 2))
      total = len(rows)
    if out_all is None:
      out_all = np.zeros((total,) + values.shape[1:], values.dtype)
    out_all[where] = values
  assert out_all is not None  # a split has rows (readers refuse an empty file)
  return out_all


def score(spec: TaskSpec, examples: list[Example], predictions: list) -> dict:
  """{'metrics'} by the task's own metrics, plus per-class figures and the confusion
  matrix for classification."""
  truths = KINDS[spec.kind].truths(spec, examples)
  result: dict[str, Any] = {'metrics': scores.compute(spec.metrics, truths, predictions)}
  if spec.kind == 'classification':
    result['per_class'] = scores.precision_recall_f1_per_class(truths, predictions,
                                                               len(spec.labels))
    result['confusion_matrix'] = scores.confusion_matrix(
        truths, predictions, len(spec.labels)).tolist()
  if spec.kind == 'regression':  # a constant prediction scores Pearson 0: say it was one
    result['spread'] = {'predictions': float(np.std(np.asarray(predictions, np.float64))),
                        'truths': float(np.std(np.asarray(truths, np.float64)))}
  return result
