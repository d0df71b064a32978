"""Series corpora: arrays of N series x T steps x C channels, cut into fixed windows.

`data.path` names one of:
  ucr:NAME[:train|test]  a UCR/UEA archive set that the aeon wheel ships (GunPoint,
                         ItalyPowerDemand, BasicMotions, ...), read from its .ts files
                         without importing aeon; the train split unless named
  aeon:FILE              any other .ts or .csv file under aeon/datasets/data, e.g.
                         aeon:KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv
  FILE.npy               N x T or N x T x C numbers
  FILE.npz               the same under `values` (labels, if any, under `labels`)
  FILE.csv               one long series: a row per time step, a channel per numeric
                         column (a timestamp column is dropped; `label` or `is_anomaly`
                         columns are read as labels, one per step)
Images, N x H x W (x C), are read as series of square patches (`patch_rows`), each patch
`model.patch_len` steps (its pixel rows) of patch_len x C values, in raster order: a ViT's
patch embedding, fed to the same patch models.
  digits[:train|test]    scikit-learn's 1,797 8 x 8 handwritten digits (10 classes), a fixed
                         70 / 30 split; the train split unless named
  FILE.npz               images under `images` (labels, if any, under `labels`)
  DIR                    class folders of images (DIR/CLASS/*.png|jpg|jpeg), or images
                         directly in DIR: data/images.py
  tfds:NAME[:split]      a tensorflow-datasets image set, e.g. tfds:mnist:test: data/images.py
Bad arrays (ragged, NaN, too short for a window, empty) get one line naming the file.
"""

import dataclasses
import importlib.util
import io

import numpy as np

from ssljax import paths
from ssljax.data import images
from ssljax.errors import UserError, install_line

LABEL_COLUMNS = ('label', 'is_anomaly')
VALUE_DTYPE = np.float32  # every source's values, whatever the file held


DIGITS_TRAIN = 0.7  # the share of scikit-learn's digits in digits:train


@dataclasses.dataclass
class Series:
  """values N x T x C (float32) and, where the source has them, labels (N, or T for a
  CSV's per-step labels); `name` says where they came from, for messages and reports.
  `image`: values are N x H x W x C images until `patch_rows` cuts them."""
  values: np.ndarray
  labels: np.ndarray | None
  name: str
  image: bool = False


def patch_rows(images_NxHxWxC: np.ndarray, patch: int, origin: str) -> np.ndarray:
  """N x (patches * patch) x (patch * C): patch after patch in raster order, each as
  `patch` steps (its pixel rows) of patch * C values, so that the patch models' cut into
  patches of `patch` steps gives exactly the square patches of the image."""
  n, h, w, c = images_NxHxWxC.shape
  if h % patch or w % patch:
    raise UserError(f'{origin}: images of {h} x {w} pixels do not split into patches of '
                    f'{patch} x {patch} (model.patch_len); choose a divisor of both')
  grid = images_NxHxWxC.reshape(n, h // patch, patch, w // patch, patch, c)
  return grid.transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, patch * c)


def _digits(spec: str) -> Series:
  parts = spec.split(':')
  split = parts[1] if len(parts) > 1 else 'train'
  if split not in ('train', 'test') or len(parts) > 2:
    raise UserError(f'data.path={spec}: digits takes the split train or test (digits:test)')
  try:
    from sklearn import datasets
  except ImportError:
    raise UserError('data.path=digits is read from scikit-learn, which is not installed: '
                    f"{install_line('series')}") from None
  digits = datasets.load_digits()
  order = np.random.default_rng(0).permutation(len(digits.target))
  cut = round(len(order) * DIGITS_TRAIN)
  rows = np.sort(order[:cut] if split == 'train' else order[cut:])
  return Series(digits.images[rows, :, :, None], digits.target[rows], f'digits ({split})',
                image=True)


def _aeon_data():
  spec = importlib.util.find_spec('aeon')  # finds the package without running it
  if spec is None or not spec.submodule_search_locations:
    raise UserError('ucr: and aeon: series are read from the aeon wheel, which is not '
                    f"installed: {install_line('series')} (or pip install --no-deps aeon: "
                    'ssljax reads its data files only)')
  return paths.path(spec.submodule_search_locations[0]) / 'datasets' / 'data'


