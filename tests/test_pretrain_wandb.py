"""Weights & Biases, optional: with metrics.wandb_project set, every metrics row also goes
to a W&B run (checked offline, on disk); unset, wandb is never imported and nothing else
changes; asked for without wandb installed, one line names the extra."""

import glob
import json
import sys

import pytest

from ssljax.errors import MissingExtra
from ssljax.pretrain import loop as train, metrics, wandb_log

from conftest import pretrained_run_config, tiny_config

pytest.importorskip('wandb')


def _wandb_records(folder) -> tuple[list[dict], set[str]]:
  """(history rows, config keys) of the one offline run under `folder`/wandb, read from its
  .wandb file: W&B's record log (a 7-byte header, then 32 KiB blocks of records, each a
  CRC, a length, a type and a protobuf `Record`)."""
  from wandb.proto import wandb_internal_pb2
  [file] = glob.glob(str(folder / 'wandb' / 'offline-run-*' / '*.wandb'))
  data = open(file, 'rb').read()
  assert data[:4] == b':W&B'
  pos, parts, history, config = 7, b'', [], set()
  while pos + 7 <= len(data):
    if 32768 - pos % 32768 < 7:  # a block's tail too short for a record header is padding
      pos += 32768 - pos % 32768
      continue
    length, kind = int.from_bytes(data[pos + 4:pos + 6], 'little'), data[pos + 6]
    if kind == 0:
      break
    parts += data[pos + 7:pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):  # a whole record, or the last part of one
      record = wandb_internal_pb2.Record()
      record.ParseFromString(parts)
      parts = b''
      if record.WhichOneof('record_type') == 'history':
        history.append({i.key or '/'.join(i.nested_key): json.loads(i.value_json)
                        for i in record.history.item})
      elif record.WhichOneof('record_type') in ('run', 'config'):
        items = (record.run.config if record.WhichOneof('record_type') == 'run'
                 else record.config).update
        config |= {i.key or '/'.join(i.nested_key) for i in items}
  return history, config


def _rows(workdir):
  return (workdir / 'metrics.jsonl').read_text()


def _write(writer):
  for step in (1, 2, 3):
    writer.write(step, {'loss': 4.0 - step, 'mlm_accuracy': step / 10})
  writer.close()


def test_offline_rows_and_config_reach_the_wandb_run(corpus_file, tmp_path, monkeypatch):
  monkeypatch.setenv('WANDB_SILENT', 'true')
  config = tiny_config(corpus_file, **{'metrics.wandb_project': 'ssljax-test',
                                       'metrics.wandb_mode': 'offline'})
  _write(metrics.Writer(tmp_path / 'with', tracker=wandb_log.start(config, tmp_path / 'with')))
  _write(metrics.Writer(tmp_path / 'without'))
  assert _rows(tmp_path / 'with') == _rows(tmp_path / 'without')
  history, config_keys = _wandb_records(tmp_path / 'with')
  assert [(h['_step'], h['loss'], h['mlm_accuracy']) for h in history] == [
      (1, 3.0, 0.1), (2, 2.0, 0.2), (3, 1.0, pytest.approx(0.3))]
  assert {'model', 'train', 'metrics'} <= config_keys


def test_unset_imports_nothing(corpus_file, tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'wandb', None)  # as if not installed
  config = tiny_config(corpus_file)
  assert config.metrics.wandb_project == '' and wandb_log.start(config, tmp_path) is None
  config = tiny_config(corpus_file, **{'metrics.wandb_project': 'p'})
  with pytest.raises(MissingExtra, match="metrics.wandb_project=p needs wandb, from the "
                     "'wandb' extra"):
    wandb_log.start(config, tmp_path)


@pytest.mark.slow
def test_pretraining_logs_to_wandb_offline(corpus_file, tokenizer_file, tmp_path, monkeypatch):
  monkeypatch.setenv('WANDB_SILENT', 'true')
  config = pretrained_run_config(corpus_file, tokenizer_file, **{
      'mesh.data': 1, 'train.steps': 2, 'metrics.wandb_project': 'ssljax-test',
      'metrics.wandb_mode': 'offline'})
  train.pretrain(config, tmp_path)
  history, _ = _wandb_records(tmp_path)
  by_step: dict[int, dict] = {}  # W&B keeps one row per step: a step's rows merged
  for line in _rows(tmp_path).splitlines():
    row = json.loads(line)
    by_step.setdefault(row.pop('step'), {}).update(row)
  assert [h['_step'] for h in history] == list(by_step) == [1, 2]
  for h in history:
    assert {k: h[k] for k in by_step[h['_step']]} == pytest.approx(by_step[h['_step']])
