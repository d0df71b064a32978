"""Decoded image sources for the series path: image folders and tensorflow-datasets sets.

  DIR                    class folders of images, DIR/CLASS/*.png|jpg|jpeg (torchvision's
                         ImageFolder layout), labelled by class name in sorted order; or
                         images directly in DIR, unlabelled. Local, gs:// or s3://.
  tfds:NAME[:split]      a tensorflow-datasets image set (its `image` feature, and `label`
                         by class name where it has names), prepared in array_record format
                         (tfds build NAME --file_format=array_record) and read without
                         TensorFlow; the train split unless named.

Both give N x H x W x C pixel values as stored (0-255 for 8-bit images, unscaled, as
digits and .npz images are: each image is instance-normalised later). Both materialise
every image they read in memory: `data.max_images` caps that with a fixed sample (seed 0),
drawn before anything is decoded, so a large set costs only what is sampled.
`data.image_size` resizes every image to a square of that side (bilinear, aspect not
kept); without it all images must share one size. A folder's channels: 1 when every image
is grayscale, else 3, with grayscale images replicated into RGB (lossless, where
converting colour to the majority mode would not be); alpha is dropped.
"""

import dataclasses
import io

import numpy as np
from PIL import Image

from ssljax import paths
from ssljax.data import corpus
from ssljax.errors import UserError

SUFFIXES = ('.png', '.jpg', '.jpeg')
GRAY_MODES = ('L', 'I', 'I;16', 'F')  # read as one channel as stored; '1' and 'LA' via L


@dataclasses.dataclass(frozen=True)
class Reading:
  """The data keys that shape decoded images: `size` (data.image_size), `limit`
  (data.max_images), `tfds_data_dir` (data.tfds_data_dir)."""
  size: int = 0
  limit: int = 0
  tfds_data_dir: str = ''

  @classmethod
  def of(cls, data) -> 'Reading':
    """From a config's data section; a run saved before these keys existed reads 0 / ''."""
    return cls(data.get('image_size', 0), data.get('max_images', 0),
               data.get('tfds_data_dir', ''))


AS_STORED = Reading()  # every image, unresized


def sample(count: int, limit: int) -> np.ndarray:
  """Indices of the items read out of `count`: all, or a fixed sorted sample of `limit`."""
  if not limit or limit >= count:
    return np.arange(count)
  return np.sort(np.random.default_rng(0).choice(count, limit, replace=False))


def resized(pixels_HxWxC: np.ndarray, size: int) -> np.ndarray:
  """`size` x `size` pixels, each channel resized bilinearly as floats (any mode, any
  channel count)."""
  channels = [Image.fromarray(c).resize((size, size), Image.Resampling.BILINEAR)
              for c in np.moveaxis(pixels_HxWxC.astype(np.float32), -1, 0)]
  return np.stack([np.asarray(c) for c in channels], -1)


def stacked(pixels: list[np.ndarray], names: list[str], size: int, origin: str) -> np.ndarray:
  """N x H x W x C of images that share one size: resized to `size` where it is set,
  else refused, naming two files of different sizes."""
  if size:
    pixels = [resized(p, size) for p in pixels]
  shapes = [p.shape[:2] for p in pixels]
  other = next((i for i, s in enumerate(shapes) if s != shapes[0]), None)
  if other is not None:
    (h0, w0), (h1, w1) = shapes[0], shapes[other]
    raise UserError(f'{origin}: images of different sizes ({h0} x {w0} in {names[0]}, '
                    f'{h1} x {w1} in {names[other]}); set data.image_size=S to resize all to '
                    'S x S')
  return np.stack(pixels)


# ------------------------------------------------------------------------------ folders


def _decoded(file) -> np.ndarray:
  """H x W x 1 (grayscale) or H x W x 3 (any other mode, as RGB) float32 pixels."""
  try:
    image: Image.Image = Image.open(io.BytesIO(file.read_bytes()))
    image.load()
  except (OSError, ValueError, SyntaxError) as e:
    raise UserError(f'{file} is not a readable image ({e}); remove or replace it') from None
  if image.mode in ('1', 'LA'):
    image = image.convert('L')
  if image.mode in GRAY_MODES:
    return np.asarray(image, np.float32)[..., None]
  return np.asarray(image.convert('RGB'), np.float32)


