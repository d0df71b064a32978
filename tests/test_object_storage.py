"""gs:// and s3:// for every path a user gives, against local emulators, equal to a local run.

GCS: `gcp-storage-emulator` in this process; gcsfs finds it through STORAGE_EMULATOR_HOST and
Orbax's tensorstore GCS driver through TENSORSTORE_GCS_HTTP_URL (with a test token). S3:
moto's server; s3fs reads AWS_ENDPOINT_URL. Orbax 0.12 cannot write arrays to s3:// at
all, so S3 checkpoints go through ssljax's staging (`checkpoint.Staged`), tested here too.
Each back-end: pretrain with a SIGTERM, resume, probe, export, import, encode and a run
starting from the checkpoint (train.init_from), every path on the bucket; losses,
parameters, probe scores and features equal the local run's. The GCS emulator gets the
generation header and preconditions it lacks (`_with_generations`).
"""

import http
import json
import os
import signal
import socket
import sys

import numpy as np
import pytest

from ssljax import checkpoint, cli, paths
from ssljax.errors import UserError
from ssljax.inference import loading
from ssljax.pretrain import loop as train, metrics

from conftest import tiny_config

pytestmark = pytest.mark.slow

BUCKET = 'ssljax-test'
_SST2 = 'sentence\tlabel\n' + ''.join(
    f'{"a warm and funny film" if i % 2 else "a dull , tedious mess"} {i} .\t{i % 2}\n'
    for i in range(24))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _with_generations(server_module):
  """Adds to the GCS emulator what tensorstore's OCDBT driver (under Orbax) relies on and the
  emulator lacks: the x-goog-generation header on downloads and the ifGenerationMatch /
  ifGenerationNotMatch preconditions. Without them a re-read manifest fails at random with
  "Malformed StorageGeneration"."""
  objects = server_module.objects
  original = {'download': objects.download, 'insert': objects.insert}

  def generation(storage, bucket, name) -> int | None:
    try:
      return int(storage.get_file_obj(bucket, name)['generation'])
    except Exception:  # the emulator's NotFound
      return None

  def failed(request, response, current) -> bool:
    match = request.query.get('ifGenerationMatch')
    if match and int(match[0]) != (current or 0):
      response.status = http.HTTPStatus.PRECONDITION_FAILED
      return True
    not_match = request.query.get('ifGenerationNotMatch')
    if not_match and current is not None and int(not_match[0]) == current:
      response.status = http.HTTPStatus.NOT_MODIFIED
      response['x-goog-generation'] = str(current)
      return True
    return False

  def download(request, response, storage, *args, **kwargs):
    current = generation(storage, request.params['bucket_name'], request.params['object_id'])
    if failed(request, response, current):
      return None
    if current is not None:
      response['x-goog-generation'] = str(current)
    return original['download'](request, response, storage, *args, **kwargs)

  def insert(request, response, storage, *args, **kwargs):
    name = (request.query.get('name') or [None])[0]
    current = name and generation(storage, request.params['bucket_name'], name)
    if failed(request, response, current):
      return None
    return original['insert'](request, response, storage, *args, **kwargs)

  # `get` with alt=media calls the module's `download`; the routes hold the functions too.
  objects.download, objects.insert = download, insert
  wrapped = {original['download']: download, original['insert']: insert}
  for _, handlers in server_module.HANDLERS:
    for method, handler in list(handlers.items()):
      handlers[method] = wrapped.get(handler, handler)


def _clear_filesystem_caches():
  import gcsfs
  import s3fs  # pylint: disable=g-import-not-at-top
  gcsfs.GCSFileSystem.clear_instance_cache()
  s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope='session')
