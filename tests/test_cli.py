"""The command line end to end: tokenizer training, pretraining, plotting, --print-config."""

import subprocess
import sys

import pytest

from conftest import tiny_overrides
from ssljax import cli, tokenizers as tokenizer


def test_tokenizer_train(tmp_path, corpus_file, capsys):
  assert cli.main(['tokenizer', 'train', '--input', str(corpus_file), '--vocab-size', '300',
                   '--out', str(tmp_path / 'tok')]) == 0
  assert 'wrote' in capsys.readouterr().out
  tok = tokenizer.SentencePieceTokenizer.load(tmp_path / 'tok.model')
  assert tok.vocab_size == 300 and tok.mask_id == 4


@pytest.mark.slow
def test_pretrain_then_plot_in_a_fresh_process(tmp_path, corpus_file, tokenizer_file):
  sets = [a for o in tiny_overrides(corpus_file, **{'tokenizer.path': tokenizer_file,
                                                     'objective': 'mlm_sop'})
          for a in ('--set', o)]
  out = subprocess.run([sys.executable, '-m', 'ssljax.cli', 'pretrain', '--workdir',
                        str(tmp_path), *sets], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert out.stdout.startswith('done: ') and 'sop_accuracy' in out.stdout
  assert cli.main(['plot', str(tmp_path)]) == 0
  assert (tmp_path / 'loss.png').stat().st_size > 1000


def test_print_config(capsys):
  assert cli.main(['pretrain', '--workdir', 'x', '--print-config', '--set', 'train.steps=7']) == 0
  out = capsys.readouterr().out
  assert 'steps: 7' in out and 'objective: mlm_nsp' in out
