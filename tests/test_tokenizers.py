"""Tests for ssljax.tokenizers: fixed special ids, round trips, determinism, errors."""

import pathlib

import numpy as np
import pytest
import sentencepiece as spm

from ssljax import tokenizers as tokenizer_lib
from ssljax.errors import UserError

SYNTHETIC = pathlib.Path(__file__).parent / 'fixtures' / 'synthetic.txt'


def synthetic_documents() -> list[str]:
  """Sixty documents of made-up words, one or more lines each."""
  return SYNTHETIC.read_text().strip().split('\n\n')


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  prefix = tmp_path_factory.mktemp('tok') / 'sp'
  return tokenizer_lib.train(synthetic_documents(), 200, prefix)


def test_train_writes_the_model_file(tmp_path):
  tokenizer = tokenizer_lib.train(synthetic_documents()[:10], 100, tmp_path / 'sub' / 'm')
  assert (tmp_path / 'sub' / 'm.model').read_bytes() == tokenizer.model_proto


def test_special_ids_are_fixed(tok):
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
  np.testing.assert_array_equal(tok.special_ids, [0, 1, 2, 3, 4])
  processor = spm.SentencePieceProcessor(model_proto=tok.model_proto)
  assert [processor.id_to_piece(i) for i in range(5)] == list(tokenizer_lib.SPECIAL_TOKENS)
  assert 100 < tok.vocab_size <= 200


def test_round_trip(tok):
  texts = [' '.join(t.split()) for t in synthetic_documents()[:5]]
  encoded = tok.encode(texts)
  assert all(ids.dtype == np.int32 and ids.ndim == 1 for ids in encoded)
  assert [tok.decode(ids) for ids in encoded] == texts


def test_plain_text_never_produces_control_tokens(tok):
  (ids,) = tok.encode(['[CLS] kalo [SEP] mine [MASK] [PAD]'])
  assert not np.isin(ids, [tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id]).any()
  assert tok.decode([tok.cls_id, *tok.encode(['kalo'])[0], tok.sep_id, tok.pad_id]) == 'kalo'


def test_unknown_characters_map_to_unk(tok):
  (ids,) = tok.encode(['ka \u4e2d lo'])
  assert tok.unk_id in ids


def test_training_is_deterministic(tmp_path):
  documents = synthetic_documents()
  first = tokenizer_lib.train(documents, 200, tmp_path / 'a')
  second = tokenizer_lib.train(documents, 200, tmp_path / 'b')
  assert first.model_proto == second.model_proto


def test_small_corpus_gives_a_smaller_vocab(tmp_path):
  tokenizer = tokenizer_lib.train(['ka lo mi'], 200, tmp_path / 'tiny')
  assert 5 < tokenizer.vocab_size < 200


def test_word_start_and_normal_ids(tok):
  processor = spm.SentencePieceProcessor(model_proto=tok.model_proto)
  for i in range(tok.vocab_size):
    expected = i < 5 or processor.id_to_piece(i).startswith('\u2581')
    assert tok.word_start[i] == expected, processor.id_to_piece(i)
  assert tok.word_start.shape == (tok.vocab_size,) and tok.word_start.dtype == bool
  text = 'kalomi ne rugor tabeso'
  (ids,) = tok.encode([text])
  assert tok.word_start[ids].sum() == len(text.split())
  assert tok.word_start[ids[0]]
  np.testing.assert_array_equal(tok.normal_ids, np.arange(5, tok.vocab_size))
  assert tok.normal_ids.dtype == np.int32


def test_save_and_load(tok, tmp_path):
  path = tok.save(tmp_path / 'run')
  assert path == tmp_path / 'run' / 'tokenizer.model'
  for source in (path, tmp_path / 'run'):
    loaded = tokenizer_lib.SentencePieceTokenizer.load(source)
    assert loaded.model_proto == tok.model_proto
    np.testing.assert_array_equal(loaded.word_start, tok.word_start)


def test_load_missing_file(tmp_path):
  with pytest.raises(UserError, match='tokenizer file .*missing.model does not exist'):
    tokenizer_lib.SentencePieceTokenizer.load(tmp_path / 'missing.model')


def test_load_corrupt_file(tmp_path):
  path = tmp_path / 'corrupt.model'
  path.write_bytes(b'not a sentencepiece model')
  with pytest.raises(UserError, match='corrupt.model is not a SentencePiece model'):
    tokenizer_lib.SentencePieceTokenizer.load(path)


def test_load_model_without_ssljax_special_tokens(tmp_path):
  spm.SentencePieceTrainer.train(sentence_iterator=iter(synthetic_documents()),
                                 model_prefix=str(tmp_path / 'plain'), vocab_size=60,
                                 hard_vocab_limit=False, minloglevel=2)
  with pytest.raises(UserError, match=r'does not have ssljax special tokens'):
    tokenizer_lib.SentencePieceTokenizer.load(tmp_path / 'plain.model')


def test_train_on_empty_corpus(tmp_path):
  with pytest.raises(UserError, match='corpus has no text'):
    tokenizer_lib.train(['', '  \n '], 200, tmp_path / 'empty')


def test_train_with_vocab_below_the_alphabet(tmp_path):
  with pytest.raises(UserError, match='vocab_size=10 .*tokenizer.vocab_size'):
    tokenizer_lib.train(['abcdefghijklmnopqrstuvwxyz'], 10, tmp_path / 'small')


def test_train_with_unknown_model_type(tmp_path):
  with pytest.raises(UserError, match="tokenizer.model_type='wordpiece' is not one of"):
    tokenizer_lib.train(['ka lo'], 50, tmp_path / 'm', model_type='wordpiece')
