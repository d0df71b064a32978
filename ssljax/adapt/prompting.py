"""Zero-, one- and few-shot classification by prompting a causal LM.

Each label has a verbaliser (e.g. ' positive'); the model reads a prompt of k
demonstrations (the template filled with a training example, then its label's verbaliser,
joined by `separator`) followed by the filled template of the query, and the label whose
verbaliser is most likely next wins: the sum of its tokens' log-probabilities, or their
mean with `normalize`. The k demonstrations are one fixed set per seed, drawn from train
with the labels as balanced as k allows, so seeds measure the spread that the choice of
demonstrations causes. A prompt longer than the model's positions drops demonstrations
from the left, then cuts the query from the left; the verbaliser is never cut.
"""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssljax.adapt import progress, scores
from ssljax.data.rows import padded_length
from ssljax.errors import UserError

log = logging.getLogger(__name__)


def check(pre, spec, template: str, verbalizers) -> None:
  if pre.model_cfg.arch != 'gpt':
    raise UserError(f'prompting scores continuations with a causal LM; {pre.model_cfg.arch} '
                    'is an encoder: use probe or finetune')
  if spec.kind != 'classification':
    raise UserError(f'{spec.name} is a {spec.kind} task; prompting classifies')
  if len(verbalizers) != len(spec.labels):
    raise UserError(f'{len(verbalizers)} verbalisers for the {len(spec.labels)} labels '
                    f'{spec.labels}; give one per label, split by |')
  if '{text}' not in template or ('{text_b}' in template) != spec.pair:
    need = '{text} and {text_b}' if spec.pair else '{text} (and no {text_b})'
    raise UserError(f'template {template!r}: {spec.name} needs {need}')


def demonstrations(train, k: int, seed: int) -> list:
  """k training examples drawn by `seed`, the labels taken in turn so they are balanced."""
  rng = np.random.default_rng(seed)
  by_label = {}
  for i in rng.permutation(len(train)):
    by_label.setdefault(train[i].label, []).append(train[i])
  pools = list(by_label.values())
  chosen = []
  while len(chosen) < min(k, len(train)):  # round robin over the labels not yet used up
    chosen += [pool.pop() for pool in pools if pool][:k - len(chosen)]
  return [chosen[i] for i in rng.permutation(len(chosen))]


def candidate_rows(pre, spec, examples, demos, template, verbalizers, separator):
  """([prompt + verbaliser ids], [scored length]) for every (example, label), label-minor."""
  tok = pre.tokenizer
  limit = pre.model_cfg.max_len - pre.model_cfg.position_offset
  fill = lambda e: template.format(text=e.text, text_b=e.text_b or '')
  shown = [tok.encode([fill(d) + verbalizers[d.label] + separator])[0] for d in demos]
  answers = [np.asarray(a, np.int32) for a in tok.encode(list(verbalizers))]
  if any(len(a) == 0 for a in answers):
    raise UserError(f'a verbaliser of {verbalizers} has no tokens; use words')
  rows, lengths, dropped, cut = [], [], 0, 0
  for query in tok.encode([fill(e) for e in examples]):
    room = limit - 1 - max(len(a) for a in answers)  # 1: the end-of-text token that starts
    context = list(shown)
    while context and sum(map(len, context)) + len(query) > room:
      context.pop(0)
      dropped += 1
    if len(query) > room:
      query, cut = query[len(query) - room:], cut + 1
    prompt = np.concatenate([[tok.sep_id], *context, query]).astype(np.int32)
    for answer in answers:
      rows.append(np.concatenate([prompt, answer]))
      lengths.append(len(answer))
  if dropped or cut:
    log.warning('prompts too long for %d positions: %d demonstrations dropped, %d queries '
                'cut from the left', limit, dropped, cut)
  return rows, lengths


