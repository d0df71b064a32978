"""`predict` gives one output per input line, with its line number and text, blank lines
marked skipped, so outputs line up with inputs as `encode`'s do; an empty checkpoints/ says
what is missing."""

import pytest
from flax import nnx

from ssljax.adapt import finetune, predict
from ssljax.errors import UserError
from ssljax.inference import loading

import adapt_helpers
from adapt_helpers import SST2, _settings

tok, bert = adapt_helpers.tok, adapt_helpers.bert  # fixtures


def test_every_line_has_its_output(bert, tok, tmp_path):
  params = nnx.to_pure_dict(nnx.state(finetune.Tuned(bert, SST2, 'cls', rngs=nnx.Rngs(0))))
  finetune.save(tmp_path / 'model', params, bert.cfg, SST2, _settings(), tok)
  (tmp_path / 'in.txt').write_text('a fine film\n\n   \nthe function returns\n')
  out = predict.predict(tmp_path / 'model', input_path=tmp_path / 'in.txt')
  assert [(p['line'], p['input']) for p in out] == [
      (1, 'a fine film'), (2, ''), (3, '   '), (4, 'the function returns')]
  assert [p.get('skipped') for p in out] == [None, 'blank line', 'blank line', None]
  assert out[0]['label'] in SST2.labels and out[3]['label'] in SST2.labels


def test_an_empty_checkpoints_folder_says_so(tmp_path):
  (tmp_path / 'checkpoints').mkdir()
  with pytest.raises(UserError, match='checkpoints holds no finished checkpoint yet'):
    loading.load(tmp_path)
