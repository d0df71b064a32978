"""ssljax.data.corpus: every source, every user error, the held-out split."""

import json
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ssljax import config
from ssljax.data import corpus
from ssljax.errors import UserError


def _data_cfg(**overrides):
  data_cfg = config.base().data
  data_cfg.update(overrides)
  return data_cfg


class SsljaxTestText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Three short documents, read back the way a user's own dataset would be."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'text': tfds.features.Text(),
            'index': tfds.features.Scalar(np.int32),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(3), 'test': self._generate_examples(1)}

  def _generate_examples(self, count):
    for i in range(count):
      yield i, {'text': f'document {i}: caf\u00e9 au lait', 'index': i}


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  SsljaxTestText(data_dir=str(data_dir), file_format='array_record').download_and_prepare()
  return data_dir


def test_embedded_is_large_clean_and_deterministic():
  documents = corpus.load_documents(_data_cfg(source='embedded'))
  chars = sum(map(len, documents))
  assert 1_000_000 < chars < 4_000_000
  assert len(documents) > 200
  assert all(d == d.strip() and '\n\n\n' not in d for d in documents)
  assert any('The "assert" statement' in d for d in documents)  # pydoc topics
  assert any(d.startswith('Text wrapping and filling.') for d in documents)  # textwrap.py
  corpus.embedded_documents.cache_clear()
  assert corpus.load_documents(_data_cfg(source='embedded')) == documents


def test_embedded_needs_no_tensorflow():
  corpus.load_documents(_data_cfg(source='embedded'))
  assert 'tensorflow' not in sys.modules


def test_text_file_splits_on_blank_lines(tmp_path):
  file = tmp_path / 'corpus.txt'
  file.write_bytes(b'\xef\xbb\xbffirst doc\nstill first\r\n\r\nsecond\n \n\t\n\n\nthird\n\n')
  documents = corpus.load_documents(_data_cfg(source='text', path=str(file)))
  assert documents == ['first doc\nstill first', 'second', 'third']


def test_text_folder_reads_txt_files_in_sorted_order(tmp_path):
  (tmp_path / 'b.txt').write_text('bee\n\nbuzz\n')
  (tmp_path / 'a.txt').write_text('ant\n')
  (tmp_path / 'sub').mkdir()
  (tmp_path / 'sub' / 'c.txt').write_text('cicada')
  (tmp_path / 'notes.md').write_text('ignored')
  documents = corpus.load_documents(_data_cfg(source='text', path=str(tmp_path)))
  assert documents == ['ant', 'bee', 'buzz', 'cicada']


def test_jsonl_reads_the_text_field(tmp_path):
  file = tmp_path / 'corpus.jsonl'
  lines = [json.dumps({'body': 'one\n\ntwo', 'id': 1}), '', json.dumps({'body': 'three'})]
  file.write_text('\n'.join(lines) + '\n')
  documents = corpus.load_documents(_data_cfg(source='jsonl', path=str(file),
                                              text_field='body'))
  assert documents == ['one\n\ntwo', 'three']


def test_tfds_reads_an_array_record_dataset(tfds_dir):
  data_cfg = _data_cfg(source='tfds', tfds_name='ssljax_test_text', tfds_split='train',
                       tfds_data_dir=str(tfds_dir))
  documents = corpus.load_documents(data_cfg)
  assert sorted(documents) == [f'document {i}: caf\u00e9 au lait' for i in range(3)]
  assert 'tensorflow' not in sys.modules


@pytest.mark.parametrize('overrides, message', [
    ({'tfds_name': 'no_such_dataset_xyz'}, 'no_such_dataset_xyz'),
    ({'tfds_split': 'validation'}, 'validation'),
    ({'text_field': 'body'}, "no feature 'body'"),
    ({'tfds_name': ''}, 'data.tfds_name'),
])
def test_tfds_errors(tfds_dir, overrides, message):
  data_cfg = _data_cfg(source='tfds', tfds_name='ssljax_test_text', tfds_split='train',
                       tfds_data_dir=str(tfds_dir))
  data_cfg.update(overrides)
  with pytest.raises(UserError, match=message):
    corpus.load_documents(data_cfg)


def test_missing_path(tmp_path):
  missing = tmp_path / 'nope.txt'
  with pytest.raises(UserError, match=f'{missing} does not exist'):
    corpus.load_documents(_data_cfg(source='text', path=str(missing)))
  with pytest.raises(UserError, match='needs data.path'):
    corpus.load_documents(_data_cfg(source='jsonl', path=''))


def test_folder_without_txt_files(tmp_path):
  (tmp_path / 'data.csv').write_text('a,b')
  with pytest.raises(UserError, match=r'without \.txt files'):
    corpus.load_documents(_data_cfg(source='text', path=str(tmp_path)))


def test_blank_corpus(tmp_path):
  file = tmp_path / 'blank.txt'
  file.write_text('\n  \n\n')
  with pytest.raises(UserError, match='no non-blank document'):
    corpus.load_documents(_data_cfg(source='text', path=str(file)))


def test_invalid_utf8_names_file_byte_and_line(tmp_path):
  file = tmp_path / 'latin1.txt'
  file.write_bytes('ok\nna\u00efve\n'.encode('latin-1'))
  with pytest.raises(UserError, match=r'latin1\.txt is not valid UTF-8 \(byte 5, line 2\)'):
    corpus.load_documents(_data_cfg(source='text', path=str(file)))


@pytest.mark.parametrize('name,lines,message', [
    ('bad.jsonl', '{"text": "fine"}\n{"text": oops}\n', r'bad\.jsonl:2 is not valid JSON'),
    ('fields.jsonl', '{"text": "fine"}\n{"body": "x", "id": 3}\n',
     r"fields\.jsonl:2 has no 'text' field \(found: body, id\)"),
    ('types.jsonl', '{"text": ["a", "b"]}\n', r"types\.jsonl:1: field 'text' is a list"),
])
def test_malformed_jsonl(name, lines, message, tmp_path):
  file = tmp_path / name
  file.write_text(lines)
  with pytest.raises(UserError, match=message):
    corpus.load_documents(_data_cfg(source='jsonl', path=str(file)))


def test_split_documents():
  docs = [f'doc {i}' for i in range(100)]
  train, held = corpus.split_documents(docs, 0.05, seed=0)
  assert len(held) == 5 and sorted(train + held) == sorted(docs)
  assert [d for d in docs if d in train] == train  # order kept
  assert corpus.split_documents(docs, 0.05, seed=0) == (train, held)
  assert corpus.split_documents(docs, 0.05, seed=1)[1] != held
  assert len(corpus.split_documents(docs[:3], 0.01, seed=0)[1]) == 1  # at least one
  assert len(corpus.split_documents(docs[:3], 0.99, seed=0)[0]) == 1  # never all
  assert corpus.split_documents(docs, 0.0, seed=0) == (docs, [])
  assert corpus.split_documents(['0123456789'], 0.2, seed=0) == (['01234567'], ['89'])
