"""Image folders and tensorflow-datasets image sets as series corpora (ssljax.data.images):
what they load to, each one-line error, and a pretraining run on a folder."""

import io
import json
import pathlib
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ssljax import cli
from ssljax.adapt import series as series_eval
from ssljax.data import images, series
from ssljax.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLASSES = ('cat', 'dog', 'eel')


def _png(file: pathlib.Path, pixels: np.ndarray):
  file.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(file)


def _class_folder(folder: pathlib.Path, per_class=2, size=8, seed=0) -> dict:
  """CLASSES' folders of `per_class` random grayscale PNGs; {class: [pixels, ...]}."""
  rng = np.random.default_rng(seed)
  written = {}
  for name in CLASSES:
    written[name] = [rng.integers(0, 256, (size, size), np.uint8) for _ in range(per_class)]
    for i, pixels in enumerate(written[name]):
      _png(folder / name / f'{i}.png', pixels)
  return written


def test_an_image_folder_loads_as_the_equivalent_npz(tmp_path):
  written = _class_folder(tmp_path / 'pets')
  np.savez(tmp_path / 'pets.npz', images=np.stack([p for c in CLASSES for p in written[c]]),
           labels=np.array([c for c in CLASSES for _ in written[c]]))
  folder, npz = series.load(str(tmp_path / 'pets'), 2), series.load(str(tmp_path / 'pets.npz'), 2)
  assert folder.values.shape == (6, 32, 2)
  np.testing.assert_array_equal(folder.values, npz.values)
  assert folder.labels.tolist() == npz.labels.tolist() == ['cat', 'cat', 'dog', 'dog', 'eel', 'eel']


def test_an_unlabelled_folder_and_colour_mixed_with_grayscale(tmp_path):
  gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
  colour = np.stack([gray, gray + 1, gray + 2], -1)
  _png(tmp_path / 'a.png', gray)
  _png(tmp_path / 'b.jpg', colour)  # JPEG is lossy: only its shape is compared
  loaded, labels, origin = images.folder(tmp_path, images.AS_STORED)
  assert loaded.shape == (2, 8, 8, 3) and labels is None and origin == str(tmp_path)
  np.testing.assert_array_equal(loaded[0], np.repeat(gray[..., None], 3, 2))


def test_image_size_resizes_and_max_images_samples(tmp_path):
  _class_folder(tmp_path / 'a', per_class=1, size=8)
  _png(tmp_path / 'a' / 'cat' / 'wide.png', np.zeros((6, 10), np.uint8))
  with pytest.raises(UserError, match=r'images of different sizes \(8 x 8 in cat/0.png, 6 x 10 '
                     r'in cat/wide.png\); set data.image_size=S'):
    series.load(str(tmp_path / 'a'), 2)
  loaded = series.load(str(tmp_path / 'a'), 2, images.Reading(size=4))
  assert loaded.values.shape == (4, 8, 2)  # 4 x 4 pixels: 4 patches of 2 rows
  flat = np.full((6, 10), 7, np.uint8)  # a constant image stays constant when resized
  np.testing.assert_allclose(images.resized(flat[..., None].astype(np.float32), 4), 7)
  sampled = series.load(str(tmp_path / 'a'), 2, images.Reading(size=4, limit=2))
  assert len(sampled.values) == len(sampled.labels) == 2


def test_image_folder_errors_name_the_thing_and_the_fix(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UserError, match='empty is an empty folder: put images in it'):
    series.load(str(tmp_path / 'empty'), 2)
  (tmp_path / 'notes').mkdir()
  (tmp_path / 'notes' / 'README.txt').write_text('no images here')
  with pytest.raises(UserError, match=r'notes holds no .png/.jpg/.jpeg images'):
    series.load(str(tmp_path / 'notes'), 2)
  _class_folder(tmp_path / 'bad', per_class=1)
  (tmp_path / 'bad' / 'dog' / 'broken.png').write_bytes(b'not a png at all')
  with pytest.raises(UserError, match=r'dog/broken.png is not a readable image .*remove or '
                     'replace it'):
    series.load(str(tmp_path / 'bad'), 2)
  _class_folder(tmp_path / 'mixed', per_class=1)
  _png(tmp_path / 'mixed' / 'stray.png', np.zeros((8, 8), np.uint8))
  with pytest.raises(UserError, match='holds images .stray.png. beside class folders'):
    series.load(str(tmp_path / 'mixed'), 2)