def _images_in(folder) -> list:
  return sorted(f for f in folder.iterdir() if f.suffix.lower() in SUFFIXES and f.is_file())


def _labelled_files(folder) -> tuple[list, np.ndarray | None]:
  """(image files, their class names or None): class folders, or images in `folder`."""
  classes = sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: d.name)
  loose = _images_in(folder)
  if classes and loose:
    raise UserError(f'{folder} holds images ({loose[0].name}) beside class folders '
                    f'({classes[0].name}); put every image in a class folder, or none')
  if not classes:
    return loose, None
  per_class = [(d.name, _images_in(d)) for d in classes]
  files = [f for _, found in per_class for f in found]
  return files, np.array([name for name, found in per_class for _ in found])


def folder(directory, reading: Reading) -> tuple[np.ndarray, np.ndarray | None, str]:
  """N x H x W x C images, their class names (None without class folders), the folder."""
  files, labels = _labelled_files(directory)
  if not files:
    what = (f'holds no {"/".join(SUFFIXES)} images' if any(directory.iterdir())
            else 'is an empty folder')
    raise UserError(f'data.path={directory} {what}: put images in it, directly or in class '
                    'folders (DIR/CLASS/*.png)')
  rows = sample(len(files), reading.limit)
  files = [files[i] for i in rows]
  pixels = [_decoded(f) for f in files]
  if len({p.shape[2] for p in pixels}) > 1:  # grayscale and colour: all RGB
    pixels = [np.repeat(p, 3, 2) if p.shape[2] == 1 else p for p in pixels]
  names = [f'{f.parent.name}/{f.name}' for f in files]
  return (stacked(pixels, names, reading.size, str(directory)),
          labels[rows] if labels is not None else None, str(directory))


def train_and_test(directory) -> tuple[str, str]:
  """(train, test) class folders beside each other, DIR/train and DIR/test, given either."""
  directory = paths.path(directory)
  if directory.name not in ('train', 'test'):
    raise UserError(f'{directory} is not a train or test folder of a split (DIR/train/CLASS, '
                    'DIR/test/CLASS); pass --train and --test folders or files with labels')
  train, test = directory.parent / 'train', directory.parent / 'test'
  for split in (train, test):
    if not split.is_dir():
      raise UserError(f'{split} does not exist: the probe reads the split beside '
                      f'{directory} (DIR/train/CLASS, DIR/test/CLASS); add it, or pass '
                      '--train and --test')
  return str(train), str(test)


# ------------------------------------------------------------------------------- tfds


def tfds_split(spec: str) -> tuple[str, str]:
  """(name, split) of tfds:NAME[:split], the train split unless named; a split keeps its own
  colons (tfds:mnist:train[:10%])."""
  parts = spec.split(':', 2)
  if len(parts) < 2 or not parts[1]:
    raise UserError(f'data.path={spec}: write tfds:NAME or tfds:NAME:SPLIT (tfds:mnist:test)')
  return parts[1], parts[2] if len(parts) == 3 else 'train'


def tfds(spec: str, reading: Reading) -> tuple[np.ndarray, np.ndarray | None, str]:
  """N x H x W x C images of a tfds set, its labels (class names where it has them) and
  'NAME (split)'."""
  name, split = tfds_split(spec)
  source = corpus.tfds_source(name, split, reading.tfds_data_dir or None,
                              'and set data.tfds_data_dir=DIR')
  features = source.dataset_info.features
  if 'image' not in features:
    raise UserError(f'data.path={spec}: {name} has no `image` feature (features: '
                    f'{", ".join(features)}); ssljax reads image sets')
  rows = sample(len(source), reading.limit)
  if not len(rows):
    raise UserError(f'data.path={spec}: the {split} split of {name} is empty')
  records = [source[int(i)] for i in rows]
  pixels = [np.asarray(r['image'], np.float32) for r in records]
  names = [f'example {i}' for i in rows]
  origin = f'{name} ({split})'
  images = stacked(pixels, names, reading.size, origin)
  if 'label' not in features:
    return images, None, origin
  labels = np.array([r['label'] for r in records])
  class_names = getattr(features['label'], 'names', None)
  return images, np.array(class_names)[labels] if class_names else labels, origin
