"""On object storage (the offline emulators of test_object_storage): the workdir lock stops a
second run, and a staged folder's files arrive whole, the marker file last."""

import json

import pytest
from test_object_storage import _emulators, buckets  # noqa: F401  (fixtures)

from ssljax import paths
from ssljax.errors import UserError
from ssljax.pretrain import lock


@pytest.mark.parametrize('backend', ['gs', 's3'])
def test_the_lock_on_a_bucket(buckets, backend):  # noqa: F811
  workdir = paths.path(f'{buckets[backend]}/locked')
  with lock.held(workdir):
    holder = json.loads((workdir / lock.NAME).read_text())
    other = lock.Lock(workdir)
    other.me['pid'] = 1  # another process on this host, alive
    with pytest.raises(UserError, match=f'in use by the run of pid {holder["pid"]}'):
      other.take()
  assert not (workdir / lock.NAME).exists()


@pytest.mark.parametrize('backend', ['gs', 's3'])
def test_a_staged_folder_on_a_bucket(buckets, backend):  # noqa: F811
  folder = paths.path(f'{buckets[backend]}/model')
  with paths.staged(folder) as stage:
    (stage / 'params.npz').write_bytes(b'new')
    (stage / 'meta.json').write_text('{}')
  assert (folder / 'params.npz').read_bytes() == b'new'
  with pytest.raises(OSError), paths.staged(folder) as stage:
    (stage / 'params.npz').write_bytes(b'newer')
    raise OSError(28, 'No space left on device')
  assert (folder / 'params.npz').read_bytes() == b'new'