def _emulators():
  """Both emulators, started once per test process, and the environment that reaches them.

  Once per process: under xdist a worker may run this module's tests with other modules'
  in between, and restarting the servers would move them to new ports while tensorstore's
  cached GCS client still points at the old ones."""
  pytest.importorskip('gcsfs')
  pytest.importorskip('s3fs')
  gcs_server = pytest.importorskip('gcp_storage_emulator.server')
  moto_server = pytest.importorskip('moto.server')
  _with_generations(gcs_server)
  gcs_port, s3_port = _free_port(), _free_port()
  gcs = gcs_server.create_server('127.0.0.1', gcs_port, in_memory=True, default_bucket=BUCKET)
  gcs.start()
  s3 = moto_server.ThreadedMotoServer(ip_address='127.0.0.1', port=s3_port, verbose=False)
  s3.start()
  try:
    yield {'STORAGE_EMULATOR_HOST': f'http://127.0.0.1:{gcs_port}',
           'TENSORSTORE_GCS_HTTP_URL': f'http://127.0.0.1:{gcs_port}',
           'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',
           'AWS_ENDPOINT_URL': f'http://127.0.0.1:{s3_port}', 'AWS_ACCESS_KEY_ID': 'test',
           'AWS_SECRET_ACCESS_KEY': 'test', 'AWS_REGION': 'us-east-1',
           'AWS_DEFAULT_REGION': 'us-east-1'}
  finally:
    gcs.stop()
    s3.stop()


@pytest.fixture(scope='module')
def buckets(_emulators):  # pylint: disable=redefined-outer-name
  """The two buckets, with the emulators' environment set for this module only. fsspec's
  cached filesystems are dropped on the way in and out, so none outlives its environment."""
  saved = {k: os.environ.get(k) for k in _emulators}
  os.environ.update(_emulators)
  _clear_filesystem_caches()
  import fsspec  # pylint: disable=g-import-not-at-top
  s3 = fsspec.filesystem('s3')
  if not s3.exists(BUCKET):
    s3.mkdir(BUCKET)
  try:
    yield {'gs': f'gs://{BUCKET}', 's3': f's3://{BUCKET}'}
  finally:
    for k, v in saved.items():
      os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    _clear_filesystem_caches()


def _sigterm_once():
  """A hook that sends this process SIGTERM once: the run must save and stop."""
  sent = []

  def fn(info):
    del info
    if not sent:
      sent.append(True)
      signal.raise_signal(signal.SIGTERM)
    return {}
  return train.Hook(every=2, fn=fn)


def _params(path):
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  return jax.tree.leaves(jax.device_get(nnx.to_pure_dict(nnx.state(loading.load(path).model))))


def _write_inputs(root, corpus_file, tokenizer_file):
  """The corpus, tokenizer, task data and texts to encode, under `root` (local or a bucket)."""
  root = paths.path(root)
  root.mkdir(parents=True, exist_ok=True)
  (root / 'corpus.txt').write_text(corpus_file.read_text())
  (root / 'tok.model').write_bytes(tokenizer_file.read_bytes())
  for split in ('train', 'dev'):
    (root / 'data' / 'glue' / 'SST-2').mkdir(parents=True, exist_ok=True)
    (root / 'data' / 'glue' / 'SST-2' / f'{split}.tsv').write_text(_SST2)
  (root / 'texts.txt').write_text('a warm film\na dull mess .\nthe plot\n')
  return root


