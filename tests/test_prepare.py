"""`ssljax prepare` + `data.source=prepared` against the in-memory path they replace at scale.

Splits read every document exactly once however a file is cut; a prepared folder gives the
examples the in-memory path gives (CLM rows do not cross shards: the one stated
difference); a run on it resumes exactly; bad folders and sources are one line.
"""

import contextlib
import json
import logging
import os
import pathlib

import numpy as np
import pytest

from ssljax import cli, config as config_lib, paths, tokenizers
from ssljax.data import corpus, examples, prepared
from ssljax.errors import UserError
from ssljax.prepare import pipeline, sources
from ssljax.pretrain import loop as train, metrics

from conftest import tiny_config

pytest.importorskip('apache_beam')

TRICKY = ('\ufeffFirst doc line one\nline two  \n\n\n  \t\nSecond doc\r\n  indented\n'
          '\n   \nThird\n\nFourth ünïcode line\nmore\n\n\n')


def _doc(store, d: int) -> np.ndarray:
  """Global document `d` of a store."""
  start, length = store.docs([d])
  return store.read(start, length, int(length[0]))[0]


def _prepare(config, out, **kw):
  return pipeline.prepare(config, out, workers=1, progress=False, **kw)


def _config(corpus_file, tokenizer_file=None, **extra):
  extra = {'data.eval_fraction': 0.0} | extra
  if tokenizer_file:
    extra['tokenizer.path'] = tokenizer_file
  return tiny_config(corpus_file, **extra)


@pytest.fixture(scope='module')
def prepared_dir(corpus_file, tokenizer_file, tmp_path_factory):
  """The test corpus in ~8 shards, with the test tokenizer and nothing held out."""
  out = tmp_path_factory.mktemp('prepared') / 'prep'
  _prepare(_config(corpus_file, tokenizer_file), out, split_bytes=40_000)
  return out


@pytest.mark.parametrize('cut', [1, 2, 3, 5, 7, 11, 16, 40, 1000])
def test_text_splits_read_every_document_once(tmp_path, cut):
  file = tmp_path / 'c.txt'
  file.write_bytes(TRICKY.encode())
  cfg = config_lib.load(None, ['data.source=text', f'data.path={file}'])
  plan = sources.plan(cfg.data, cut)
  read = [d for s in plan.splits for d in sources.documents(s, cfg.data)]
  assert read == corpus.load_documents(cfg.data)
  assert len(read) == 4 and read[1] == 'Second doc\n  indented'


def test_jsonl_and_parquet_splits(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq
  texts = [f'document {i} ' + 'word ' * (i % 5) for i in range(40)]
  (tmp_path / 'a.jsonl').write_text(''.join(json.dumps({'text': t}) + '\n' for t in texts))
  pq.write_table(pa.table({'text': texts}), tmp_path / 'b.parquet', row_group_size=7)
  for source, name in (('jsonl', 'a.jsonl'), ('parquet', 'b.parquet')):
    cfg = config_lib.load(None, [f'data.source={source}', f'data.path={tmp_path / name}'])
    plan = sources.plan(cfg.data, 50)
    assert len(plan.splits) > 5
    assert [d for s in plan.splits for d in sources.documents(s, cfg.data)] == texts
    assert corpus.load_documents(cfg.data) == texts


def test_a_glob_names_many_files(tmp_path):
  for i in range(3):
    (tmp_path / f'part-{i}.txt').write_text(f'doc {i} a\n\ndoc {i} b\n')
  cfg = config_lib.load(None, ['data.source=text', f'data.path={tmp_path}/part-*.txt'])
  plan = sources.plan(cfg.data, 1 << 20)
  assert [d for s in plan.splits for d in sources.documents(s, cfg.data)] == [
      f'doc {i} {x}' for i in range(3) for x in 'ab']


@pytest.mark.parametrize('objective', ['mlm', 'mlm_nsp', 'mlm_sop'])
def test_prepared_examples_equal_the_in_memory_ones(prepared_dir, corpus_file, tokenizer_file,
                                                     objective):
  folder = prepared.open_folder(prepared_dir)
  assert len(folder.manifest['splits']['train']['shards']) >= 5
  tokenizer = tokenizers.load(tokenizer_file)
  docs = corpus.load_documents(_config(corpus_file).data)
  expected = examples.build_examples(tokenizer.encode(docs), tokenizer, objective, 32, 5)
  got = folder.examples('train', objective, 32, 5)
  assert len(got) == len(expected)
  index = np.random.default_rng(0).permutation(len(got))[:300]
  a, b = got.batch(index), expected.batch(index)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_clm_rows_are_packed_within_each_shard(prepared_dir, corpus_file, tokenizer_file):
  """The one difference from the in-memory path: a shard's last row is padded rather than
  continued by the next shard's documents. Each shard's rows equal the in-memory rows of
  that shard's documents alone."""
  folder = prepared.open_folder(prepared_dir)
  tokenizer = tokenizers.load(tokenizer_file)
  store = folder.store('train')
  got = folder.examples('train', 'clm', 32, 0)
  row = 0
  for p in range(store.num_parts):
    docs = [_doc(store, d) for d in range(store.doc_base[p], store.doc_base[p + 1])]
    alone = examples.build_examples(docs, tokenizer, 'clm', 32, 0)
    a = got.batch(np.arange(row, row + len(alone)))
    b = alone.batch(np.arange(len(alone)))
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=f'shard {p} {key}')
    row += len(alone)
  assert row == len(got)


