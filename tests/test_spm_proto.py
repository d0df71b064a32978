"""sentencepiece models read from the wire format equal what protobuf's own parser reads.

The reference is the generated ModelProto that transformers converts with (`import_protobuf`:
sentencepiece's own, which loads on protobuf 6 below 0.2.3); pieces and scores are also
checked against sentencepiece's processor.
"""

import pytest
import sentencepiece

from ssljax.errors import UserError
from ssljax.tokenizers import spm_proto


@pytest.fixture(scope='module')
def reference():
  from transformers.convert_slow_tokenizer import import_protobuf
  return import_protobuf()


@pytest.fixture(params=['unigram', 'bpe'])
def model_proto(request, corpus_file, tmp_path):
  prefix = tmp_path / request.param
  sentencepiece.SentencePieceTrainer.train(
      input=str(corpus_file), model_prefix=str(prefix), vocab_size=300,
      model_type=request.param, user_defined_symbols=['[MASK]'], control_symbols=['[CLS]'],
      unk_id=1, pad_id=0, bos_id=-1, eos_id=-1, minloglevel=2)
  return prefix.with_suffix('.model').read_bytes()


def test_fields_equal_protobufs_own_parser(model_proto, reference):
  ours, theirs = spm_proto.parse(model_proto), reference.ModelProto()
  theirs.ParseFromString(model_proto)
  assert [(p.piece, p.score, p.type) for p in ours.pieces] == [
      (p.piece, p.score, p.type) for p in theirs.pieces]
  assert ours.model_type == theirs.trainer_spec.model_type
  assert ours.unk_id == theirs.trainer_spec.unk_id == 1
  assert ours.precompiled_charsmap == theirs.normalizer_spec.precompiled_charsmap != b''


def test_pieces_equal_the_processors(model_proto):
  processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
  ours = spm_proto.parse(model_proto)
  assert [p.piece for p in ours.pieces] == [processor.id_to_piece(i)
                                            for i in range(processor.get_piece_size())]
  assert [p.score for p in ours.pieces] == pytest.approx(
      [processor.get_score(i) for i in range(processor.get_piece_size())])
  assert [i for i, p in enumerate(ours.pieces) if p.type == spm_proto.CONTROL] == [
      i for i in range(processor.get_piece_size()) if processor.is_control(i)]


@pytest.mark.parametrize('damage', [lambda b: b[:len(b) // 2], lambda b: b'\xff' * 20])
def test_a_damaged_model_is_one_line(damage, corpus_file, tmp_path):
  prefix = tmp_path / 'm'
  sentencepiece.SentencePieceTrainer.train(input=str(corpus_file), model_prefix=str(prefix),
                                           vocab_size=300, minloglevel=2)
  with pytest.raises(UserError, match='not a readable sentencepiece model'):
    spm_proto.parse(damage(prefix.with_suffix('.model').read_bytes()))
