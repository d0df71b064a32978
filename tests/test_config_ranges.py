"""Every setting with a range is checked when the config is read, and the message names the
key, the value and the range."""

import pytest

from ssljax import cli, config as config_lib
from ssljax.adapt import run
from ssljax.errors import UserError


@pytest.mark.parametrize('item, message', [
    ('data.eval_fraction=1.5', r'data.eval_fraction=1.5 must lie in \[0, 1\)'),
    ('mlm.mask_fraction=-0.5', r'mlm.mask_fraction=-0.5 must lie in \[0, 1\]'),
    ('optimizer.learning_rate=-1', r'optimizer.learning_rate=-1.0 must lie in \(0, inf\)'),
    ('model.num_heads=0', r'model.num_heads=0 must lie in \[1, inf\)'),
    ('model.num_layers=0', r'model.num_layers=0 must lie in \[1, inf\)'),
    ('train.keep_checkpoints=-1', r'train.keep_checkpoints=-1 must lie in \[1, inf\)'),
    ('optimizer.b2=1.0', r'optimizer.b2=1.0 must lie in \[0, 1\)'),
    ('tokenizer.vocab_size=0', r'tokenizer.vocab_size=0 must lie in \[6, inf\)'),
    ('tokenizer.sample_chars=0', r'tokenizer.sample_chars=0 must lie in \[1, inf\)'),
])
def test_pretraining_ranges(item, message):
  with pytest.raises(UserError, match=message):
    config_lib.load(None, [item])


@pytest.mark.parametrize('item, message', [
    ('val_fraction=1.5', r'val_fraction=1.5 must lie in \(0, 1\)'),
    ('fewshot.shots=-1', r"fewshot.shots='-1' must be whole numbers >= 0"),
    ('fewshot.shots=a,b', r"fewshot.shots='a,b' must be whole numbers >= 0"),
    ('max_len=4', r'max_len=4 must lie in \[8, inf\)'),
    ('finetune.epochs=0', r'finetune.epochs=0 must lie in \[1, inf\)'),
])
def test_adaptation_ranges(item, message):
  with pytest.raises(UserError, match=message):
    run.load_settings([item])


def test_every_config_in_the_ranges():
  config_lib.validate(config_lib.base())
  run.load_settings([])


def test_tokenizer_vocab_size_zero_is_one_line(tmp_path, capsys):
  assert cli.main(['tokenizer', 'train', '--vocab-size', '0', '--out', str(tmp_path / 't')]) == 2
  assert capsys.readouterr().err == 'ssljax: error: --vocab-size=0 must lie in [6, inf)\n'