def test_held_out_documents_are_fixed_in_the_manifest(corpus_file, tokenizer_file, tmp_path):
  config = _config(corpus_file, tokenizer_file, **{'data.eval_fraction': 0.2})
  first = _prepare(config, tmp_path / 'a', split_bytes=60_000)
  again = _prepare(config, tmp_path / 'b', split_bytes=60_000)
  assert first['splits'] == again['splits']  # same shards, same checksums
  total = len(corpus.load_documents(config.data))
  train_docs, eval_docs = (first['splits'][s]['documents'] for s in ('train', 'eval'))
  assert train_docs + eval_docs == total and 0.1 * total < eval_docs < 0.3 * total
  folder = prepared.open_folder(tmp_path / 'a')
  seen = {}
  for split in prepared.SPLITS:
    store = folder.store(split)
    for d in range(store.num_docs):
      seen.setdefault(_doc(store, d).tobytes(), set()).add(split)
  assert all(len(s) == 1 for s in seen.values())  # no document on both sides


def test_the_tokenizer_is_trained_on_a_bounded_seeded_sample(corpus_file, tmp_path):
  config = _config(corpus_file, **{'tokenizer.sample_chars': 30_000})
  first = _prepare(config, tmp_path / 'a')
  _prepare(config, tmp_path / 'b')
  sample = first['tokenizer']['sample']
  assert 30_000 <= sample['characters'] < 30_000 + max(map(len, corpus.load_documents(
      config.data)))
  assert sample['documents'] < len(corpus.load_documents(config.data)) / 2
  assert ((tmp_path / 'a' / 'tokenizer.model').read_bytes() ==
          (tmp_path / 'b' / 'tokenizer.model').read_bytes())
  assert not (tmp_path / 'a' / '.work').exists()


def test_pretraining_on_prepared_data_resumes_exactly(prepared_dir, corpus_file, tmp_path):
  config = tiny_config(corpus_file, **{'data.source': 'prepared',
                                       'data.path': str(prepared_dir), 'train.steps': 6})
  train.pretrain(config, tmp_path / 'cut', stop_after=3)
  train.pretrain(config, tmp_path / 'cut')
  train.pretrain(config, tmp_path / 'whole')
  loss = lambda w: [r['loss'] for r in metrics.read(w) if 'loss' in r]
  assert len(loss(tmp_path / 'cut')) == 6
  np.testing.assert_allclose(loss(tmp_path / 'cut'), loss(tmp_path / 'whole'), rtol=1e-6)
  assert ((tmp_path / 'whole' / 'tokenizer.model').read_bytes() ==
          (prepared_dir / 'tokenizer.model').read_bytes())