def _everything(root) -> dict:
  """Pretrain (SIGTERM, resume), probe, export, import and encode with every path in root."""
  root = paths.path(root)
  config = tiny_config(root / 'corpus.txt', **{'tokenizer.path': root / 'tok.model',
                                                'train.profile_steps': 1,
                                                'train.profile_from': 4})  # in the rerun
  workdir = root / 'run'
  train.pretrain(config, workdir, hooks=[_sigterm_once()])
  stopped = checkpoint.manager(workdir, 3).latest_step()
  train.pretrain(config, workdir)
  assert cli.main(['probe', '--checkpoint', str(workdir), '--task', 'sst2', '--data-dir',
                   str(root / 'data'), '--workdir', str(root / 'probe'), '--set',
                   'probe.kind=ridge', '--set', 'max_len=32', '--set', 'progress=False']) == 0
  assert cli.main(['export-hf', str(workdir), '--out', str(root / 'hf')]) == 0
  assert cli.main(['import-hf', str(root / 'hf'), '--out', str(root / 'imported')]) == 0
  assert cli.main(['encode', '--checkpoint', str(workdir), '--input', str(root / 'texts.txt'),
                   '--output', str(root / 'features.npy')]) == 0
  with (root / 'features.npy').open('rb') as f:
    features = np.load(f)
  init_config = tiny_config(root / 'corpus.txt', **{'tokenizer.path': root / 'tok.model',
                                                    'train.init_from': workdir,
                                                    'train.steps': 2})
  train.pretrain(init_config, root / 'init', init=loading.init_from(init_config))
  return {'stopped': stopped,
          'loss': [r['loss'] for r in metrics.read(workdir) if 'loss' in r],
          'params': _params(workdir), 'exported': _params(root / 'hf'),
          'imported': _params(root / 'imported'),
          'probe': json.loads((root / 'probe' / 'results.json').read_text())['metrics'],
          'features': features,
          'init_from': [r['loss'] for r in metrics.read(root / 'init') if 'loss' in r],
          'files': sorted(p.name for p in workdir.iterdir())}


@pytest.fixture(scope='module')
def local_run(corpus_file, tokenizer_file, tmp_path_factory):
  return _everything(_write_inputs(tmp_path_factory.mktemp('local'), corpus_file,
                                   tokenizer_file))


