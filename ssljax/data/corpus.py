"""Raw text corpora as a list of documents, from the sources `data.source` names.

A document is the unit that pretraining examples never cross (MLM chunks, NSP/SOP
pairs) and that the held-out split is drawn by, so each source says what one is.
"""

import ast
import functools
import inspect
import json
import os
import re
import sysconfig

import fsspec
import numpy as np

from ssljax import paths
from ssljax.errors import UserError, require

# Standard-library folders whose docstrings are tests, tools or already in pydoc_data.
_STDLIB_SKIP = frozenset({
    'test', 'tests', 'idlelib', 'site-packages', 'dist-packages', '__pycache__',
    'encodings', 'pydoc_data', 'lib2to3', 'distutils',
})
_BLANK_LINES = re.compile(r'\n\s*\n')
_TFDS_READ = 1024  # examples fetched per random-access call


def load_documents(data_cfg) -> list[str]:
  """Returns the non-empty documents of the corpus that `data_cfg` describes."""
  loaders = {'embedded': lambda _: list(embedded_documents()), 'text': _text,
             'jsonl': _jsonl, 'parquet': _parquet, 'tfds': _tfds}
  if data_cfg.source == 'prepared':
    raise UserError('data.source=prepared is read by pretraining only; give the raw corpus '
                    '(text, jsonl, parquet, tfds) here')
  if data_cfg.source not in loaders:
    raise UserError(f'data.source={data_cfg.source!r} is not one of '
                    f'{", ".join(loaders)}')
  documents = [d for d in loaders[data_cfg.source](data_cfg) if d.strip()]
  if not documents:
    raise UserError(f'the {data_cfg.source} corpus {_describe(data_cfg)} has no '
                    'non-blank document; point data.* at a corpus with text')
  return documents


def _describe(data_cfg) -> str:
  if data_cfg.source == 'tfds':
    return f'{data_cfg.tfds_name}[{data_cfg.tfds_split}]'
  return data_cfg.path or '(built in)'


@functools.lru_cache(maxsize=1)
def embedded_documents() -> tuple[str, ...]:
  """Python's own documentation: pydoc topics and standard-library docstrings.

  Every Python install has it, so the default run needs no download. About 2 M
  characters; the exact text depends on the Python version.
  """
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top
  documents = [_clean(topics.topics[key]) for key in sorted(topics.topics)]
  root = sysconfig.get_paths()['stdlib']
  for file in _stdlib_files(root):
    documents.append('\n\n'.join(_docstrings(file)))
  return tuple(d for d in documents if d)


def _stdlib_files(root: str) -> list[str]:
  files: list[str] = []
  for folder, subfolders, names in os.walk(root):
    subfolders[:] = sorted(s for s in subfolders if s not in _STDLIB_SKIP)
    files.extend(os.path.join(folder, n) for n in sorted(names) if n.endswith('.py'))
  return files


