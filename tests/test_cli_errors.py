"""Bad input: one readable line from the CLI, exit code 2, no traceback."""

import pytest

from ssljax import cli

from conftest import tiny_overrides

CONFIG = 'configs/bert_tiny.py'


def run_cli(capsys, *args):
  code = cli.main(list(args))
  err = capsys.readouterr().err
  assert 'Traceback' not in err
  return code, err


def pretrain(capsys, workdir, corpus, *sets, **overrides):
  args = ['pretrain', '--workdir', str(workdir)]
  for item in tiny_overrides(corpus, **overrides) + list(sets):
    args += ['--set', item]
  return run_cli(capsys, *args)


@pytest.fixture
def root(monkeypatch):
  import pathlib
  monkeypatch.chdir(pathlib.Path(__file__).parents[1])


CASES = {
    'unknown key': (['train.stepz=3'], {},
                    "unknown config key 'train.stepz'.*did you mean train.steps"),
    'unknown section': (['trian.steps=3'], {}, "unknown config key 'trian'.*did you mean train"),
    'wrong type': (['train.steps=many'], {}, r'--set train.steps=many: expected a int'),
    'bad choice': (['optimizer.name=sgd'], {}, "optimizer.name='sgd' is not one of adamw, lamb"),
    'arch vs objective': (['objective=clm'], {}, 'objective=clm does not fit model.arch=bert'),
    'probe layer': (['probe.layer=3'], {}, r'probe.layer=3: the model has blocks 1 to 2 \(0'),
    'missing corpus': ([], {'data.path': '/nonexistent/corpus.txt'}, '/nonexistent/corpus.txt'),
    'mesh vs devices': (['mesh.data=3'], {}, 'does not divide the 8 devices'),
    'mesh vs batch': (['mesh.data=8', 'train.batch_size=12'], {},
                      r'train.batch_size/train.grad_accum=12 is not divisible by mesh '
                      r'data\*fsdp=8'),
    'heads vs tensor': (['mesh.data=1', 'mesh.tensor=4'], {},
                        'model.num_heads=2 is not divisible by mesh.tensor=4'),
    'missing tokenizer': (['tokenizer.path=/nonexistent/tok.model'], {}, 'tokenizer file'),
}


@pytest.mark.parametrize('case', CASES)
def test_bad_config(case, capsys, tmp_path, corpus_file, root):
  sets, overrides, pattern = CASES[case]
  code, err = pretrain(capsys, tmp_path, corpus_file, *sets, **overrides)
  assert code == 2
  assert err.startswith('ssljax: error: ') and err.count('\n') == 1, err
  import re
  assert re.search(pattern, err), err


@pytest.mark.parametrize('content,pattern', [
    (b'', 'empty'),
    (b'\n\n  \n', 'empty'),
    (b'good text\n\n\xff\xfe bad bytes', 'UTF-8'),
])
def test_bad_corpus(content, pattern, capsys, tmp_path):
  corpus = tmp_path / 'corpus.txt'
  corpus.write_bytes(content)
  code, err = pretrain(capsys, tmp_path / 'run', corpus)
  assert code == 2 and pattern in err and str(corpus) in err, err


def test_nsp_needs_two_documents(capsys, tmp_path):
  corpus = tmp_path / 'one.txt'
  corpus.write_text(' '.join(f'word{i % 50} and more text' for i in range(3000)))
  code, err = pretrain(capsys, tmp_path / 'run', corpus, 'data.eval_fraction=0.0',
                       'tokenizer.vocab_size=100')
  assert code == 2 and 'two documents' in err, err


def test_unknown_key_in_config_file(capsys, tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('from ssljax import config\n\ndef get_config():\n  c = config.base()\n'
                 '  c.model.hiden_size = 8\n  return c\n')
  code, err = run_cli(capsys, 'pretrain', '--config', str(bad), '--workdir', str(tmp_path))
  assert code == 2 and "'model.hiden_size'" in err and 'model.hidden_size' in err, err


def test_missing_config_file(capsys, tmp_path):
  code, err = run_cli(capsys, 'pretrain', '--config', 'nope.py', '--workdir', str(tmp_path))
  assert code == 2 and 'nope.py does not exist' in err


@pytest.mark.slow
def test_resume_with_another_model_is_refused(capsys, tmp_path, corpus_file, tokenizer_file):
  assert pretrain(capsys, tmp_path, corpus_file, f'tokenizer.path={tokenizer_file}',
                  'train.steps=3')[0] == 0
  code, err = pretrain(capsys, tmp_path, corpus_file, f'tokenizer.path={tokenizer_file}',
                       'train.steps=6', 'model.hidden_size=64')
  assert code == 2 and 'model.hidden_size: 32 -> 64' in err, err


def test_help_explains_itself(capsys):
  with pytest.raises(SystemExit):
    cli.main(['pretrain', '--help'])
  out = capsys.readouterr().out
  assert '--set KEY=VALUE' in out and 'continues from the latest' in out


def test_a_path_without_write_permission_is_one_line(capsys, tmp_path, monkeypatch):
  """Object stores answer a missing bucket permission with PermissionError (gcsfs, s3fs)."""
  def refuse(*args, **kwargs):
    raise PermissionError(13, 'Forbidden', 'gs://bucket/run/metrics.jsonl')
  monkeypatch.setattr('ssljax.pretrain.loop.pretrain', refuse)
  code, err = run_cli(capsys, 'pretrain', '--workdir', 'gs://bucket/run')
  assert code == 2 and err.count('\n') == 1
  assert 'gs://bucket/run/metrics.jsonl: permission denied' in err and 'bucket' in err


def test_encode_input_that_is_not_utf8_is_one_line(capsys, tmp_path):
  source = tmp_path / 'latin1.txt'
  source.write_bytes('caf\xe9 au lait\n'.encode('latin-1'))
  code, err = run_cli(capsys, 'encode', '--checkpoint', str(tmp_path / 'unused'), '--input',
                      str(source), '--output', str(tmp_path / 'out.npy'))
  assert code == 2 and err.count('\n') == 1
  assert f'{source} is not valid UTF-8 (byte 3, line 1)' in err