def test_a_rerun_of_a_finished_prepare_changes_nothing(prepared_dir, corpus_file,
                                                       tokenizer_file, capsys):
  before = (prepared_dir / prepared.MANIFEST).read_bytes()
  _prepare(_config(corpus_file, tokenizer_file), prepared_dir, split_bytes=40_000)
  assert 'already prepared' in capsys.readouterr().out
  assert (prepared_dir / prepared.MANIFEST).read_bytes() == before


def _copy(src, dst):
  import shutil
  shutil.copytree(src, dst)
  return dst


def _break(folder, how: str):
  manifest = json.loads((folder / prepared.MANIFEST).read_text())
  shard = folder / 'shards' / manifest['splits']['train']['shards'][0]['name']
  if how == 'no manifest':
    (folder / prepared.MANIFEST).unlink()
  elif how == 'no shards':
    manifest['splits']['train']['shards'] = []
    (folder / prepared.MANIFEST).write_text(json.dumps(manifest))
  elif how == 'missing shard':
    shard.unlink()
  elif how == 'truncated shard':
    shard.write_bytes(shard.read_bytes()[:-10])
  elif how == 'bad header':
    data = bytearray(shard.read_bytes())
    data[:8] = b'garbage!'
    shard.write_bytes(bytes(data))
  elif how == 'bad tokens':
    data = bytearray(shard.read_bytes())
    data[-200:] = b'\xff' * 200
    shard.write_bytes(bytes(data))
  elif how == 'bad offsets':  # every document's start far past the shard's end
    data = bytearray(shard.read_bytes())
    docs = int(np.frombuffer(bytes(data[16:24]), '<u8')[0])
    data[40:32 + 8 * (docs + 1)] = np.full(docs, 2**40, '<i8').tobytes()
    shard.write_bytes(bytes(data))
  elif how == 'truncated chunk index':
    (index,) = shard.parent.glob(f'{shard.name}.chunks-*')
    index.write_bytes(index.read_bytes()[:-8])
  elif how == 'garbage chunk index':  # the same size, other numbers
    (index,) = shard.parent.glob(f'{shard.name}.chunks-*')
    count = len(index.read_bytes()) // 8
    index.write_bytes(np.random.default_rng(0).integers(0, 2**40, count).astype('<i8').tobytes())
  elif how == 'manifest missing keys':
    del manifest['splits']['train']['shards'][0]['bytes']
    (folder / prepared.MANIFEST).write_text(json.dumps(manifest))
  elif how == 'no manifest, missing shard':
    (folder / prepared.MANIFEST).unlink()
    shard.unlink()
  elif how == 'garbage record':
    (folder / 'shards' / 'split-00000.json').write_bytes(b'\xff garbage')
    shard.unlink()
  return shard


@pytest.mark.parametrize('how, says', [
    ('no manifest', 'rerun the same ssljax prepare command'),
    ('no shards', 'lists no training shard'),
    ('missing shard', 'is missing; rerun the ssljax prepare command that wrote the folder'),
    ('truncated shard', 'bytes where the manifest says'),
    ('bad header', 'is corrupt (its header'),
    ('bad tokens', 'is corrupt (token id'),
    ('bad offsets', 'is corrupt (a document offset outside'),
    ('truncated chunk index', 'is shorter than the'),
    ('garbage chunk index', 'is corrupt (a chunk outside its document)'),
    ('manifest missing keys', "lacks a key or holds a value of another type ('bytes')"),
])
def test_a_broken_folder_is_one_line_naming_the_shard(prepared_dir, corpus_file, tmp_path,
                                                      capsys, how, says):
  folder = _copy(prepared_dir, tmp_path / 'prep')
  shard = _break(folder, how)
  config = tiny_config(corpus_file, **{'data.source': 'prepared', 'data.path': str(folder),
                                       'train.steps': 40})
  with pytest.raises(UserError, match=None) as e:
    train.pretrain(config, tmp_path / 'run')
  assert says in str(e.value) and '\n' not in str(e.value)
  if how not in ('no manifest', 'no shards', 'manifest missing keys'):
    assert str(shard) in str(e.value)


def _files(folder) -> dict:
  return {f.relative_to(folder).as_posix(): f.read_bytes() for f in sorted(folder.rglob('*'))
          if f.is_file() and f.name != pipeline.STATE}