def test_a_folder_split_needs_both_train_and_test(tmp_path):
  _class_folder(tmp_path / 'set' / 'train')
  with pytest.raises(UserError, match=r'set/test does not exist: the probe reads the split '
                     r'beside .*pass --train and --test'):
    series_eval.split_names(str(tmp_path / 'set' / 'train'))
  _class_folder(tmp_path / 'set' / 'test')
  assert series_eval.split_names(str(tmp_path / 'set' / 'test')) == (
      str(tmp_path / 'set' / 'train'), str(tmp_path / 'set' / 'test'))
  with pytest.raises(UserError, match='is not a train or test folder of a split'):
    series_eval.split_names(str(tmp_path / 'set' / 'train' / 'cat'))


def _png_bytes(pixels: np.ndarray) -> io.BytesIO:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='png')
  buffer.seek(0)
  return buffer


class SsljaxTestImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Four 8 x 8 grayscale images of two classes; PNG bytes in, so that no TensorFlow encodes
  them and the set builds offline as a user's own would."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(8, 8, 1)),
        'label': tfds.features.ClassLabel(names=['even', 'odd'])}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(4)}

  def _generate_examples(self, count):
    for i in range(count):
      yield i, {'image': _png_bytes(np.full((8, 8), 10 * i, np.uint8)), 'label': i % 2}


def test_tfds_image_sets_read_array_record_files_without_tensorflow(tmp_path):
  SsljaxTestImages(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  reading = images.Reading(tfds_data_dir=str(tmp_path))
  loaded = series.load('tfds:ssljax_test_images', 4, reading)
  assert loaded.values.shape == (4, 4 * 4, 4) and loaded.name == 'ssljax_test_images (train)'
  by_label = dict(zip(loaded.values[:, 0, 0].tolist(), loaded.labels.tolist()))
  assert by_label == {0.0: 'even', 10.0: 'odd', 20.0: 'even', 30.0: 'odd'}
  assert len(series.load('tfds:ssljax_test_images:train[:2]', 4, reading).values) == 2
  assert 'tensorflow' not in sys.modules
  with pytest.raises(UserError, match=r'ssljax_test_images\[test\].*data.tfds_data_dir'):
    series.load('tfds:ssljax_test_images:test', 4, reading)


def test_tfds_image_sets_load_from_tfds_mock_data():
  """tfds' own fake data (offline): the set's images, its class names, a sample of them."""
  with tfds.testing.mock_data(num_examples=5):
    mnist = series.load('tfds:mnist:test', 4)
    sampled = series.load('tfds:mnist', 4, images.Reading(limit=3, size=8))
  assert mnist.values.shape == (5, 49 * 4, 4) and mnist.name == 'mnist (test)'
  assert set(mnist.labels.tolist()) <= {str(d) for d in range(10)}
  assert sampled.values.shape == (3, 4 * 4, 4) and sampled.name == 'mnist (train)'
  assert 'tensorflow' not in sys.modules
  assert series_eval.split_names('tfds:mnist') == ('tfds:mnist:train', 'tfds:mnist:test')


def test_tfds_image_set_errors(tmp_path):
  with pytest.raises(UserError, match='write tfds:NAME or tfds:NAME:SPLIT'):
    series.load('tfds:', 4)
  with pytest.raises(UserError, match=r'cannot read tfds dataset no_such_set_xyz\[train\].*'
                     'data.tfds_data_dir'):
    series.load('tfds:no_such_set_xyz', 4)


def test_pretraining_reads_an_image_folder_from_the_cli(tmp_path):
  """configs/mae_digits.py on a folder of class folders for 2 steps, then the probe on the
  folder's train/test split names its classes."""
  for split, seed in (('train', 0), ('test', 1)):
    _class_folder(tmp_path / 'pets' / split, per_class=4, seed=seed)
  run = str(tmp_path / 'run')
  sets = {'data.path': tmp_path / 'pets' / 'train', 'data.eval_fraction': 0.25,
          'train.steps': 2, 'train.batch_size': 4, 'train.log_every': 1, 'train.eval_every': 2,
          'train.eval_batches': 1, 'train.checkpoint_every': 2, 'train.progress': False,
          'mesh.data': 1}
  assert cli.main(['pretrain', '--config', str(ROOT / 'configs' / 'mae_digits.py'),
                   '--workdir', run, *[a for k, v in sets.items() for a in ('--set', f'{k}={v}')]
                   ]) == 0
  assert cli.main(['series', 'probe', run, '--seeds', '1', '--out', str(tmp_path / 'out')]) == 0
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert results['test'] == str(tmp_path / 'pets' / 'test') and results['classes'] == 3