@pytest.mark.parametrize('backend', ['gs', 's3'])
def test_a_run_on_object_storage_equals_the_local_run(backend, buckets, local_run, corpus_file,
                                                       tokenizer_file, tmp_path):
  root = _write_inputs(f'{buckets[backend]}/{tmp_path.name}', corpus_file, tokenizer_file)
  remote = _everything(root)
  assert remote['stopped'] == local_run['stopped'] == 3  # SIGTERM after step 2 -> saved at 3
  assert len(remote['loss']) == 6
  np.testing.assert_allclose(remote['loss'], local_run['loss'], rtol=1e-6)
  for key in ('params', 'exported', 'imported'):
    for a, b in zip(remote[key], local_run[key], strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert remote['probe'] == local_run['probe']
  np.testing.assert_allclose(remote['init_from'], local_run['init_from'], rtol=1e-6)
  np.testing.assert_allclose(remote['features'], local_run['features'], rtol=1e-5, atol=1e-6)
  assert {'checkpoints', 'metrics.jsonl', 'tensorboard', 'tokenizer.model',
          'profile.md'} <= set(remote['files'])
  events = list((root / 'run' / 'tensorboard').iterdir())
  assert events and all(e.read_bytes() for e in events if e.is_file())
  trace, = paths.rglob(root / 'run' / 'tensorboard' / 'plugins' / 'profile', '*.xplane.pb')
  assert trace.read_bytes()  # copied up from the local spool

def test_s3_upload_cut_short_is_removed_and_the_last_uploaded_step_restores(
    buckets, corpus_file, tokenizer_file, tmp_path):
  """A step whose upload was cut (no marker) is removed; the previous step restores."""
  root = _write_inputs(f'{buckets["s3"]}/{tmp_path.name}', corpus_file, tokenizer_file)
  config = tiny_config(root / 'corpus.txt', **{'tokenizer.path': root / 'tok.model'})
  train.pretrain(config, root / 'run')  # saves steps 3 and 6
  step_dir = root / 'run' / 'checkpoints' / '6'
  (step_dir / checkpoint.UPLOADED).unlink()
  assert checkpoint.manager(root / 'run', 3).all_steps() == [3]
  assert not step_dir.exists()
  assert loading.load(root / 'run').step == 3


def test_a_url_without_its_backend_names_the_extra(monkeypatch):
  for module in ('gcsfs', 's3fs'):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
  with pytest.raises(UserError, match=r"gs://bucket/run: a gs:// path needs gcsfs, from the "
                     r"'gcs' extra: pip install -e '.*\[gcs\]'"):
    paths.path('gs://bucket/run')
  with pytest.raises(UserError, match=r"needs s3fs, from the 's3' extra: .*\[s3\]'"):
    paths.path('s3://bucket/run')


def test_s3_checkpoints_with_several_processes_are_refused(monkeypatch):
  """Staged uploads from one process; a pod slice would need Orbax's own S3 writer."""
  pytest.importorskip('s3fs')
  monkeypatch.setattr(checkpoint.jax, 'process_count', lambda: 2)
  with pytest.raises(UserError, match=r's3://bucket/run/checkpoints: s3:// checkpoints are '
                     r'written by one process; on several hosts use a gs:// workdir'):
    checkpoint.manager('s3://bucket/run', 3)


def test_prepare_reads_and_writes_buckets(buckets, corpus_file, tokenizer_file,
                                           tmp_path):
  pytest.importorskip('apache_beam')
  from ssljax.prepare import pipeline
  _prepare = lambda c, out, **kw: pipeline.prepare(c, out, workers=1, progress=False, **kw)
  _config = lambda path, tok: tiny_config(
      path, **{'data.eval_fraction': 0.0, 'tokenizer.path': tok})
  for backend in ('gs', 's3'):
    root = paths.path(f'{buckets[backend]}/prepare-{tmp_path.name}')
    (root / 'corpus' / 'docs.txt').write_bytes(corpus_file.read_bytes())
    config = _config(root / 'corpus', tokenizer_file)
    manifest = _prepare(config, root / 'prep', split_bytes=40_000)
    prepared_dir = tmp_path / f'{backend}-local-prep'
    local = _prepare(_config(corpus_file, tokenizer_file), prepared_dir, split_bytes=40_000)
    assert manifest['splits'] == local['splits']  # the same shards, byte for byte
    run = lambda path, workdir: train.pretrain(tiny_config(
        corpus_file, **{'data.source': 'prepared', 'data.path': str(path),
                        'train.steps': 3}), workdir)
    run(root / 'prep', tmp_path / f'{backend}-run')
    run(prepared_dir, tmp_path / f'{backend}-local')
    loss = lambda w: [r['loss'] for r in metrics.read(w) if 'loss' in r]
    np.testing.assert_allclose(loss(tmp_path / f'{backend}-run'),
                               loss(tmp_path / f'{backend}-local'), rtol=1e-6)


def test_image_folders_and_arrays_on_buckets_load_as_local_ones(buckets, tmp_path):
  """data.path=gs://.../DIR (class folders of PNGs) and a bucket's .npz read as the same
  files on a local disk do."""
  import io

  from PIL import Image

  from ssljax.data import series
  rng = np.random.default_rng(0)
  pixels = {name: [rng.integers(0, 256, (8, 8), np.uint8) for _ in range(2)]
            for name in ('cat', 'dog')}
  local = tmp_path / 'pets'
  for backend in ('gs', 's3'):
    root = paths.path(f'{buckets[backend]}/images-{tmp_path.name}')
    for name, images in pixels.items():
      for i, image in enumerate(images):
        png = io.BytesIO()
        Image.fromarray(image).save(png, format='PNG')
        (root / 'pets' / name / f'{i}.png').write_bytes(png.getvalue())
        (local / name).mkdir(parents=True, exist_ok=True)
        (local / name / f'{i}.png').write_bytes(png.getvalue())
    arrays = io.BytesIO()
    np.savez(arrays, images=np.stack([p for ps in pixels.values() for p in ps]))
    (root / 'pets.npz').write_bytes(arrays.getvalue())
    (tmp_path / 'pets.npz').write_bytes(arrays.getvalue())
    for bucket, disk in ((root / 'pets', local), (root / 'pets.npz', tmp_path / 'pets.npz')):
      remote, mine = series.load(str(bucket), 2), series.load(str(disk), 2)
      np.testing.assert_array_equal(remote.values, mine.values)
      assert (remote.labels is None and mine.labels is None) or (
          remote.labels.tolist() == mine.labels.tolist())