@pytest.mark.parametrize('how', [
    'missing shard', 'truncated shard', 'bad header', 'bad tokens', 'bad offsets',
    'truncated chunk index', 'garbage chunk index', 'no shards', 'manifest missing keys',
    'no manifest, missing shard', 'garbage record',
])
def test_a_rerun_of_prepare_repairs_a_broken_folder(prepared_dir, corpus_file, tokenizer_file,
                                                    tmp_path, how):
  """The command a reader's error names really repairs the folder: prepare checks every
  shard against its record (size, sha256) and every chunk index against its shard, and
  rewrites what is missing or damaged, byte for byte what an unbroken prepare wrote."""
  folder = _copy(prepared_dir, tmp_path / 'prep')
  _break(folder, how)
  _prepare(_config(corpus_file, tokenizer_file), folder, split_bytes=40_000)
  assert _files(folder) == _files(prepared_dir)
  prepared.open_folder(folder)


def test_a_vocab_size_the_prepared_folder_overrides_is_said(prepared_dir, corpus_file,
                                                            tmp_path, caplog):
  config = tiny_config(corpus_file, **{'data.source': 'prepared', 'data.path': str(prepared_dir),
                                       'tokenizer.vocab_size': 500})
  with caplog.at_level(logging.WARNING):
    train.setup(config, tmp_path / 'run').manager.close()
  assert ('tokenizer.vocab_size=500 is not used: ' + f'{prepared_dir} was prepared with a '
          'tokenizer of 400 pieces') in caplog.text


def test_a_tokenizer_other_than_the_prepared_one_is_one_line(prepared_dir, corpus_file,
                                                             tmp_path):
  other = tokenizers.train(['some other words entirely', 'and more of them'] * 20, 60,
                           tmp_path / 'other')
  del other
  config = tiny_config(corpus_file, **{'data.source': 'prepared', 'data.path': str(prepared_dir),
                                       'tokenizer.path': str(tmp_path / 'other.model')})
  with pytest.raises(UserError, match='is not the tokenizer .* was prepared with'):
    train.pretrain(config, tmp_path / 'run')


def test_bad_sources_and_folders_are_one_line(corpus_file, tokenizer_file, tmp_path):
  (tmp_path / 'blank.txt').write_text('\n\n   \n')
  with pytest.raises(UserError, match='no non-blank document'):
    _prepare(_config(tmp_path / 'blank.txt'), tmp_path / 'out1')
  with pytest.raises(UserError, match='does not exist'):
    _prepare(_config(tmp_path / 'nope.txt'), tmp_path / 'out2')
  (tmp_path / 'latin1.txt').write_bytes(b'a caf\xe9 of its own\n' * 50)  # read by a worker
  for workers in (1, 2):  # 2: worker processes, whose exceptions come back as text
    with pytest.raises(UserError, match='latin1.txt is not valid UTF-8') as raised:
      pipeline.prepare(_config(tmp_path / 'latin1.txt', tokenizer_file),
                       tmp_path / f'out0_{workers}', workers=workers, progress=False)
    assert '\n' not in str(raised.value)
    assert not list((tmp_path / f'out0_{workers}' / 'shards').glob('failed-*'))  # read, gone
  (tmp_path / 'out3').mkdir()
  (tmp_path / 'out3' / 'x').write_text('mine')
  with pytest.raises(UserError, match='a folder with other files'):
    _prepare(_config(corpus_file, tokenizer_file), tmp_path / 'out3')
  _prepare(_config(corpus_file, tokenizer_file), tmp_path / 'out4')
  with pytest.raises(UserError, match='prepared from another source or config'):
    _prepare(_config(corpus_file, tokenizer_file, **{'data.eval_fraction': 0.5}),
             tmp_path / 'out4')


