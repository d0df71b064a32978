"""What users keep survives a write that fails: a fine-tuned model, an export, results; an
export never lands in a pretraining run; damaged or non-finite parameters are one line."""

import errno
import json
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from ssljax import cli, paths
from ssljax.adapt import finetune
from ssljax.errors import UserError
from ssljax.inference import loading
from ssljax.interop import huggingface as hf

import adapt_helpers
from adapt_helpers import SST2, _settings

tok, bert = adapt_helpers.tok, adapt_helpers.bert  # fixtures


def _params(bert, seed):
  return jax.device_get(nnx.to_pure_dict(nnx.state(
      finetune.Tuned(bert, SST2, 'cls', rngs=nnx.Rngs(seed)))))


def _save(folder, params, bert, tok):
  return finetune.save(folder, params, bert.cfg, SST2, _settings(), tok)


def _full_disk(monkeypatch):
  """np.savez writes half of the file, then the disk is full."""
  real = np.savez

  def savez(f, **arrays):
    real(f, **arrays)
    f.truncate(f.tell() // 2)
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(np, 'savez', savez)


def test_a_failed_fine_tune_save_keeps_the_previous_model(bert, tok, tmp_path, monkeypatch):
  good = _params(bert, 0)
  _save(tmp_path / 'model', good, bert, tok)
  with monkeypatch.context() as patch:
    _full_disk(patch)
    with pytest.raises(OSError, match='No space left'):
      _save(tmp_path / 'model', _params(bert, 1), bert, tok)
  loaded = nnx.to_pure_dict(nnx.state(finetune.load(tmp_path / 'model')[0]))
  jax.tree.map(np.testing.assert_array_equal, loaded, good)
  assert [p.name for p in tmp_path.iterdir()] == ['model']  # no partial folder left
  assert sorted(p.name for p in (tmp_path / 'model').iterdir()) == [
      'meta.json', 'params.npz', 'tokenizer.bin']


def test_a_truncated_or_non_finite_model_is_one_line(bert, tok, tmp_path):
  params = _params(bert, 0)
  _save(tmp_path / 'model', params, bert, tok)
  npz = tmp_path / 'model' / 'params.npz'
  npz.write_bytes(npz.read_bytes()[:1000])
  with pytest.raises(UserError, match=r'model holds a truncated or invalid fine-tuned model'):
    finetune.load(tmp_path / 'model')
  params['head']['kernel'] = params['head']['kernel'] * np.nan
  _save(tmp_path / 'model', params, bert, tok)
  with pytest.raises(UserError, match=r"params.npz: parameter \['head'\]\['kernel'\] holds "
                     r'\d+ non-finite values'):
    finetune.load(tmp_path / 'model')
  params = _params(bert, 0)
  params['head']['bias'] = np.zeros(1, np.float32)  # broadcasts: it would still predict
  _save(tmp_path / 'model', params, bert, tok)
  with pytest.raises(UserError, match=r"params.npz: \['head'\]\['bias'\] has shape \(1,\), "
                     r'the model in meta.json needs \(\d+,\)'):
    finetune.load(tmp_path / 'model')


def test_non_finite_pretrained_parameters_are_one_line(pretrained_run, monkeypatch):
  from ssljax import checkpoint
  real = checkpoint.restore_params

  def noisy(*args):  # what random bytes in a parameter file can decode to
    params = jax.tree.map(np.array, jax.device_get(real(*args)))
    params['pooler']['kernel'][0, 0] = np.nan
    return params

  monkeypatch.setattr(checkpoint, 'restore_params', noisy)
  with pytest.raises(UserError, match=r"checkpoints/6: parameter \['pooler'\]\['kernel'\] "
                     r'holds 1 non-finite values'):
    loading.load(pretrained_run)


def test_export_and_import_refuse_a_run(pretrained_run, tmp_path, capsys):
  shutil.copytree(pretrained_run, tmp_path / 'run')
  before = sorted(p.name for p in (tmp_path / 'run').iterdir())
  assert cli.main(['export-hf', str(tmp_path / 'run'), '--out', str(tmp_path / 'run')]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'holds a pretraining run' in err
  assert sorted(p.name for p in (tmp_path / 'run').iterdir()) == before
  with pytest.raises(UserError, match='already holds a run'):
    hf.import_folder(tmp_path / 'hf', tmp_path / 'run')
  # An export made before this check: the run, not the export's config.json, is what loads.
  (tmp_path / 'run' / 'config.json').write_text('{"model_type": "bert"}')
  assert loading.load(tmp_path / 'run').step == 6


def test_folders_of_other_things_do_not_mix(pretrained_run, tmp_path, capsys, monkeypatch):
  """import-hf into an export-hf folder, export-hf into an unrelated folder: one line each,
  nothing written; export-hf into an earlier export replaces it."""
  monkeypatch.setattr(hf, '_export_tokenizer',  # the tokenizer's conversion is tested elsewhere
                      lambda tokenizer, cfg, out, *_: tokenizer.save(out))
  assert cli.main(['export-hf', str(pretrained_run), '--out', str(tmp_path / 'hf')]) == 0
  exported = {p.name: p.read_bytes() for p in (tmp_path / 'hf').iterdir()}
  capsys.readouterr()
  assert cli.main(['import-hf', str(tmp_path / 'hf'), '--out', str(tmp_path / 'hf')]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'holds other files (config.json, model.safetensors' in err
  assert 'import-hf writes a new workdir' in err
  assert {p.name: p.read_bytes() for p in (tmp_path / 'hf').iterdir()} == exported
  (tmp_path / 'mine').mkdir()
  (tmp_path / 'mine' / 'notes.txt').write_text('my notes')
  assert cli.main(['export-hf', str(pretrained_run), '--out', str(tmp_path / 'mine')]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'holds other files (notes.txt); export-hf writes' in err
  assert [p.name for p in (tmp_path / 'mine').iterdir()] == ['notes.txt']
  assert cli.main(['export-hf', str(pretrained_run / 'checkpoints' / '3'), '--out',
                   str(tmp_path / 'hf')]) == 0  # an earlier export is replaced
  assert (tmp_path / 'hf' / 'model.safetensors').read_bytes() != exported['model.safetensors']


def test_a_failed_export_keeps_the_previous_one(pretrained_run, tmp_path, monkeypatch):
  monkeypatch.setattr(hf, '_export_tokenizer',  # the tokenizer's conversion is tested elsewhere
                      lambda tokenizer, cfg, out, *_: tokenizer.save(out))
  hf.export(loading.load(pretrained_run), tmp_path / 'hf')
  before = {p.name: p.read_bytes() for p in (tmp_path / 'hf').iterdir()}

  def full(tokenizer, cfg, out, *_):  # the weights and config are written, then the disk is full
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(hf, '_export_tokenizer', full)
  with pytest.raises(OSError):
    hf.export(loading.load(pretrained_run / 'checkpoints' / '3'), tmp_path / 'hf')
  assert {p.name: p.read_bytes() for p in (tmp_path / 'hf').iterdir()} == before
  assert [p.name for p in tmp_path.iterdir()] == ['hf']


def test_write_whole_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
  out = tmp_path / 'results.json'
  paths.write_whole(paths.path(out), json.dumps({'good': 1}))
  _full_disk(monkeypatch)
  with pytest.raises(OSError):
    paths.save_npz(paths.path(tmp_path / 'x.npz'), x=np.ones(3))
  assert not (tmp_path / 'x.npz').exists() and json.loads(out.read_text()) == {'good': 1}


def test_sharded_non_finite_parameters_are_named_where_they_lie():
  """The resume check counts under jit, so parameters sharded over devices (and hosts)
  are checked without gathering them; the line names the tensor."""
  from ssljax import checkpoint  # pylint: disable=g-import-not-at-top
  mesh = jax.make_mesh((len(jax.devices()),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))
  kernel = np.ones((len(jax.devices()) * 2, 3), np.float32)
  kernel[-1, 0] = np.inf
  params = {'dense': {'kernel': jax.device_put(
      kernel, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))),
      'bias': np.zeros(3, np.float32)}, 'step': np.int32(3)}
  with pytest.raises(UserError, match=r"run/checkpoints/3: parameter \['dense'\]\['kernel'\] "
                     r'holds 1 non-finite values'):
    checkpoint.check_finite(params, 'run/checkpoints/3')
  params['dense']['kernel'] = np.ones_like(kernel)
  checkpoint.check_finite(params, 'run/checkpoints/3')
