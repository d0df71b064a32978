"""The command line end to end: tokenizer training, pretraining, plotting, --print-config."""

import subprocess
import sys

import pytest

from ssljax import cli, tokenizers as tokenizer

from conftest import tiny_overrides


def test_tokenizer_train(tmp_path, corpus_file, capsys):
  assert cli.main(['tokenizer', 'train', '--input', str(corpus_file), '--vocab-size', '300',
                   '--out', str(tmp_path / 'tok')]) == 0
  assert 'wrote' in capsys.readouterr().out
  tok = tokenizer.SentencePieceTokenizer.load(tmp_path / 'tok.model')
  assert tok.vocab_size == 300 and tok.mask_id == 4


@pytest.mark.parametrize('out, written', [('dir/', 'dir/tokenizer.model'),
                                          ('tok.model', 'tok.model')])
def test_tokenizer_train_out_as_a_folder_or_a_file_name(tmp_path, corpus_file, capsys, out,
                                                        written):
  """Not dir/.model nor tok.model.model."""
  assert cli.main(['tokenizer', 'train', '--input', str(corpus_file), '--vocab-size', '300',
                   '--out', str(tmp_path) + '/' + out]) == 0
  assert f'wrote {tmp_path}/{written}:' in capsys.readouterr().out
  assert [str(p.relative_to(tmp_path)) for p in tmp_path.rglob('*.model')] == [written]


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


def test_a_machine_without_accelerators_starts_on_the_cpu_quietly(tmp_path):
  """With libtpu installed, jax tries a TPU at every start, and libtpu prints six lines of
  errors about host bounds and worker hostnames; the CLI sets JAX_PLATFORMS=cpu first."""
  import os

  from ssljax import chips
  from ssljax.cli.main import _cpu_without_accelerators
  if chips.present(chips.TPU_FILES + chips.GPU_FILES):
    pytest.skip('this machine has an accelerator')
  environ: dict[str, str] = {}
  _cpu_without_accelerators(environ)
  assert environ == {'JAX_PLATFORMS': 'cpu'}
  environ = {'JAX_PLATFORMS': 'tpu'}
  _cpu_without_accelerators(environ)
  assert environ == {'JAX_PLATFORMS': 'tpu'}  # the user's choice stays
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  code = ('from ssljax.cli.main import _cpu_without_accelerators as quiet; quiet(); '
          'import jax; print(jax.devices()[0].platform)')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
  assert result.stdout.strip() == 'cpu'
  assert result.stderr == ''