def test_the_command_line_and_beam_options(corpus_file, tmp_path, capsys):
  options = pipeline.pipeline_options(
      ['--runner=DataflowRunner', '--project=my-project', '--region=us-central1',
       '--temp_location=gs://bucket/tmp', '--num_workers=64'])
  from apache_beam.options import pipeline_options as po
  assert options.view_as(po.StandardOptions).runner == 'DataflowRunner'
  assert options.view_as(po.GoogleCloudOptions).project == 'my-project'
  assert options.view_as(po.WorkerOptions).num_workers == 64
  local = pipeline.pipeline_options([], workers=3).view_as(po.DirectOptions)
  assert (local.direct_num_workers, local.direct_running_mode) == (3, 'multi_processing')
  args = cli.parser().parse_args(
      ['prepare', '--set', 'data.source=text', '--out', 'x', '--', '--runner=DataflowRunner'])
  assert args.beam_args[-1] == '--runner=DataflowRunner'
  assert cli.main(['prepare', '--set', 'data.source=prepared', '--out',
                        str(tmp_path / 'o')]) == 2
  assert 'already prepared' in capsys.readouterr().err


def test_each_process_reads_its_slice_of_every_global_batch(prepared_dir):
  from ssljax.data import batches as batches_lib
  train_examples = prepared.open_folder(prepared_dir).examples('train', 'mlm_nsp', 32, 0)
  one = batches_lib.Batches(train_examples, 16, 0)
  two = [batches_lib.Batches(train_examples, 16, 0, p, 2) for p in range(2)]
  for _ in range(3):
    whole, halves = next(one), [next(b) for b in two]
    for key in whole:
      np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])


@pytest.mark.slow
def test_kill_9_during_prepare_then_a_rerun_gives_the_clean_folder(corpus_file, tokenizer_file,
                                                                  tmp_path):
  import signal
  import subprocess
  import sys
  import time
  out = tmp_path / 'killed'
  sets = ['data.source=text', f'data.path={corpus_file}', f'tokenizer.path={tokenizer_file}',
          'data.eval_fraction=0.1', 'data.seq_len=32', 'model.max_len=32']
  command = [sys.executable, '-m', 'ssljax.cli', 'prepare', '--out', str(out),
             '--split-mb', '0.01', '--workers', '2']
  command += [a for s in sets for a in ('--set', s)]
  proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  deadline = time.monotonic() + 240
  while time.monotonic() < deadline and len(list(out.glob('shards/split-*.json'))) < 5:
    time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGKILL)  # the command and its Beam workers
  proc.wait()
  done = len(list(out.glob('shards/split-*.json')))
  assert 5 <= done and not (out / prepared.MANIFEST).exists()
  (out / 'shards' / 'train-00003.partial-deadbeef').write_bytes(b'half a shard')
  config = config_lib.load(None, sets)
  resumed = _prepare(config, out, split_bytes=int(0.01 * (1 << 20)))
  clean = _prepare(config, tmp_path / 'clean', split_bytes=int(0.01 * (1 << 20)))
  assert resumed['splits'] == clean['splits']
  assert len(resumed['splits']['train']['shards']) > done
  assert not list(out.glob('shards/*.partial-*'))


def _alive(pid: int) -> bool:
  """Running, not a zombie waiting to be reaped."""
  try:
    return pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


def test_a_full_disk_in_a_beam_worker_is_one_line_and_the_rerun_finishes(
    corpus_file, tokenizer_file, tmp_path, monkeypatch):
  import errno
  write = pipeline.shards.write_atomic
  calls = []

  def full_after_two(file, data):  # two files of the encode workers fit, then none
    if file.parent.name == 'shards':
      calls.append(file)
    if len(calls) > 2:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
    write(file, data)

  monkeypatch.setattr(pipeline.shards, 'write_atomic', full_after_two)
  config = _config(corpus_file, tokenizer_file)
  with pytest.raises(UserError) as raised:
    _prepare(config, tmp_path / 'out', split_bytes=40_000)
  message = str(raised.value)
  assert '\n' not in message and message.startswith(f'{tmp_path / "out" / "shards"}: no space')
  monkeypatch.undo()
  _prepare(config, tmp_path / 'out', split_bytes=40_000)
  prepared.open_folder(tmp_path / 'out')


