"""Task data for adaptation: GLUE, CSV/TSV/JSONL tables, CoNLL-U and BIO tagging, SQuAD.

Every reader turns a file into a list of `Example`s, and a `TaskSpec` says what the
model predicts and how `scores.compute` scores it, so the harness has one path for all
tasks. GLUE is read from the folder layout GLUE distributes or from prepared
tensorflow-datasets, with the label ids tensorflow-datasets uses, so a head trained on
either source means the same thing. Bad input raises one UserError that names the
file, the line and the fix.
"""

import csv
import dataclasses
import difflib
import io
import json

from ssljax import paths
from ssljax.data import corpus
from ssljax.errors import UserError

_ID_COLUMNS = ('index', 'id')  # where a row keeps its own id, when it has one
_DELIMITERS = {'.csv': ',', '.tsv': '\t'}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a task predicts and how it is scored."""
  name: str  # 'sst2', 'pos', 'squad', ...
  kind: str  # 'classification' | 'regression' | 'tokens' | 'span'
  labels: tuple[str, ...]  # label names in id order; ('',): one unnamed output
  pair: bool  # two texts, told apart by segment ids
  metrics: tuple[str, ...]  # names that scores.compute knows


@dataclasses.dataclass
class Example:
  """One input of any task; the fields its kind does not use stay None."""
  text: str | None = None
  text_b: str | None = None
  label: int | float | None = None  # class id or score; None on unlabelled test splits
  words: list[str] | None = None
  tags: list[int] | None = None
  context: str | None = None
  question: str | None = None
  answers: list[tuple[str, int]] | None = None  # (text, character start in context)
  id: str = ''
  where: str = ''  # 'file:line', for messages about this example


# Label names and ids as tensorflow-datasets' glue/* builder has them.
GLUE = {
    'cola': TaskSpec('cola', 'classification', ('unacceptable', 'acceptable'), False,
                     ('matthews',)),
    'sst2': TaskSpec('sst2', 'classification', ('negative', 'positive'), False,
                     ('accuracy',)),
    'mrpc': TaskSpec('mrpc', 'classification', ('not_equivalent', 'equivalent'), True,
                     ('f1', 'accuracy')),
    'stsb': TaskSpec('stsb', 'regression', ('',), True, ('pearson', 'spearman')),
    'qqp': TaskSpec('qqp', 'classification', ('not_duplicate', 'duplicate'), True,
                    ('f1', 'accuracy')),
    'mnli': TaskSpec('mnli', 'classification', ('entailment', 'neutral', 'contradiction'),
                     True, ('accuracy',)),
    'qnli': TaskSpec('qnli', 'classification', ('entailment', 'not_entailment'), True,
                     ('accuracy',)),
    'rte': TaskSpec('rte', 'classification', ('entailment', 'not_entailment'), True,
                    ('accuracy',)),
    'wnli': TaskSpec('wnli', 'classification', ('not_entailment', 'entailment'), True,
                     ('accuracy',)),
}
UPOS = ('ADJ', 'ADP', 'ADV', 'AUX', 'CCONJ', 'DET', 'INTJ', 'NOUN', 'NUM', 'PART', 'PRON',
        'PROPN', 'PUNCT', 'SCONJ', 'SYM', 'VERB', 'X')
POS = TaskSpec('pos', 'tokens', UPOS, False, ('token_accuracy',))
SQUAD = TaskSpec('squad', 'span', ('',), True, ('exact_match', 'f1'))
TASKS = {**GLUE, 'pos': POS, 'squad': SQUAD}  # NER's labels come from its file


@dataclasses.dataclass(frozen=True)
class _GlueLayout:
  """Where GLUE keeps a task and which columns hold what, as download_glue_data.py writes it."""
  folder: str
  text: str
  text_b: str | None
  label: str
  values: tuple[str, ...]  # the label column's values in label-id order; () for a score
  features: tuple[str, str | None]  # tfds glue/* feature names of text and text_b
  splits: tuple[str, ...] = ('train', 'dev', 'test')  # each one is SPLIT.tsv
  columns: tuple[str, ...] = ()  # names of the columns of train and dev when headerless


_GLUE_LAYOUTS = {
    'cola': _GlueLayout('CoLA', 'sentence', None, 'label', ('0', '1'), ('sentence', None),
                        columns=('source', 'label', 'star', 'sentence')),
    'sst2': _GlueLayout('SST-2', 'sentence', None, 'label', ('0', '1'), ('sentence', None)),
    'mrpc': _GlueLayout('MRPC', '#1 String', '#2 String', 'Quality', ('0', '1'),
                        ('sentence1', 'sentence2')),
    'stsb': _GlueLayout('STS-B', 'sentence1', 'sentence2', 'score', (),
                        ('sentence1', 'sentence2')),
    'qqp': _GlueLayout('QQP', 'question1', 'question2', 'is_duplicate', ('0', '1'),
                       ('question1', 'question2')),
    'mnli': _GlueLayout('MNLI', 'sentence1', 'sentence2', 'gold_label', GLUE['mnli'].labels,
                        ('premise', 'hypothesis'),
                        splits=('train', 'dev_matched', 'dev_mismatched', 'test_matched',
                                'test_mismatched')),
    'qnli': _GlueLayout('QNLI', 'question', 'sentence', 'label', GLUE['qnli'].labels,
                        ('question', 'sentence')),
    'rte': _GlueLayout('RTE', 'sentence1', 'sentence2', 'label', GLUE['rte'].labels,
                       ('sentence1', 'sentence2')),
    'wnli': _GlueLayout('WNLI', 'sentence1', 'sentence2', 'label', ('0', '1'),
                        ('sentence1', 'sentence2')),
}


@dataclasses.dataclass(frozen=True)
class _Columns:
  """Which fields of a row hold the texts and the label, and how to read the label."""
  text: str
  text_b: str | None
  label: str | None  # None: the rows are unlabelled
  kind: str
  label_ids: dict[str, int]  # empty for a score
  fix: str  # what to do when a row lacks a column

  def example(self, record: dict, where: str, number: int) -> Example:
    label = None
    if self.label is not None:
      label = self._label(_field(record, self.label, where, self.fix), where)
    return Example(
        text=_text(record, self.text, where, self.fix),
        text_b=None if self.text_b is None else _text(record, self.text_b, where, self.fix),
        label=label,
        id=str(next((record[c] for c in _ID_COLUMNS if c in record), number)),
        where=where)

  def _label(self, value, where: str) -> int | float:
    if self.kind != 'regression':
      return _label_id(str(value), self.label_ids, where)
    try:
      return float(value)
    except (TypeError, ValueError):
      raise UserError(f'{where}: score {value!r} is not a number; correct or remove '
                      'that line') from None


def task_spec(name: str) -> TaskSpec:
  """The spec of a named task, with the closest name suggested for a typo."""
  return TASKS[lookup(name, TASKS, 'task')]


def lookup(name: str, registry, what: str) -> str:
  """`name`'s key in `registry` (GLUE's folder spellings too), or one line naming the
  closest and every known name."""
  key = name.lower().replace('-', '')  # also GLUE's folder spellings: SST-2, STS-B
  if key in registry:
    return key
  closest = difflib.get_close_matches(key, registry, n=1, cutoff=0)[0]
  raise UserError(f'unknown {what} {name!r}; did you mean {closest!r}? '
                  f'(known: {", ".join(registry)})')


def read_glue(task: str, data_dir, split: str) -> list[Example]:
  """One split of a GLUE task from the TSV files as GLUE distributes them.

  `data_dir` is the GLUE folder (holding CoLA/, SST-2/, ...) or the task's own folder.
  Test splits have no labels: their examples keep label None.
  """
  name = lookup(task, GLUE, 'GLUE task')
  layout = _GLUE_LAYOUTS[name]
  path = _glue_file(name, layout, paths.path(data_dir), split)
  labelled = not split.startswith('test')
  records = _delimited_records(path, '\t', layout.columns if labelled else ())
  columns = _Columns(layout.text, layout.text_b, layout.label if labelled else None,
                     GLUE[name].kind, _ids(layout.values),
                     f'is it GLUE\'s {layout.folder}/{path.name}, unchanged?')
  return _nonempty([columns.example(r, w, i) for i, (w, r) in enumerate(records)], path)


def glue_path(task: str, data_dir, split: str) -> paths.Path:
  """The file `read_glue` reads, checked to exist (one line naming the layout if not)."""
  name = lookup(task, GLUE, 'GLUE task')
  return _glue_file(name, _GLUE_LAYOUTS[name], paths.path(data_dir), split)


def _check_split(name: str, layout: _GlueLayout, split: str) -> None:
  if split not in layout.splits:
    raise UserError(f'GLUE {name} has no split {split!r}; use one of '
                    f'{", ".join(layout.splits)}')


def _glue_file(name: str, layout: _GlueLayout, data_dir: paths.Path,
               split: str) -> paths.Path:
  """data_dir/Folder/split.tsv, or data_dir/split.tsv when data_dir is the task folder."""
  _check_split(name, layout, split)
  folder = data_dir / layout.folder if (data_dir / layout.folder).is_dir() else data_dir
  path = folder / f'{split}.tsv'
  if not path.is_file():
    folders = ' '.join(f'{g.folder}/' for g in _GLUE_LAYOUTS.values())
    raise UserError(f'{path} does not exist: GLUE keeps {name} {split} in '
                    f'{layout.folder}/{split}.tsv under the GLUE folder ({folders}, as '
                    'download_glue_data.py writes them); point the data dir at that '
                    f'folder or at {layout.folder}/ itself')
  return path


def read_glue_tfds(task: str, split: str, data_dir=None) -> list[Example]:
  """One split of tensorflow-datasets' glue/TASK, read without TensorFlow.

  Works when the dataset was prepared in array_record format; split names are those of
  read_glue ('dev' is tfds' 'validation').
  """
  name = lookup(task, GLUE, 'GLUE task')
  layout = _GLUE_LAYOUTS[name]
  _check_split(name, layout, split)
  dataset, tfds_split = f'glue/{name}', split.replace('dev', 'validation')
  records = corpus.tfds_records(dataset, tfds_split, data_dir,
                                'or read the GLUE TSV files with read_glue')
  examples = [_tfds_example(r, layout, GLUE[name].kind, split.startswith('test'),
                            f'{dataset}[{tfds_split}]') for _, r in records]
  return _nonempty(examples, f'{dataset}[{tfds_split}]')


def _tfds_example(record: dict, layout: _GlueLayout, kind: str, test: bool,
                  dataset: str) -> Example:
  """An Example from a tfds record; test splits hold -1 where a label would be."""
  text, text_b = layout.features
  to_label = float if kind == 'regression' else int
  return Example(
      text=_decode(record[text]),
      text_b=None if text_b is None else _decode(record[text_b]),
      label=None if test else to_label(record['label']),
      id=str(int(record['idx'])),
      where=f'{dataset} example {int(record["idx"])}')


def _decode(value) -> str:
  return value if isinstance(value, str) else bytes(value).decode('utf-8')


def read_table(path, text_column: str, label_column: str | None = None,
               text_b_column: str | None = None, kind: str = 'classification',
               labels=None, delimiter: str | None = None,
               name: str | None = None) -> tuple[TaskSpec, list[Example]]:
  """A task in a CSV, TSV or JSONL file, with columns (JSONL: keys) named by the caller.

  CSV follows the csv module's quoting; TSV is read unquoted, as GLUE and most NLP TSV
  files are written. Without `labels` the label set is the file's labels, sorted (as
  numbers when they all are), so pass the train split's `spec.labels` when reading its
  dev split to keep the ids the same.
  """
  if kind not in ('classification', 'regression'):
    raise UserError(f'kind={kind!r}: a table task is classification or regression')
  path = paths.path(path)
  if path.suffix == '.jsonl':
    records = _json_records(path)
  else:
    records = _delimited_records(path, delimiter or _table_delimiter(path))
  fix = 'name one of its columns in the column mapping'
  if labels is None and label_column is not None and kind == 'classification':
    labels = _sorted_labels({str(_field(r, label_column, w, fix)) for w, r in records})
  labels = tuple(labels or ()) if kind == 'classification' else ('',)
  columns = _Columns(text_column, text_b_column, label_column, kind, _ids(labels), fix)
  metrics = ('accuracy',) if kind == 'classification' else ('pearson', 'spearman')
  spec = TaskSpec(name or path.stem, kind, labels, text_b_column is not None, metrics)
  return spec, _nonempty([columns.example(r, w, i) for i, (w, r) in enumerate(records)],
                         path)


def _table_delimiter(path: paths.Path) -> str:
  if path.suffix not in _DELIMITERS:
    raise UserError(f'cannot tell how {path} is delimited: name it .csv, .tsv or .jsonl, '
                    'or pass delimiter=')
  return _DELIMITERS[path.suffix]


def _sorted_labels(values: set[str]) -> tuple[str, ...]:
  if all(v.lstrip('-').isdigit() for v in values):
    return tuple(sorted(values, key=int))
  return tuple(sorted(values))


def read_conllu(path) -> list[Example]:
  """UPOS tagging (task 'pos') from CoNLL-U: one Example per sentence, tags as UPOS ids.

  Multiword-token ranges (1-2) and empty nodes (1.1) are skipped: the words are the
  syntactic words, which are what carry the UPOS tags.
  """
  path = paths.path(path)
  tag_ids = _ids(UPOS)
  examples: list[Example] = []
  for sentence in _sentences(paths.read_utf8(path)):
    words, tags, sent_id = [], [], str(len(examples))
    for number, line in sentence:
      if line.startswith('#'):
        key, _, value = line[1:].partition('=')
        if key.strip() == 'sent_id':
          sent_id = value.strip()
        continue
      fields = line.split('\t')
      if len(fields) != 10:
        raise UserError(f'{path}:{number} has {len(fields)} tab-separated columns; '
                        'CoNLL-U has 10 (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS '
                        'MISC): fix that line')
      if fields[0].isdigit():
        words.append(fields[1])
        tags.append(_label_id(fields[3], tag_ids, f'{path}:{number}'))
    if words:
      examples.append(Example(words=words, tags=tags, id=sent_id,
                              where=f'{path}:{sentence[0][0]}'))
  return _nonempty(examples, path)


def read_conll_ner(path, labels=None) -> tuple[TaskSpec, list[Example]]:
  """A CoNLL-2003-style BIO file: the word first and its tag last on each line.

  Blank lines end sentences; -DOCSTART- lines are skipped. Without `labels` the label
  set is the file's tags, sorted: pass the train split's `spec.labels` for its dev split.
  """
  path = paths.path(path)
  sentences, width = [], None
  for block in _sentences(paths.read_utf8(path)):
    rows = []
    for number, line in block:
      fields = line.split()
      if fields[0] == '-DOCSTART-':
        continue
      width = width or len(fields)
      if len(fields) != width or width < 2:
        raise UserError(f'{path}:{number} has {len(fields)} columns, the first word line '
                        f'{width}; each line is the word, any other columns, then the '
                        'tag, split by spaces or tabs: fix that line')
      rows.append((f'{path}:{number}', fields[0], fields[-1]))
    if rows:
      sentences.append(rows)
  if labels is None:
    labels = tuple(sorted({tag for rows in sentences for _, _, tag in rows}))
  tag_ids = _ids(labels)
  examples = [Example(words=[word for _, word, _ in rows],
                      tags=[_label_id(tag, tag_ids, where) for where, _, tag in rows],
                      id=str(i), where=rows[0][0])
              for i, rows in enumerate(sentences)]
  spec = TaskSpec('ner', 'tokens', tuple(labels), False, ('entity_f1',))
  return spec, _nonempty(examples, path)


def read_squad(path) -> list[Example]:
  """SQuAD v1.1 JSON (task 'squad'): one Example per question, each answer checked.

  An answer must stand in its context at its answer_start, since training targets
  are built from that offset.
  """
  path = paths.path(path)
  text = paths.read_utf8(path)
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f'{path}:{e.lineno} is not valid JSON ({e.msg}, column {e.colno}); '
                    'fix the file or fetch it again') from None
  lines = _LineFinder(text)
  examples = []
  try:
    for paragraph in (p for article in data['data'] for p in article['paragraphs']):
      for qa in paragraph['qas']:
        where = f'{path}:{lines.find(json.dumps(qa["id"]))}'
        examples.append(_squad_example(qa, paragraph['context'], where))
  except (KeyError, TypeError, IndexError) as e:
    raise UserError(f'{path} is not SQuAD v1.1 JSON ({type(e).__name__}: {e}); expected '
                    '{"data": [{"paragraphs": [{"context": ..., "qas": [{"id", "question", '
                    '"answers": [{"text", "answer_start"}]}]}]}]}') from None
  return _nonempty(examples, path)


def _squad_example(qa: dict, context: str, where: str) -> Example:
  answers = [(a['text'], a['answer_start']) for a in qa['answers']]
  if not answers:
    raise UserError(f'{where}: question {qa["id"]} has no answer; SQuAD v2 unanswerable '
                    'questions are not supported, use SQuAD v1.1 data')
  for answer, start in answers:
    there = context[start:start + len(answer)]
    if there != answer:
      elsewhere = context.find(answer)
      found = (f'it starts at {elsewhere}' if elsewhere >= 0
               else 'the context does not contain it')
      raise UserError(f'{where}: answer {answer!r} of question {qa["id"]} is not at its '
                      f'answer_start {start} (the context has {there!r} there; {found}); '
                      'set answer_start to the 0-based character offset of the answer')
  return Example(context=context, question=qa['question'], answers=answers, id=qa['id'],
                 where=where)


class _LineFinder:
  """Line numbers of strings looked up in file order, in one pass over the text."""

  def __init__(self, text: str):
    self._text, self._pos, self._line = text, 0, 1

  def find(self, needle: str) -> int:
    found = self._text.find(needle, self._pos)
    if found >= 0:
      self._line += self._text.count('\n', self._pos, found)
      self._pos = found
    return self._line


def _delimited_records(path: paths.Path, delimiter: str,
                       names: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
  """('file:line', {column: value}) per row; `names` stand in for a missing header."""
  reader = csv.reader(io.StringIO(paths.read_utf8(path)), delimiter=delimiter,
                      quoting=csv.QUOTE_NONE if delimiter == '\t' else csv.QUOTE_MINIMAL)
  header, line = list(names), 1  # [] until the header row
  records: list[tuple[str, dict]] = []
  for fields in reader:
    if fields and not header:
      header = fields
    elif fields:
      if len(fields) != len(header):
        raise UserError(f'{path}:{line} has {len(fields)} columns, not the '
                        f'{len(header)} of {", ".join(header)}; a stray {delimiter!r} or '
                        'a line break inside a text splits a row: fix that line')
      records.append((f'{path}:{line}', dict(zip(header, fields))))
    line = reader.line_num + 1
  return records


def _json_records(path: paths.Path) -> list[tuple[str, dict]]:
  records = []
  for number, line in enumerate(paths.read_utf8(path).split('\n'), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise UserError(f'{path}:{number} is not valid JSON ({e.msg}, column {e.colno}); '
                      'each line must be one JSON object') from None
    if not isinstance(record, dict):
      raise UserError(f'{path}:{number} is a JSON {type(record).__name__}, not an object; '
                      'each line must be one JSON object')
    records.append((f'{path}:{number}', record))
  return records


def _field(record: dict, column: str, where: str, fix: str):
  if column not in record:
    raise UserError(f'{where} has no column {column!r} (it has {", ".join(record)}); {fix}')
  return record[column]


def _text(record: dict, column: str, where: str, fix: str) -> str:
  value = _field(record, column, where, fix)
  if not isinstance(value, str):
    raise UserError(f'{where}: {column!r} is a {type(value).__name__}, not text; '
                    'correct that line')
  return value


def _ids(labels) -> dict[str, int]:
  return {label: i for i, label in enumerate(labels)}


def _label_id(value: str, label_ids: dict[str, int], where: str) -> int:
  if value not in label_ids:
    raise UserError(f'{where}: label {value!r} is not one of the task\'s labels '
                    f'({", ".join(label_ids)}); correct or remove that line')
  return label_ids[value]


def _sentences(text: str) -> list[list[tuple[int, str]]]:
  """Runs of non-blank lines, each line with its 1-based number."""
  blocks, block = [], []
  for number, line in enumerate(text.split('\n'), start=1):
    if line.strip():
      block.append((number, line))
    elif block:
      blocks.append(block)
      block = []
  return blocks + [block] if block else blocks


def _nonempty(examples: list[Example], source) -> list[Example]:
  if not examples:
    raise UserError(f'{source} has no examples; an empty split cannot be trained or '
                    'scored: check that it is the right file and that it is complete')
  return examples
