"""Tasks by name: where each one's files are, and its examples as the settings select them.

`load_task(name, settings)` reads a GLUE task from the GLUE folder or prepared
tensorflow-datasets, or a file task (pos, ner, squad, table) from `train_file`/`eval_file`
or the files of its usual name under `data_dir`, and keeps a fixed random subset when
`max_train_examples`/`max_eval_examples` ask for one. A file task's evaluation split is
named after its file.
"""

import dataclasses

import ml_collections
import numpy as np

from ssljax import paths
from ssljax.errors import UserError
from ssljax.tasks import readers

# Where a task's files are looked for under data_dir when train_file/eval_file are not set.
_FILE_PATTERNS = {'pos': ('*-ud-train.conllu', '*-ud-dev.conllu'),
                  'squad': ('train-v1.1.json', 'dev-v1.1.json')}
FILE_TASKS = ('pos', 'ner', 'squad', 'table')


@dataclasses.dataclass
class Task:
  """A task's examples: what to train on and the splits to score."""
  spec: readers.TaskSpec
  train: list[readers.Example]
  evals: dict[str, list[readers.Example]]


def known_task(name: str) -> str:
  """The task's key; an unknown name raises, naming the closest known task."""
  return readers.lookup(name, [*readers.GLUE, *FILE_TASKS], 'task')


def load_task(name: str, s: ml_collections.ConfigDict) -> Task:
  """The examples of task `name` as the settings locate them."""
  key = known_task(name)
  if key in readers.GLUE:
    spec, train, evals = _glue(key, s)
  else:
    spec, train, evals = _from_files(key, s)
  for split, examples in evals.items():
    if all(e.label is None and e.tags is None and e.answers is None for e in examples):
      raise UserError(f'{spec.name} {split} has no labels (a test split?); score a labelled '
                      'split, e.g. --set eval_splits=dev')
  return Task(spec=spec, train=_subset(train, s.max_train_examples, s.data_seed),
              evals={k: _subset(v, s.max_eval_examples, s.data_seed) for k, v in evals.items()})


def check_data(name: str, s: ml_collections.ConfigDict) -> None:
  """The one line `load_task` would raise for a missing file or folder, without reading
  any: `evaluate` checks every task before the first one runs for hours. (Prepared
  tensorflow-datasets are checked when read.)"""
  key = known_task(name)
  if key not in readers.GLUE:
    for which in (0, 1):
      path = _locate(s, key, which)
      if not path.is_file():
        raise UserError(f'{key} {("train_file", "eval_file")[which]} {path} does not exist')
    return
  splits = _glue_splits(key, s)
  if s.source != 'tfds':
    for split in ['train', *splits]:
      readers.glue_path(key, _glue_folder(key, s), split)


def _glue_splits(name, s) -> list[str]:
  default = 'dev_matched,dev_mismatched' if name == 'mnli' else 'dev'
  splits = [x.strip() for x in (s.eval_splits or default).split(',') if x.strip()]
  if 'train' in splits:
    raise UserError('eval_splits names train: scoring the training split says nothing; '
                    'score dev')
  return splits


def _glue_folder(name, s) -> paths.Path:
  if not s.data_dir:
    raise UserError(f'{name} is read from the GLUE folder: pass --data-dir GLUE_DIR (or '
                    '--set source=tfds)')
  folder = paths.path(s.data_dir)
  return folder / 'glue' if (folder / 'glue').is_dir() else folder


def _glue(name, s):
  splits = _glue_splits(name, s)
  if s.source == 'tfds':
    read = lambda split: readers.read_glue_tfds(name, split, s.data_dir or None)
  else:
    folder = _glue_folder(name, s)
    read = lambda split: readers.read_glue(name, folder, split)
  return readers.GLUE[name], read('train'), {split: read(split) for split in splits}


def _from_files(name, s):
  """The task's spec, train and its one evaluation split, named after the eval file."""
  train_file, eval_file = (_locate(s, name, which) for which in (0, 1))
  split = split_name(eval_file)
  if name == 'pos':
    return (readers.POS, readers.read_conllu(train_file),
            {split: readers.read_conllu(eval_file)})
  if name == 'squad':
    return (readers.SQUAD, readers.read_squad(train_file),
            {split: readers.read_squad(eval_file)})
  if name == 'ner':
    spec, train = readers.read_conll_ner(train_file)
    return spec, train, {split: readers.read_conll_ner(eval_file, spec.labels)[1]}
  t = s.table
  read = lambda path, labels=None: readers.read_table(
      path, t.text, t.label, t.text_b or None, t.kind, labels=labels,
      name=paths.path(train_file).stem)
  spec, train = read(train_file)
  return spec, train, {split: read(eval_file,
                                   spec.labels if t.kind != 'regression' else None)[1]}


def split_name(path: str | paths.Path) -> str:
  """An evaluation file's split name: its name without the extension (en_ewt-ud-test from
  en_ewt-ud-test.conllu, dev-v1.1 from dev-v1.1.json), so a report says which file it
  scored; 'train' would read as the training split, so that one is eval-train."""
  stem = paths.path(path).stem
  return 'eval-train' if stem == 'train' else stem


def _locate(s, name, which) -> paths.Path:
  """train_file / eval_file, or the file of the task's usual name under data_dir."""
  key = ('train_file', 'eval_file')[which]
  if s[key]:
    return paths.path(s[key])
  pattern = _FILE_PATTERNS.get(name, (None, None))[which]
  if pattern and s.data_dir:
    found = paths.rglob(paths.path(s.data_dir), pattern)
    if found:
      return found[0]
  where = f' (no {pattern} under {s.data_dir})' if pattern and s.data_dir else ''
  raise UserError(f'task {name} needs --set {key}=FILE{where}')


def _subset(examples, limit, seed):
  if not limit or limit >= len(examples):
    return examples
  keep = np.sort(np.random.default_rng(seed).choice(len(examples), limit, replace=False))
  return [examples[i] for i in keep]