@functools.partial(jax.jit, static_argnums=0)
def _continuation_logprob(graphdef, state, ids_BxL, real_BxL, targets_BxL):
  """Sum over positions of log p(target | prefix) where a target is set (>= 0), and whether
  every target is the most likely token."""
  batch = {'input_ids': ids_BxL, 'segment_ids': jnp.zeros_like(ids_BxL), 'doc_ids': real_BxL,
           'positions': jnp.broadcast_to(jnp.arange(ids_BxL.shape[1]), ids_BxL.shape)}
  model = nnx.merge(graphdef, state)
  logp_BxLxV = jax.nn.log_softmax(model.lm_logits(model(batch)).astype(jnp.float32))
  picked_BxL = jnp.take_along_axis(logp_BxLxV, jnp.maximum(targets_BxL, 0)[..., None], -1)[..., 0]
  scored_BxL = targets_BxL >= 0
  greedy_BxL = jnp.argmax(logp_BxLxV, axis=-1) == targets_BxL
  return (jnp.where(scored_BxL, picked_BxL, 0).sum(axis=1),
          (greedy_BxL | ~scored_BxL).all(axis=1))


def continuation_scores(pre, rows, lengths, batch_size: int, bar=None, greedy: bool = False):
  """log p(last `lengths[i]` tokens of row i | the rest) as an array; with `greedy`, also
  whether each of those tokens is the model's most likely one (as a second array).

  The model reads each row but its last token (at most the model's positions). Rows are
  sorted by length and each batch is padded to its longest row's `padded_length`, so a few
  programs compile; `bar` (tqdm) advances by one per batch.
  """
  graphdef, state = nnx.split(pre.model)
  limit = pre.model_cfg.max_len - pre.model_cfg.position_offset
  logp, is_greedy = np.zeros(len(rows), np.float64), np.zeros(len(rows), bool)
  order = np.argsort([len(r) for r in rows], kind='stable')
  for start in range(0, len(rows), batch_size):
    index = order[start:start + batch_size]
    width = padded_length(max(len(rows[i]) for i in index) - 1, limit)
    ids = np.full((batch_size, width), pre.tokenizer.pad_id, np.int32)
    targets = np.full((batch_size, width), -1, np.int32)
    real = np.zeros((batch_size, width), np.int32)
    for j, i in enumerate(index):
      row, n = rows[i], lengths[i]
      ids[j, :len(row) - 1] = row[:-1]
      real[j, :len(row) - 1] = 1
      targets[j, len(row) - n - 1:len(row) - 1] = row[len(row) - n:]  # t predicts t+1
    got_logp, got_greedy = _continuation_logprob(graphdef, state, ids, real, targets)
    logp[index] = np.asarray(got_logp)[:len(index)]
    is_greedy[index] = np.asarray(got_greedy)[:len(index)]
    if bar is not None:
      bar.update(1)
  return (logp, is_greedy) if greedy else logp


def evaluate(pre, spec, train, examples, *, template: str, verbalizers, shots, seed: int,
             batch_size: int = 16, normalize: bool = False, separator: str = '\n\n',
             show_progress: bool = False) -> dict:
  """{k: {'metrics', 'confusion_matrix', 'predictions'}} on `examples` for each k in shots;
  `show_progress`: a bar over the batches on stderr."""
  check(pre, spec, template, verbalizers)
  truths = [e.label for e in examples]
  batches = -(-len(examples) * len(spec.labels) // batch_size)
  bar = progress.bar(show_progress, len(shots) * batches, f'{spec.name} prompts seed {seed}',
                     'batch')
  out = {}
  for k in shots:
    rows, lengths = candidate_rows(pre, spec, examples, demonstrations(train, k, seed),
                                   template, verbalizers, separator)
    logp = continuation_scores(pre, rows, lengths, batch_size, bar)
    if normalize:
      logp = logp / np.asarray(lengths)
    predictions = logp.reshape(len(examples), len(spec.labels)).argmax(axis=1).tolist()
    out[k] = {'metrics': scores.compute(spec.metrics, truths, predictions),
              'confusion_matrix': scores.confusion_matrix(truths, predictions,
                                                          len(spec.labels)).tolist(),
              'predictions': predictions}
  bar.close()
  return out