def _docstrings(file: str) -> list[str]:
  """Module, class and function docstrings of one source file, in source order."""
  try:
    with open(file, 'rb') as f:
      tree = ast.parse(f.read())
  except (SyntaxError, ValueError, OSError):
    return []
  found = []
  nodes: list[ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = [tree]
  while nodes:
    node = nodes.pop()
    text = ast.get_docstring(node, clean=False)
    if text:
      found.append(_clean(text))
    children = [c for c in node.body
                if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    nodes.extend(reversed(children))
  return [t for t in found if t]


def _clean(text: str) -> str:
  """Dedents, drops trailing spaces and collapses runs of blank lines."""
  lines = [line.rstrip() for line in inspect.cleandoc(text).splitlines()]
  return re.sub(r'\n{3,}', '\n\n', '\n'.join(lines)).strip()


def _files(data_cfg, suffix: str) -> list[paths.Path]:
  """The file at data.path, or the files ending in `suffix` below that folder."""
  if not data_cfg.path:
    raise UserError(f'data.source={data_cfg.source} needs data.path: a {suffix} '
                    'file or a folder of them (--set data.path=...)')
  path = paths.path(data_cfg.path)
  if path.is_file():
    return [path]
  if not path.is_dir():
    raise UserError(f'data.path {path} does not exist; give a {suffix} file or a '
                    'folder of them')
  files = paths.rglob(path, f'*{suffix}')
  if not files:
    raise UserError(f'data.path {path} is a folder without {suffix} files; add '
                    f'some or point data.path at one file')
  return files


def _text(data_cfg) -> list[str]:
  """Plain text: documents are separated by one or more blank lines."""
  documents: list[str] = []
  for file in _files(data_cfg, '.txt'):
    documents.extend(d.strip() for d in _BLANK_LINES.split(paths.read_utf8(file)))
  return documents


def _jsonl(data_cfg) -> list[str]:
  """JSON lines: one object per line, the document under `data.text_field`."""
  field = data_cfg.text_field
  documents = []
  for file in _files(data_cfg, '.jsonl'):
    for number, line in enumerate(paths.read_utf8(file).split('\n'), start=1):
      if line.strip():
        documents.append(json_text(line, field, f'{file}:{number}'))
  return documents


def json_text(line: str, field: str, where: str) -> str:
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    raise UserError(f'{where} is not valid JSON ({e.msg}, column {e.colno}); '
                    'each line must be one JSON object') from None
  if not isinstance(record, dict) or field not in record:
    keys = ', '.join(map(str, record)) if isinstance(record, dict) else type(record).__name__
    raise UserError(f'{where} has no {field!r} field (found: {keys}); set '
                    'data.text_field to the key that holds the text')
  if not isinstance(record[field], str):
    raise UserError(f'{where}: field {field!r} is a {type(record[field]).__name__}, '
                    'not a string')
  return record[field]


def _parquet(data_cfg) -> list[str]:
  """Parquet files: the column `data.text_field` of every row."""
  return [t for file in _files(data_cfg, '.parquet')
          for t in parquet_texts(os.fspath(file), data_cfg.text_field)]


def parquet_texts(file: str, field: str, row_group: int | None = None) -> list[str]:
  """Column `field` of a Parquet file (or of one row group), as strings; None is ''."""
  require('pyarrow', 'a Parquet corpus')
  import pyarrow.parquet as pq
  with fsspec.open(file, 'rb') as f:
    try:
      table = pq.ParquetFile(f)
      names = table.schema_arrow.names
      if field not in names:
        raise UserError(f'{file} has no column {field!r} (columns: {", ".join(names)}); '
                        'set data.text_field')
      columns = (table.read(columns=[field]) if row_group is None
                 else table.read_row_group(row_group, columns=[field]))
    except UserError:
      raise
    except Exception as e:  # pyarrow's ArrowInvalid and kin: not a readable Parquet file
      raise UserError(f'{file} is not a readable Parquet file ({e})') from None
  values = columns.column(field).to_pylist()
  for value in values:
    if value is not None and not isinstance(value, str):
      raise UserError(f'{file}: column {field!r} holds {type(value).__name__}, not text')
  return [v or '' for v in values]


def tfds_source(name: str, split: str, data_dir: str | None, fix: str):
  """A prepared array_record TFDS split as a random-access data source, read without TF.

  `fix` ends the error message: what the caller's user can do instead.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except (tfds.core.registered.DatasetNotFoundError, ValueError, NotImplementedError,
          AssertionError, FileNotFoundError) as e:
    reason = str(e).strip().split('\n')[0]
    raise UserError(
        f'cannot read tfds dataset {name}[{split}] from '
        f'{data_dir or "the default TFDS data dir"}: {reason} Prepare it in array_record '
        f'format first (tfds build {name} --file_format=array_record --data_dir=DIR) '
        f'{fix}') from None
  return source


def tfds_records(name: str, split: str, data_dir: str | None, fix: str):
  """(index, record) of a prepared array_record TFDS split (`tfds_source`), read in chunks."""
  source = tfds_source(name, split, data_dir, fix)
  for start in range(0, len(source), _TFDS_READ):
    records = source.__getitems__(range(start, min(start + _TFDS_READ, len(source))))
    yield from enumerate(records, start)


def _tfds(data_cfg) -> list[str]:
  """A prepared TFDS dataset in array_record format; TensorFlow is not needed."""
  name, split, field = data_cfg.tfds_name, data_cfg.tfds_split, data_cfg.text_field
  if not name:
    raise UserError('data.source=tfds needs data.tfds_name (--set data.tfds_name=...)')
  documents = []
  for i, record in tfds_records(name, split, data_cfg.tfds_data_dir or None,
                                'and set data.tfds_data_dir=DIR'):
    if field not in record:
      raise UserError(f'tfds dataset {name} has no feature {field!r} (features: '
                      f'{", ".join(record)}); set data.text_field')
    documents.append(tfds_text(record[field], name, i))
  return documents


def tfds_text(value, name: str, index: int) -> str:
  if isinstance(value, str):
    return value
  try:
    return bytes(value).decode('utf-8')
  except UnicodeDecodeError as e:
    raise UserError(f'tfds dataset {name}, example {index}: text is not valid UTF-8 '
                    f'(byte {e.start})') from None


def split_documents(docs: list, eval_fraction: float, seed: int) -> tuple[list, list]:
  """Holds out a random `eval_fraction` of the documents (at least one), in order.

  With a single document there is nothing to hold out whole, so its last
  `eval_fraction` (at least one element) becomes the eval document instead.
  `eval_fraction <= 0` holds out nothing.
  """
  if eval_fraction <= 0 or not docs:
    return list(docs), []
  if len(docs) == 1:
    cut = len(docs[0]) - max(1, round(len(docs[0]) * eval_fraction))
    return [docs[0][:cut]], [docs[0][cut:]]
  count = min(max(1, round(len(docs) * eval_fraction)), len(docs) - 1)
  held = np.zeros(len(docs), bool)
  held[np.random.default_rng(seed % 2**32).permutation(len(docs))[:count]] = True
  return ([d for d, h in zip(docs, held) if not h], [d for d, h in zip(docs, held) if h])