WORKER = """
import pickle, sys, time
worker = pickle.loads(sys.stdin.buffer.read())  # as a Beam worker process unpickles a DoFn
worker.setup()
print('ready', flush=True)
time.sleep(120)
"""
COMMAND = """
import pickle, subprocess, sys, time
from ssljax.prepare import pipeline
worker = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdin=subprocess.PIPE)
worker.stdin.write(pickle.dumps(pipeline._Encode({}, '', 'sentencepiece', b'', '')))
worker.stdin.close()
print(worker.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason="reads Linux's /proc")
def test_a_beam_worker_ends_with_the_command_that_started_it(tmp_path):
  """kill -9 (or Ctrl-C, which exits at once) of the command: a worker process that holds
  one of prepare's DoFns ends within a second instead of encoding and writing on."""
  import signal
  import subprocess
  import sys
  import time
  command = subprocess.Popen([sys.executable, '-c', COMMAND, WORKER], stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
  try:
    worker = int(command.stdout.readline())
    assert command.stdout.readline().strip() == 'ready'
    os.kill(command.pid, signal.SIGKILL)
    command.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(worker):
      time.sleep(0.1)
    assert not _alive(worker)
  finally:
    with contextlib.suppress(ProcessLookupError):
      os.killpg(command.pid, signal.SIGKILL)


@pytest.mark.slow
def test_two_processes_on_prepared_data_follow_one(prepared_dir, corpus_file, tmp_path):
  import process_helpers as ph
  extra = {'data.source': 'prepared', 'data.path': str(prepared_dir), 'train.steps': 4,
           'mesh.data': -1}
  ph.finish(ph.start(tmp_path / 'multi', corpus_file, extra, processes=2))
  train.pretrain(tiny_config(corpus_file, **extra | {'mesh.data': 1}), tmp_path / 'single')
  loss = lambda w: [r['loss'] for r in metrics.read(w) if 'loss' in r]
  assert len(loss(tmp_path / 'multi')) == 4
  np.testing.assert_allclose(loss(tmp_path / 'multi'), loss(tmp_path / 'single'), rtol=2e-5)


def test_nsp_with_one_held_out_document_names_eval_fraction(tmp_path):
  file = tmp_path / 'c.txt'
  file.write_text('\n\n'.join(f'document {i} has a few words in it' for i in range(40)))
  config = config_lib.load(None, ['data.source=text', f'data.path={file}',
                                  'data.eval_fraction=0.02', 'tokenizer.vocab_size=60'])
  with pytest.raises(UserError, match='data.eval_fraction=0.02 holds out 1 of the 40'):
    train.setup(config, tmp_path / 'run')


@pytest.mark.slow
def test_beams_routine_warnings_go_to_a_log_file(corpus_file, tokenizer_file, tmp_path):
  """Beam's parent and its two worker processes log a dozen warnings each (apitools,
  semi_persistent_directory, unparseable args); the terminal shows ssljax's lines only."""
  import subprocess
  import sys
  sets = ['data.source=text', f'data.path={corpus_file}', f'tokenizer.path={tokenizer_file}',
          'data.seq_len=32', 'model.max_len=32', 'train.progress=false']
  command = [sys.executable, '-m', 'ssljax.cli', 'prepare', '--out', str(tmp_path / 'out'),
             '--workers', '2'] + [a for s in sets for a in ('--set', s)]
  result = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert 'WARNING' not in result.stderr and 'apitools' not in result.stderr, result.stderr
  log = result.stdout.splitlines()[-1].removeprefix("Beam's log: ")
  assert 'WARNING' in pathlib.Path(log).read_text()
  assert result.stdout.splitlines()[-2].startswith(f'prepared {tmp_path / "out"}: ')


def test_a_failure_record_of_a_bundle_that_succeeded_on_retry_is_removed(tmp_path):
  """A runner that retries a failed bundle to success leaves the record the failed try
  wrote; the run that succeeded removes it, so nothing stale is read by a later failure."""
  (tmp_path / 'failed-00000.json').write_text('{"kind": "input", "line": "stale"}')

  class Done(pipeline._Worker):  # pylint: disable=protected-access
    def work(self, split):
      yield split

  pipeline._run(pipeline.pipeline_options((), 1), 'noop', [0, 1], Done(str(tmp_path)),  # pylint: disable=protected-access
                paths.path(tmp_path))
  assert not list(tmp_path.glob('failed-*'))
