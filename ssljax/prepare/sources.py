"""A corpus cut into splits that workers read independently, each yielding documents.

A split is a byte range of a text or JSONL file, a row group of a Parquet file, an index
range of a tfds dataset, or the whole embedded corpus. Splits are planned from file sizes
and metadata alone, so planning a terabyte costs one listing. A document belongs to the
split its first line starts in: a reader starts at the first document that begins inside
its range and reads its last document to the end, past the range if need be, so that
every document is read exactly once whatever the cut.

Documents are what `data/corpus.py` reads in memory: blank lines separate the documents of
a .txt file (each stripped), a JSONL line's `data.text_field`, a Parquet column of that
name, a tfds feature of that name.
"""

import dataclasses
import hashlib
import json
import os

import fsspec

from ssljax import paths
from ssljax.data import corpus
from ssljax.errors import UserError

SUFFIXES = {'text': '.txt', 'jsonl': '.jsonl', 'parquet': '.parquet'}
_BACK = 1 << 16  # bytes read per step when looking back for the previous line


@dataclasses.dataclass(frozen=True)
class Split:
  index: int
  kind: str  # text | jsonl | parquet | tfds | embedded
  file: str = ''  # a URL or local path; for tfds the dataset name
  start: int = 0  # bytes (text, jsonl), row group (parquet), example (tfds)
  end: int = 0


@dataclasses.dataclass(frozen=True)
class Plan:
  splits: tuple[Split, ...]
  fingerprint: str  # the source's files with their sizes and versions, and the data keys
  num_bytes: int  # of the source (an estimate of its characters, for the tokenizer sample)


def plan(data_cfg, split_bytes: int) -> Plan:
  """The splits of the corpus `data_cfg` names, at most `split_bytes` of text each."""
  source = data_cfg.source
  keys = {k: data_cfg[k] for k in ('source', 'path', 'text_field', 'tfds_name',
                                   'tfds_split', 'tfds_data_dir')}
  if source == 'embedded':
    size = sum(len(d) for d in corpus.embedded_documents())
    return Plan((Split(0, 'embedded'),), hash_of(keys, size), size)
  if source == 'tfds':
    return _plan_tfds(data_cfg, keys, split_bytes)
  if source not in SUFFIXES:
    raise UserError(f'data.source={source!r} cannot be prepared; use one of embedded, '
                    f'{", ".join(SUFFIXES)}, tfds')
  files = source_files(data_cfg, SUFFIXES[source])
  splits: list[Split] = []
  versions: list[tuple] = []
  total = 0
  for url, info in files:
    size = int(info.get('size') or 0)
    versions.append((url, size, _version(info)))
    total += size
    if source == 'parquet':
      groups = _parquet_groups(url)
      splits += [Split(len(splits) + i, source, url, g, g + 1) for i, g in enumerate(groups)]
    else:
      cuts = list(range(0, size, split_bytes)) or [0]
      splits += [Split(len(splits) + i, source, url, a, min(a + split_bytes, size))
                 for i, a in enumerate(cuts)]
  return Plan(tuple(splits), hash_of(keys, versions), total)


def hash_of(*parts) -> str:
  """A sha256 of JSON-able parts."""
  return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _version(info: dict) -> str:
  """What changes when a file is rewritten: mtime locally, generation or ETag on buckets."""
  for key in ('generation', 'ETag', 'etag', 'mtime', 'updated', 'LastModified'):
    if info.get(key) is not None:
      return str(info[key])
  return ''


def source_files(data_cfg, suffix: str) -> list[tuple[str, dict]]:
  """(URL, fsspec info) of data.path: one file, a folder (its `suffix` files, recursively)
  or a glob such as gs://bucket/c4/*.jsonl."""
  if not data_cfg.path:
    raise UserError(f'data.source={data_cfg.source} needs data.path: a {suffix} file, a '
                    'folder of them or a glob (--set data.path=...)')
  text = os.fspath(paths.path(data_cfg.path))
  fs, root = fsspec.core.url_to_fs(text)
  prefix = f'{paths.scheme(text)}://' if paths.is_remote(text) else ''
  if any(c in root for c in '*?['):
    found = fs.glob(root, detail=True)
  elif fs.isfile(root):
    found = {root: fs.info(root)}
  elif fs.isdir(root):
    found = fs.glob(f'{root.rstrip("/")}/**/*{suffix}', detail=True)
  else:
    raise UserError(f'data.path {text} does not exist; give a {suffix} file, a folder of '
                    'them or a glob')
  files = sorted((prefix + f, info) for f, info in found.items() if info['type'] == 'file')
  if not files:
    raise UserError(f'data.path {text} matches no {suffix} file; check the path')
  return files


def _parquet_groups(url: str) -> list[int]:
  import pyarrow.parquet as pq  # the prepare extra
  with fsspec.open(url, 'rb') as f:
    try:
      return list(range(pq.ParquetFile(f).metadata.num_row_groups))
    except Exception as e:  # pyarrow's ArrowInvalid and kin: not a readable Parquet file
      raise UserError(f'{url} is not a readable Parquet file ({e})') from None


