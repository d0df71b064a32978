"""SentencePiece tokenizers that ssljax trains, with BERT's special tokens at fixed ids.

The ids of [PAD], [UNK], [CLS], [SEP] and [MASK] are 0-4 so that data, model and
checkpoints agree without reading the vocabulary. [CLS], [SEP] and [MASK] are control
symbols: plain text never produces them, so a document cannot forge a separator.
"""

import io

import numpy as np
import sentencepiece as spm

from ssljax import paths
from ssljax.errors import UserError
from ssljax.tokenizers.base import CLS, MASK, PAD, SEP, SPECIAL_TOKENS, UNK, WORD_PREFIX

# A fixed thread count, not the machine's: the trained model depends on it.
_TRAIN_THREADS = 16
MODEL_TYPES = ('unigram', 'bpe', 'char', 'word')


def train(documents: list[str], vocab_size: int, model_prefix: str | paths.Path,
          model_type: str = 'unigram') -> 'SentencePieceTokenizer':
  """Trains a tokenizer on `documents` and writes `<model_prefix>.model`.

  The vocabulary size is a soft limit: a small corpus gives a smaller vocabulary
  rather than an error. The same documents always give the same model bytes.
  """
  if model_type not in MODEL_TYPES:
    raise UserError(f'tokenizer.model_type={model_type!r} is not one of '
                    f'{", ".join(MODEL_TYPES)}')
  lines = [line.strip() for d in documents for line in d.splitlines() if line.strip()]
  if not lines:
    raise UserError('cannot train a tokenizer: the corpus has no text')
  longest = max(len(line.encode('utf-8')) for line in lines)
  model = io.BytesIO()  # not model_prefix: the written file would embed its path
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type=model_type,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        pad_piece=PAD, unk_piece=UNK,
        control_symbols=[CLS, SEP, MASK],
        max_sentence_length=max(4192, longest),
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=_TRAIN_THREADS,
        minloglevel=2,
    )
  except RuntimeError as e:
    reason = str(e).split('] ', 1)[-1].strip().rstrip('.')
    chars = sum(map(len, lines))
    raise UserError(
        f'cannot train a {model_type} tokenizer with vocab_size={vocab_size} on '
        f'{len(lines)} lines ({chars} characters): {reason}; add text to the corpus '
        'or change tokenizer.vocab_size') from None
  tokenizer = SentencePieceTokenizer(model.getvalue())
  path = paths.path(f'{model_prefix}.model')
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(tokenizer.model_proto)
  return tokenizer


class SentencePieceTokenizer:
  """Batch encoding to int32 arrays plus the per-id tables the data pipeline needs."""

  kind = 'sentencepiece'

  def __init__(self, model_proto: bytes, origin: str = '<bytes>'):
    self._proto = bytes(model_proto)
    self._sp = spm.SentencePieceProcessor()
    try:
      self._sp.LoadFromSerializedProto(self._proto)
    except RuntimeError:
      raise UserError(f'{origin} is not a SentencePiece model; give a .model file '
                      'written by ssljax or leave tokenizer.path empty to train one') from None
    ids = [self._sp.piece_to_id(p) for p in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
      raise UserError(
          f'{origin} does not have ssljax special tokens {", ".join(SPECIAL_TOKENS)} at '
          'ids 0-4; train the tokenizer with ssljax (leave tokenizer.path empty)')
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids
    self.special_ids = np.asarray(ids, np.int32)
    self.vocab_size = self._sp.get_piece_size()
    pieces = [self._sp.id_to_piece(i) for i in range(self.vocab_size)]
    self.word_start = np.array([p.startswith(WORD_PREFIX) for p in pieces])
    self.word_start[self.special_ids] = True
    self.normal_ids = np.setdiff1d(
        np.arange(self.vocab_size, dtype=np.int32), self.special_ids)

  @classmethod
  def load(cls, path: str | paths.Path) -> 'SentencePieceTokenizer':
    """Reads a .model file, or `tokenizer.model` in a folder written by `save`."""
    path = paths.path(path)
    if path.is_dir():
      path = path / 'tokenizer.model'
    if not path.is_file():
      raise UserError(f'tokenizer file {path} does not exist; set tokenizer.path to a '
                      'SentencePiece .model file or leave it empty to train one')
    return cls(path.read_bytes(), origin=f'tokenizer file {path}')

  @property
  def model_proto(self) -> bytes:
    return self._proto

  def save(self, directory: str | paths.Path) -> paths.Path:
    """Writes `<directory>/tokenizer.model`, which `load(directory)` reads back."""
    path = paths.path(directory) / 'tokenizer.model'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(self._proto)
    return path

  def encode(self, texts: list[str]) -> list[np.ndarray]:
    """Token ids of each text (int32, no special tokens)."""
    return [np.asarray(ids, np.int32) for ids in self._sp.encode(list(texts))]

  def decode(self, ids) -> str:
    """Text of `ids`; special tokens decode to nothing."""
    return self._sp.decode([int(i) for i in np.asarray(ids).reshape(-1)])