def _parse_ts(text: str, origin: str) -> tuple[np.ndarray, np.ndarray | None]:
  """values N x T x C and labels N of a .ts file (the UCR/UEA archive's text format)."""
  lines = iter(text.splitlines())
  has_labels = False
  for line in lines:
    line = line.strip().lower()
    if line.startswith('@classlabel'):
      has_labels = line.split()[1] == 'true'
    if line == '@data':
      break
  rows, labels = [], []
  for number, line in enumerate(lines, 1):
    if not line.strip() or line.startswith('#'):
      continue
    fields = line.strip().split(':')
    if has_labels:
      labels.append(fields.pop())
    try:
      rows.append([[float(v) for v in f.split(',')] for f in fields])
    except ValueError:
      raise UserError(f'{origin}: data line {number} holds a value that is not a number '
                      '(missing values ? are not supported)') from None
  lengths = {len(ch) for row in rows for ch in row}
  if len(lengths) > 1:
    raise UserError(f'{origin} holds series of unequal lengths ({min(lengths)} to '
                    f'{max(lengths)} steps); ssljax needs equal lengths: use the _eq set if '
                    'the archive has one, or pad them into a .npy')
  values = np.asarray(rows, np.float32).transpose(0, 2, 1)  # N x C x T -> N x T x C
  return values, np.asarray(labels) if has_labels else None


def _ucr(spec: str) -> Series:
  parts = spec.split(':')
  name, split = parts[1], (parts[2] if len(parts) > 2 else 'train').upper()
  if split not in ('TRAIN', 'TEST'):
    raise UserError(f'data.path={spec}: the split must be train or test')
  folder = _aeon_data() / name
  file = folder / f'{name}_{split}.ts'
  if not file.exists():
    shipped = sorted(p.name for p in _aeon_data().iterdir() if (p / f'{p.name}_TRAIN.ts').exists())
    raise UserError(f'data.path={spec}: aeon ships no {name}_{split}.ts; its sets: '
                    f'{", ".join(shipped)}')
  return dataclasses.replace(_ts(file), name=f'{name} ({split.lower()})')


def _ts(file) -> Series:
  values, labels = _parse_ts(file.read_text(), str(file))
  return Series(values, labels, str(file))


def _csv(file) -> Series:
  import pandas as pd
  try:
    frame = pd.read_csv(io.StringIO(file.read_text()))
  except (ValueError, pd.errors.ParserError) as e:
    raise UserError(f'{file} is not a readable CSV: {str(e).splitlines()[0]}') from None
  labels = next((frame.pop(c).to_numpy() for c in LABEL_COLUMNS if c in frame), None)
  numeric = frame.select_dtypes('number').drop(columns=['timestamp'], errors='ignore')
  if numeric.empty:
    raise UserError(f'{file} has no numeric column: a row per time step, a column per channel')
  return Series(numeric.to_numpy(np.float32)[None], labels, str(file))


def _numpy(file) -> Series:
  try:
    loaded = np.load(io.BytesIO(file.read_bytes()), allow_pickle=False)
  except ValueError as e:
    raise UserError(f'{file} is not a numeric array ({str(e).splitlines()[0]}); ragged '
                    'series must be padded to one length first') from None
  if file.suffix != '.npz':
    return Series(np.asarray(loaded), None, str(file))
  labels = loaded['labels'] if 'labels' in loaded else None
  if 'images' in loaded:
    images = np.asarray(loaded['images'])
    if images.ndim not in (3, 4) or images.size == 0:
      raise UserError(f'{file}: `images` has shape {images.shape}; expected N x H x W '
                      '(x C channels), none of them 0')
    return Series(images if images.ndim == 4 else images[..., None], labels, str(file),
                  image=True)
  if 'values' not in loaded:
    raise UserError(f'{file} holds {", ".join(loaded.files)}; put the series under '
                    '`values` (or images under `images`; labels under `labels`)')
  return Series(np.asarray(loaded['values']), labels, str(file))


def load(spec: str, patch_len: int = 0, reading: images.Reading = images.AS_STORED) -> Series:
  """The series `spec` names (see the module docstring), checked: N x T x C finite floats.
  Images are cut into square patches of `patch_len` (`patch_rows`); `reading` sizes and
  caps the decoded ones (folders, tfds:)."""
  if not spec:
    raise UserError('data.source=series needs data.path: ucr:NAME (e.g. ucr:GunPoint), '
                    'digits, tfds:NAME, a folder of images, or a .npy, .npz or .csv file')
  if spec.startswith('ucr:'):
    return _checked(_ucr(spec))
  if spec.split(':')[0] == 'digits':
    return _checked(_as_rows(_digits(spec), patch_len))
  if spec.startswith('tfds:'):
    return _checked(_as_rows(Series(*images.tfds(spec, reading), image=True), patch_len))
  file = _aeon_data() / spec[5:] if spec.startswith('aeon:') else paths.path(spec)
  if not file.exists():
    raise UserError(f'data.path={spec} does not exist')
  if file.is_dir():
    return _checked(_as_rows(Series(*images.folder(file, reading), image=True), patch_len))
  readers = {'.csv': _csv, '.npy': _numpy, '.npz': _numpy, '.ts': _ts}
  if file.suffix not in readers:
    raise UserError(f'data.path={spec}: series are read from .npy, .npz, .csv or .ts files, '
                    'folders of images, or ucr:NAME, tfds:NAME, or digits')
  return _checked(_as_rows(readers[file.suffix](file), patch_len))