def _tfds_source(data_cfg):
  import tensorflow_datasets as tfds
  if not data_cfg.tfds_name:
    raise UserError('data.source=tfds needs data.tfds_name (--set data.tfds_name=...)')
  try:
    return tfds.data_source(data_cfg.tfds_name, split=data_cfg.tfds_split,
                            data_dir=data_cfg.tfds_data_dir or None, download=False)
  except Exception as e:  # tfds raises many kinds; each means "cannot read it"
    reason = str(e).strip().split('\n')[0]
    raise UserError(f'cannot read tfds dataset {data_cfg.tfds_name}[{data_cfg.tfds_split}]: '
                    f'{reason} Prepare it in array_record format first (tfds build '
                    f'{data_cfg.tfds_name} --file_format=array_record) and set '
                    'data.tfds_data_dir') from None


def _plan_tfds(data_cfg, keys, split_bytes):
  count = len(_tfds_source(data_cfg))
  step = max(1, split_bytes // 4096)  # a guess at bytes per example, for the split size
  splits = tuple(Split(i, 'tfds', data_cfg.tfds_name, a, min(a + step, count))
                 for i, a in enumerate(range(0, count, step)))
  return Plan(splits, hash_of(keys, count), count * 4096)


def documents(split: Split, data_cfg):
  """The non-blank documents of `split`, in order."""
  readers = {'text': _text, 'jsonl': _jsonl, 'parquet': _parquet, 'tfds': _tfds,
             'embedded': lambda s, c: corpus.embedded_documents()}
  for doc in readers[split.kind](split, data_cfg):
    if doc.strip():
      yield doc


def _lines(split: Split):
  """(byte position, line) of the lines that start in [start, end), then on to EOF (the
  caller stops); the first one is preceded by a flag: was the line before it blank?"""
  fs, name = fsspec.core.url_to_fs(split.file)
  with fs.open(name, 'rb', block_size=1 << 22) as f:
    position = split.start
    before_blank = True
    if position > 0:
      f.seek(position - 1)
      if f.read(1) != b'\n':
        f.readline()
      position = f.tell()
      before_blank = _previous_line_blank(f, position, split.file)
      f.seek(position)
    yield before_blank
    while line := f.readline():
      yield position, line
      position += len(line)


def _previous_line_blank(f, position: int, name: str) -> bool:
  """Whether the line that ends just before `position` holds only white space."""
  end = position - 1  # the '\n' that ends it
  start = end
  while start > 0:
    step = min(_BACK, start)
    f.seek(start - step)
    block = f.read(step)
    cut = block.rfind(b'\n')
    if cut >= 0:
      start = start - step + cut + 1
      break
    start -= step
  f.seek(start)
  return not _decode(f.read(end - start), name, start).strip()


def _decode(line: bytes, name: str, at: int) -> str:
  try:
    return line.decode('utf-8')
  except UnicodeDecodeError as e:
    raise UserError(f'{name} is not valid UTF-8 (byte {at + e.start}); convert it, e.g. '
                    'iconv -f latin1 -t utf-8') from None


def _text(split: Split, data_cfg):
  """Blank-line separated documents whose first line starts in the split."""
  del data_cfg
  lines = _lines(split)
  skipping = not next(lines)  # the split starts inside a document: the one before owns it
  current: list[str] = []
  for at, raw in lines:
    line = _decode(raw, split.file, at)
    if at == 0:
      line = line.removeprefix('\ufeff')
    if not line.strip():
      skipping = False
      if current:
        yield '\n'.join(current).strip()
        current = []
      continue
    if skipping:
      continue
    if not current and at >= split.end:
      return
    current.append(line.rstrip('\n').removesuffix('\r'))
  if current:
    yield '\n'.join(current).strip()


def _jsonl(split: Split, data_cfg):
  """The `data.text_field` of each JSON line that starts in the split."""
  lines = _lines(split)
  next(lines)
  for at, raw in lines:
    if at >= split.end:
      return
    line = _decode(raw, split.file, at)
    if at == 0:
      line = line.removeprefix('\ufeff')
    if line.strip():
      yield corpus.json_text(line, data_cfg.text_field, f'{split.file} (byte {at})')


def _parquet(split: Split, data_cfg):
  return corpus.parquet_texts(split.file, data_cfg.text_field, split.start)


def _tfds(split: Split, data_cfg):
  source = _tfds_source(data_cfg)
  field = data_cfg.text_field
  for i, record in enumerate(source.__getitems__(range(split.start, split.end)), split.start):
    if field not in record:
      raise UserError(f'tfds dataset {split.file} has no feature {field!r} (features: '
                      f'{", ".join(record)}); set data.text_field')
    yield corpus.tfds_text(record[field], split.file, i)

