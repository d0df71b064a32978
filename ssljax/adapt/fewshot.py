"""Zero-, one- and few-shot classification by prompting a causal LM.

Each label has a verbaliser (e.g. ' positive'); the model reads a prompt of k
demonstrations (the template filled with a training example, then its label's verbaliser,
joined by `separator`) followed by the filled template of the query, and the label whose
verbaliser is most likely next wins: the sum of its tokens' log-probabilities, or their
mean with `normalize`. The k demonstrations are one fixed set per seed, drawn from train
with the labels as balanced as k allows, so seeds measure the spread that the choice of
demonstrations causes. A prompt longer than the model's positions drops demonstrations
from the left, then cuts the query from the left; the verbaliser is never cut. The
continuations are scored by `inference.scoring`.
"""

import logging
import weakref

import numpy as np

from ssljax import progress
from ssljax.errors import UserError
from ssljax.inference import scoring
from ssljax.pretrained import Pretrained
from ssljax.tasks import scores
from ssljax.tasks.readers import Example, TaskSpec

log = logging.getLogger(__name__)


def check(pre: Pretrained, spec: TaskSpec, template: str, verbalizers) -> None:
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


def demonstrations(train: list[Example], k: int, seed: int) -> list[Example]:
  """k training examples drawn by `seed`, the labels taken in turn so they are balanced."""
  rng = np.random.default_rng(seed)
  by_label: dict[object, list[Example]] = {}
  for i in rng.permutation(len(train)):
    by_label.setdefault(train[i].label, []).append(train[i])
  pools = list(by_label.values())
  chosen: list[Example] = []
  while len(chosen) < min(k, len(train)):  # round robin over the labels not yet used up
    chosen += [pool.pop() for pool in pools if pool][:k - len(chosen)]
  return [chosen[i] for i in rng.permutation(len(chosen))]


def candidate_rows(pre: Pretrained, spec: TaskSpec, examples: list[Example],
                   demos: list[Example], template: str, verbalizers,
                   separator: str) -> tuple[list[np.ndarray], list[int]]:
  """([prompt + verbaliser ids], [scored length]) for every (example, label), label-minor."""
  tok = pre.tokenizer
  limit = pre.model_cfg.context_length
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


# The last zero-shot result: with no demonstrations it does not depend on the seed, so the
# seeds of a run score it once. It is reused only for the same model (a weak reference, so
# a model that is gone never matches), the same examples (held) and the same prompt.
_zero_shot: dict = {}


def _cached_zero_shot(pre, examples, prompt) -> dict | None:
  if not _zero_shot or _zero_shot['model']() is not pre.model:
    return None
  return _zero_shot['result'] if (_zero_shot['examples'] is examples and
                                  _zero_shot['prompt'] == prompt) else None


def classify(pre: Pretrained, spec: TaskSpec, train: list[Example], examples: list[Example],
             *, template: str, verbalizers, shots, seed: int, batch_size: int = 16,
             normalize: bool = False, separator: str = '\n\n',
             show_progress: bool = False) -> dict:
  """{k: {'metrics', 'confusion_matrix', 'predictions'}} on `examples` for each k in shots;
  `show_progress`: a bar over the batches on stderr. Zero-shot is scored once for a model
  and its examples, whatever the seed."""
  check(pre, spec, template, verbalizers)
  truths = [e.label for e in examples]
  batches = -(-len(examples) * len(spec.labels) // batch_size)
  prompt = (template, tuple(verbalizers), normalize, separator)
  cached = _cached_zero_shot(pre, examples, prompt) if 0 in shots else None
  bar = progress.bar(show_progress, (len(shots) - (cached is not None)) * batches,
                     f'{spec.name} prompts seed {seed}', 'batch')
  out = {}
  for k in shots:
    if k == 0 and cached is not None:
      out[k] = cached
      continue
    rows, lengths = candidate_rows(pre, spec, examples, demonstrations(train, k, seed),
                                   template, verbalizers, separator)
    logp = scoring.continuation_scores(pre, rows, lengths, batch_size, bar)
    if normalize:
      logp = logp / np.asarray(lengths)
    predictions = logp.reshape(len(examples), len(spec.labels)).argmax(axis=1).tolist()
    out[k] = {'metrics': scores.compute(spec.metrics, truths, predictions),
              'confusion_matrix': scores.confusion_matrix(truths, predictions,
                                                          len(spec.labels)).tolist(),
              'predictions': predictions}
    if k == 0:
      _zero_shot.update(model=weakref.ref(pre.model), examples=examples, prompt=prompt,
                        result=out[k])
  bar.close()
  return out
