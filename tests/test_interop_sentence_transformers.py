"""sentence-transformers' modules.json: the pooling and normalisation `encode` takes by
default, what is given wins, and a pooling ssljax lacks is refused in one line."""

import json

import pytest

from ssljax.errors import UserError
from ssljax.interop import sentence_transformers

MODULES = [{'idx': 0, 'name': '0', 'path': '', 'type': 'sentence_transformers.models.Transformer'},
           {'idx': 1, 'name': '1', 'path': '1_Pooling',
            'type': 'sentence_transformers.models.Pooling'}]
NORMALIZE = {'idx': 2, 'name': '2', 'path': '2_Normalize',
             'type': 'sentence_transformers.models.Normalize'}


def _folder(tmp_path, modes, normalize):
  (tmp_path / '1_Pooling').mkdir()
  (tmp_path / '1_Pooling' / 'config.json').write_text(json.dumps(
      {'word_embedding_dimension': 32, 'pooling_mode_cls_token': False,
       'pooling_mode_mean_tokens': False} | {f'pooling_mode_{m}': True for m in modes}))
  (tmp_path / 'modules.json').write_text(json.dumps(MODULES + [NORMALIZE] * normalize))
  return tmp_path


@pytest.mark.parametrize('modes, normalize, want', [
    (['mean_tokens'], True, ('mean', True)), (['cls_token'], False, ('first', False)),
    (['lasttoken'], True, ('last', True))])
def test_modules_json_names_the_defaults(tmp_path, modes, normalize, want):
  folder = _folder(tmp_path, modes, normalize)
  assert sentence_transformers.encode_settings(folder) == want
  assert sentence_transformers.encode_settings(folder, 'cls', None) == ('cls', want[1])
  assert sentence_transformers.encode_settings(folder, None, False) == (want[0], False)


def test_no_modules_json_is_mean_without_normalising(tmp_path):
  assert sentence_transformers.encode_settings(tmp_path) == ('mean', False)
  assert sentence_transformers.encode_settings(tmp_path, 'last', True) == ('last', True)


def test_a_pooling_ssljax_lacks_is_refused_unless_one_is_given(tmp_path):
  folder = _folder(tmp_path, ['max_tokens'], True)
  with pytest.raises(UserError, match='pools by pooling_mode_max_tokens.*--pooling'):
    sentence_transformers.encode_settings(folder)
  assert sentence_transformers.encode_settings(folder, 'mean') == ('mean', True)
  (tmp_path / 'modules.json').write_text('{not json')
  with pytest.raises(UserError, match='modules.json is not readable JSON'):
    sentence_transformers.encode_settings(folder)
