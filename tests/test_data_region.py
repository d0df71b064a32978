"""data/region.py: files mapped side by side read back as they are written."""

import gc

import numpy as np
import pytest

from ssljax.data import region
from ssljax.errors import UserError


def _files(tmp_path, sizes):
  rng = np.random.default_rng(0)
  out = []
  for i, size in enumerate(sizes):
    data = rng.integers(0, 256, size, np.uint8).tobytes()
    (tmp_path / f'f{i}').write_bytes(data)
    out.append((str(tmp_path / f'f{i}'), data))
  return out


def test_each_file_reads_back_at_its_start(tmp_path):
  files = _files(tmp_path, [10, 0, 4096, 5000, 1])
  mapped = region.Region([(name, len(data)) for name, data in files])
  view = mapped.view(np.uint8)
  for (name, data), at in zip(files, mapped.start):
    assert view[at:at + len(data)].tobytes() == data, name
  assert np.all(np.diff(mapped.start) >= [len(d) for _, d in files])


def test_an_array_keeps_the_files_mapped(tmp_path):
  ((name, data),) = _files(tmp_path, [3000])
  words = region.Region([(name, 3000)]).view('<u2')
  gc.collect()  # the Region object is gone; its range must stay mapped for `words`
  assert words[:1500].tobytes() == data


def test_a_file_shorter_than_listed_is_one_line(tmp_path):
  ((name, _),) = _files(tmp_path, [100])
  with pytest.raises(UserError, match='is shorter than the 200 bytes'):
    region.Region([(name, 200)])
