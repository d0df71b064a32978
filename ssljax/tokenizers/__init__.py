"""Tokenizers behind one protocol (`base.Tokenizer`): sentencepiece, which ssljax trains,
and Hugging Face `tokenizers`, loaded only when a Hugging Face tokenizer is asked for."""

from ssljax import paths
from ssljax.errors import UserError
from ssljax.tokenizers.base import SPECIAL_TOKENS, Tokenizer, causal_start_id
from ssljax.tokenizers.sentencepiece import SentencePieceTokenizer, train

__all__ = ['SPECIAL_TOKENS', 'SentencePieceTokenizer', 'Tokenizer', 'causal_start_id',
           'from_proto', 'load', 'train']


def _kinds() -> dict:
  from ssljax.tokenizers import huggingface  # needs `tokenizers`
  return {SentencePieceTokenizer.kind: SentencePieceTokenizer,
          huggingface.HFTokenizer.kind: huggingface.HFTokenizer}


def from_proto(kind: str, proto: bytes, origin: str = '<bytes>') -> Tokenizer:
  """The tokenizer of `kind` ('sentencepiece' or 'hf') serialised as `proto`."""
  if kind == SentencePieceTokenizer.kind:
    return SentencePieceTokenizer(proto, origin)
  kinds = _kinds()
  if kind not in kinds:
    raise UserError(f'{origin} has tokenizer kind {kind!r}; this ssljax knows '
                    f'{", ".join(kinds)}')
  return kinds[kind].from_proto(proto, origin)


def load(path: str | paths.Path) -> Tokenizer:
  """A sentencepiece .model, a Hugging Face tokenizer.json, or a folder `save` wrote."""
  path = paths.path(path)
  if path.suffix == '.json' or (path / 'tokenizer.json').is_file():
    return _kinds()['hf'].load(path)
  return SentencePieceTokenizer.load(path)