def _as_rows(series: Series, patch_len: int) -> Series:
  if not series.image:
    return series
  if series.values.dtype.kind not in 'fiu':
    raise UserError(f'{series.name} holds {series.values.dtype} images, not numbers')
  if not patch_len:
    raise UserError(f'{series.name} holds images: read them with a patch model\'s '
                    'model.patch_len, the side of a square patch')
  rows = patch_rows(series.values.astype(np.float32), patch_len, series.name)
  return dataclasses.replace(series, values=rows, image=False)


def _checked(series: Series) -> Series:
  values = series.values
  if values.dtype.kind not in 'fiu':
    raise UserError(f'{series.name} holds {values.dtype} values, not numbers')
  if values.ndim == 2:
    values = values[..., None]
  if values.ndim != 3 or values.size == 0:
    raise UserError(f'{series.name} has shape {values.shape}: expected N series x T steps '
                    '(x C channels), none of them 0')
  if not np.isfinite(values).all():
    bad = np.argwhere(~np.isfinite(values))[0]
    raise UserError(f'{series.name} holds NaN or infinite values (first at series {bad[0]}, '
                    f'step {bad[1]}); fill or drop them first')
  if series.labels is not None and len(series.labels) not in (values.shape[0], values.shape[1]):
    raise UserError(f'{series.name}: {len(series.labels)} labels for {values.shape[0]} series')
  return dataclasses.replace(series, values=values.astype(VALUE_DTYPE))


def windows(values_NxTxC: np.ndarray, window: int, stride: int, origin: str) -> np.ndarray:
  """All windows of `window` steps, `stride` apart, of every series: M x window x C."""
  steps = values_NxTxC.shape[1]
  if steps < window:
    raise UserError(f'{origin}: series of {steps} steps are shorter than a window of '
                    f'data.seq_len patches x model.patch_len steps = {window}; lower one')
  starts = np.arange(0, steps - window + 1, stride)
  return np.concatenate([values_NxTxC[:, s:s + window] for s in starts])


class SeriesExamples:
  """Windows as examples: `batch(index)` gives {'values': B x window x C}."""

  def __init__(self, windows_MxWxC: np.ndarray):
    self.windows = windows_MxWxC

  @property
  def channels(self) -> int:
    return self.windows.shape[2]

  def __len__(self) -> int:
    return len(self.windows)

  def batch(self, index) -> dict[str, np.ndarray]:
    return {'values': self.windows[index]}


def window_steps(data, patch_len: int) -> int:
  """Steps per window: data.seq_len patches of `patch_len` steps."""
  return data.seq_len * patch_len


def batch_shapes(data, patch_len: int, channels: int, rows: int
                 ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """(shape, dtype) of each field of a batch of `rows` windows, read off the batch of an
  empty corpus: what `ssljax compile` lowers the step on, without reading the data."""
  empty = SeriesExamples(np.empty((0, window_steps(data, patch_len), channels), VALUE_DTYPE))
  return {k: ((rows, *v.shape[1:]), v.dtype) for k, v in empty.batch(np.arange(0)).items()}


def split(values_NxTxC: np.ndarray, fraction: float, window: int, seed: int
          ) -> tuple[np.ndarray, np.ndarray | None]:
  """(train, held-out) series: whole series when there are several, else the last
  `fraction` of the one series' steps (at least a window)."""
  if not fraction:
    return values_NxTxC, None
  n, steps = values_NxTxC.shape[:2]
  if n > 1:
    order = np.random.default_rng(seed).permutation(n)
    held = max(1, round(n * fraction))
    return values_NxTxC[np.sort(order[held:])], values_NxTxC[np.sort(order[:held])]
  cut = held_out_start(steps, fraction, window)
  return values_NxTxC[:, :cut], values_NxTxC[:, cut:]


def held_out_start(steps: int, fraction: float, window: int) -> int:
  """The first held-out step of one series of `steps`: its last `fraction`, at least a
  window."""
  return max(0, min(round(steps * (1 - fraction)), steps - window))


def examples(data, patch_len: int, seed: int
             ) -> tuple[SeriesExamples, SeriesExamples | None]:
  """(training, held-out) windows of the series config section `data` names."""
  series = load(data.path, patch_len, images.Reading.of(data))
  window = window_steps(data, patch_len)
  train, held = split(series.values, data.eval_fraction, window, seed)
  cut = lambda v: SeriesExamples(windows(v, window, patch_len, series.name))
  return cut(train), cut(held) if held is not None else None
