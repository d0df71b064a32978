"""The fields of a sentencepiece model that its Hugging Face conversion needs, read from the
protobuf wire format.

sentencepiece's generated `sentencepiece_model_pb2` checks its gencode against the protobuf
runtime (0.2.3's needs protobuf >= 7, which Apache Beam's `protobuf < 7` rules out), so an
environment with both extras could not export. The wire format is stable and these are
five scalar fields: reading them here needs no protobuf at all.
"""

import dataclasses
import struct

from ssljax.errors import UserError

# sentencepiece_model.proto: SentencePiece.Type and TrainerSpec.ModelType values.
NORMAL, UNKNOWN, CONTROL = 1, 2, 3
UNIGRAM = 1


@dataclasses.dataclass(frozen=True)
class Piece:
  piece: str
  score: float
  type: int = NORMAL


@dataclasses.dataclass(frozen=True)
class ModelProto:
  pieces: list[Piece]
  model_type: int = UNIGRAM  # trainer_spec.model_type
  unk_id: int = 0  # trainer_spec.unk_id
  precompiled_charsmap: bytes = b''  # normalizer_spec.precompiled_charsmap


def _varint(buf: bytes, i: int) -> tuple[int, int]:
  value = shift = 0
  while True:
    byte = buf[i]
    value |= (byte & 0x7F) << shift
    i, shift = i + 1, shift + 7
    if byte < 0x80:
      return value, i


def _fields(buf: bytes) -> dict[int, list]:
  """field number -> its values in order: ints (varints) or bytes (everything else)."""
  found: dict[int, list] = {}
  i = 0
  while i < len(buf):
    key, i = _varint(buf, i)
    kind = key & 7
    value: int | bytes
    if kind == 0:
      value, i = _varint(buf, i)
    elif kind == 2:
      size, i = _varint(buf, i)
      value, i = buf[i:i + size], i + size
    elif kind in (1, 5):
      size = 8 if kind == 1 else 4
      value, i = buf[i:i + size], i + size
    else:
      raise ValueError(f'wire type {kind}')
    if i > len(buf):
      raise ValueError('truncated')
    found.setdefault(key >> 3, []).append(value)
  return found


def parse(proto: bytes) -> ModelProto:
  """The pieces and the conversion's settings of a serialised sentencepiece ModelProto."""
  try:
    model = _fields(proto)
    pieces = []
    for raw in model.get(1, []):
      piece = _fields(raw)
      pieces.append(Piece(piece[1][-1].decode('utf-8'),
                          struct.unpack('<f', piece[2][-1])[0] if 2 in piece else 0.0,
                          piece[3][-1] if 3 in piece else NORMAL))
    trainer = _fields(model[2][-1]) if 2 in model else {}
    normalizer = _fields(model[3][-1]) if 3 in model else {}
  except (IndexError, KeyError, ValueError, UnicodeDecodeError, struct.error) as e:
    raise UserError(f'the tokenizer is not a readable sentencepiece model ({e}); '
                    'train or load it again') from None
  return ModelProto(pieces, trainer.get(3, [UNIGRAM])[-1], trainer.get(40, [0])[-1],
                    normalizer.get(2, [b''])[-1])
