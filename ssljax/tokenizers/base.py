"""What the data pipeline, the models and the checkpoints need of a tokenizer.

Two implementations sit behind it: `sentencepiece` (what ssljax trains) and `huggingface`
(the `tokenizers` library, for imported models). Both map the same five roles to ids.
"""

from typing import Protocol

import numpy as np

PAD, UNK, CLS, SEP, MASK = '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)  # in id order: [PAD] is 0 ... [MASK] is 4
WORD_PREFIX = '\u2581'  # '▁', SentencePiece's mark for a piece that starts a word


def causal_start_id(tokenizer) -> int:
  """The token a causal LM reads before a text (an empty context starts from it). An
  ssljax tokenizer's [SEP]: its GPT read [SEP] between documents, as GPT-2 reads
  <|endoftext|>. A Hugging Face tokenizer's BOS (its cls role falls back to bos, then
  eos): where transformers' generate and lm-eval's hf model start, e.g. Llama's <s>."""
  return tokenizer.sep_id if tokenizer.kind == 'sentencepiece' else tokenizer.cls_id


class Tokenizer(Protocol):
  """Batch encoding to int32 arrays plus the per-id tables the data pipeline needs."""

  kind: str  # 'sentencepiece' | 'hf': stored in checkpoints to read `model_proto` back
  pad_id: int
  unk_id: int
  cls_id: int
  sep_id: int
  mask_id: int
  vocab_size: int
  special_ids: np.ndarray  # int32 ids that masking and prediction never choose
  normal_ids: np.ndarray  # the rest: what a random MLM replacement draws from
  word_start: np.ndarray  # bool per id: the piece begins a word

  @property
  def model_proto(self) -> bytes: ...

  def save(self, directory): ...

  def encode(self, texts: list[str]) -> list[np.ndarray]: ...

  def decode(self, ids) -> str: ...
