"""A loaded model with the calls a notebook makes: `ssljax.from_pretrained(CKPT)` returns
one (`Model`, a `Pretrained` that every function taking one still takes).

  pre.logits(texts)    the MLM (encoders) or next-token (GPT) logits at each token
  pre.score(texts)     log p(text) under a causal LM, read after its start token
  pre.encode(texts)    one pooled feature vector per text (`ssljax encode`'s features)

Each batches texts by length with a fixed batch size (a few compiled programs per call)
and shows a progress bar on stderr when the call has more than one batch.
"""

import dataclasses
import functools

import jax
import numpy as np
from flax import nnx

from ssljax import progress, tokenizers
from ssljax.data import rows as rows_lib
from ssljax.errors import UserError
from ssljax.inference import batching, encoding, scoring
from ssljax.pretrained import Pretrained


@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef, state, batch):
  model = nnx.merge(graphdef, state)
  hidden_BxLxH = model(batch)
  if hasattr(model, 'lm_logits'):
    return model.lm_logits(hidden_BxLxH)
  return model.mlm_logits(hidden_BxLxH)


def _texts(texts, call: str) -> list[str]:
  texts = [texts] if isinstance(texts, str) else list(texts)
  if not all(isinstance(t, str) for t in texts):
    raise UserError(f'{call} takes a string or a list of strings')
  return texts


@dataclasses.dataclass(repr=False)
class Model(Pretrained):
  """A `Pretrained` with logits, score and encode (see the module docstring)."""

  # (pooling, normalize) `encode` uses by default: a sentence-transformers folder's own
  # (its modules.json), else mean pooling without normalising.
  encode_defaults: tuple[str, bool] = ('mean', False)

  @classmethod
  def of(cls, pre: Pretrained, encode_defaults=('mean', False)) -> 'Model':
    return cls(**{f.name: getattr(pre, f.name) for f in dataclasses.fields(Pretrained)},
               encode_defaults=encode_defaults)

  def __repr__(self):
    cfg = self.model_cfg
    params = sum(x.size for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(self.model))))
    return (f'ssljax {cfg.arch} model: {cfg.num_layers} layers, hidden {cfg.hidden_size}, '
            f'{params / 1e6:.2f} M parameters, {cfg.context_length} positions, step '
            f'{self.step}, {self.tokenizer.kind} tokenizer of {self.tokenizer.vocab_size} '
            'tokens')

  def token_ids(self, texts) -> list[np.ndarray]:
    """The ids the model reads for each text (`[CLS] text [SEP]` for encoders)."""
    return encoding.token_rows(self, _texts(texts, 'token_ids'))

  def logits(self, texts, batch_size: int = 8, show_progress: bool = True) -> list[np.ndarray]:
    """float32 [tokens, vocab] logits of each text, one array per text over its
    `token_ids`: an encoder's MLM logits at every position, a causal LM's logits for the
    token after each position."""
    rows = self.token_ids(texts)
    graphdef, state = nnx.split(self.model)
    limit = self.model_cfg.context_length
    out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(rows)
    groups = batching.by_length([len(r) for r in rows], batch_size)
    with progress.bar(show_progress and len(groups) > 1, len(groups), 'logits',
                      unit='batch') as bar:
      for index in groups:
        length = rows_lib.padded_length(max(len(rows[i]) for i in index), limit)
        batch = encoding._batch([rows[i] for i in index], batch_size, length,
                                self.tokenizer.pad_id)
        got = np.asarray(_logits(graphdef, state, batch), np.float32)
        for j, i in enumerate(index):
          out[i] = got[j, :len(rows[i])]
        bar.update(1)
    return out

  def score(self, texts, batch_size: int = 16, show_progress: bool = True) -> np.ndarray:
    """log p(text) of each text under a causal LM (natural log, summed over its tokens),
    each read after the start token an empty context has; an encoder has no such
    probability and is refused."""
    if self.model_cfg.arch != 'gpt':
      raise UserError(f'score needs a causal LM (model.arch=gpt); this is a '
                      f'{self.model_cfg.arch} model: use logits for its MLM logits')
    texts = _texts(texts, 'score')
    if empty := [i for i, t in enumerate(texts) if not t]:
      raise UserError(f'score: text {empty[0]} is empty; a text needs a token to score')
    start = tokenizers.causal_start_id(self.tokenizer)
    limit = self.model_cfg.context_length
    rows = [np.concatenate([[start], ids])[:limit + 1].astype(np.int32)
            for ids in self.tokenizer.encode(texts)]
    batches = len(batching.by_length([len(r) for r in rows], batch_size))
    with progress.bar(show_progress and batches > 1, batches, 'score', unit='batch') as bar:
      return scoring.continuation_scores(self, rows, [len(r) - 1 for r in rows], batch_size,
                                         bar)

  def encode(self, texts, pooling: str | None = None, normalize: bool | None = None,
             batch_size: int = 64, show_progress: bool = True) -> np.ndarray:
    """[texts, hidden] float32 features (`ssljax encode`), unit length with `normalize`;
    None takes `encode_defaults`."""
    pooling = self.encode_defaults[0] if pooling is None else pooling
    normalize = self.encode_defaults[1] if normalize is None else normalize
    return encoding.sentence_features(self, _texts(texts, 'encode'), pooling, batch_size,
                                      normalize=normalize, show_progress=show_progress)

