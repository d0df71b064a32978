"""Tests for ssljax.tasks.readers: every format and task layout, and every bad-input message."""

import collections
import json
import pathlib
import re

import pytest

from ssljax.errors import UserError
from ssljax.tasks import readers

_SHARED = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
_MNLI_HEAD = ('index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t'
              'sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2')
_MNLI_ROW = '0\t63735\t63735n\tslate\t( ( The x ) )\t( y )\t(ROOT (S))\t(ROOT (S))'
_STSB_HEAD = 'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2'
_STSB_ROW = '0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone'
_MRPC_HEAD = '#1 ID\t#2 ID\t#1 String\t#2 String'

# Two rows of each GLUE file in GLUE's own layout: headers, column order, label values,
# the byte-order mark of MRPC, a stray quote in MNLI, CoLA's missing header and newline.
_GLUE_FILES = {
    'CoLA/dev.tsv': 'gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n'
                    'gj04\t0\t*\tThe more books I ask to whom he will give, the more he reads.',
    'CoLA/test.tsv': 'index\tsentence\n0\tBill whistled past the house.\n',
    'SST-2/dev.tsv': "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n"
                     'unflinchingly bleak and desperate \t0\n',
    'SST-2/test.tsv': 'index\tsentence\n0\tuneasy mishmash of styles and genres .\n',
    'MRPC/dev.tsv': f'\ufeffQuality\t{_MRPC_HEAD}\n'
                    '1\t1355540\t1355592\tHe said the pie business fits.\tThe pie fits, he said.\n'
                    '0\t2029631\t2029565\tMagnarelli said Racicot hated it.\t'
                    'His wife said he was.\n',
    'MRPC/test.tsv': f'index\t{_MRPC_HEAD}\n0\t1089874\t1089925\tPCCW said.\tPCCW says.\n',
    'STS-B/dev.tsv': f'{_STSB_HEAD}\tscore\n{_STSB_ROW}\tA man is dancing.\tA man dances.\t5.000\n'
                     f'{_STSB_ROW}\tA dog runs.\tA cat sleeps.\t0.250\n',
    'STS-B/test.tsv': f'{_STSB_HEAD}\n{_STSB_ROW}\tA girl is styling her hair.\tA girl brushes.\n',
    'QQP/dev.tsv': 'id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n'
                   '201359\t303345\t303346\tWhy are African-Americans so beautiful?\t'
                   'Why are hispanics so beautiful?\t0\n'
                   '263843\t69383\t380476\tI want to pursue PhD?\tHow do I apply for a PhD?\t1\n',
    'QQP/test.tsv': 'id\tquestion1\tquestion2\n0\tHow do I stop?\tWhat makes me stop?\n',
    'MNLI/train.tsv': f'{_MNLI_HEAD}\tlabel1\tgold_label\n'
                      f'{_MNLI_ROW}\tConceptually cream skimming.\tProduct and geography.\t'
                      'neutral\tneutral\n',
    'MNLI/dev_matched.tsv': f'{_MNLI_HEAD}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n'
                            f'{_MNLI_ROW}\tThe new rights are "nice enough\tEveryone likes them.\t'
                            'neutral\tentailment\tneutral\tneutral\tneutral\tneutral\n'
                            f'{_MNLI_ROW}\tThis site is legal.\tIt is illegal.\t'
                            'contradiction\tcontradiction\tcontradiction\tcontradiction\t'
                            'contradiction\tcontradiction\n',
    'MNLI/dev_mismatched.tsv': f'{_MNLI_HEAD}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\t'
                               f'gold_label\n{_MNLI_ROW}\tYour gift counts.\tIt helps.\t'
                               'entailment\tentailment\tentailment\tentailment\tentailment\t'
                               'entailment\n',
    'MNLI/test_matched.tsv': f'{_MNLI_HEAD}\n{_MNLI_ROW}\tHierbas.\tIt is a herb.\n',
    'QNLI/dev.tsv': 'index\tquestion\tsentence\tlabel\n'
                    '0\tWhat came into force after the new constitution?\t'
                    'As of that day, the new constitution came into force.\tentailment\n'
                    '1\tWhat is the first major city?\tThe city is on the river.\tnot_entailment\n',
    'RTE/dev.tsv': 'index\tsentence1\tsentence2\tlabel\n'
                   '0\tDana Reeve has died of lung cancer.\tChristopher Reeve had an accident.\t'
                   'not_entailment\n'
                   '1\tBacteria are mutating faster.\tBacteria is winning the war.\tentailment\n',
    'WNLI/dev.tsv': 'index\tsentence1\tsentence2\tlabel\n'
                    '0\tThe drain is clogged with hair. It has to be cleaned.\t'
                    'The hair has to be cleaned.\t0\n'
                    '1\tJane knocked on the door. Susan answered.\tSusan answered the door.\t1\n',
}
# task: (split, count, first example's text, text_b, label, id)
_GLUE_EXPECTED = {
    'cola': ('dev', 2, 'The sailors rode the breeze clear of the rocks.', None, 1, '0'),
    'sst2': ('dev', 2, "it 's a charming and often affecting journey . ", None, 1, '0'),
    'mrpc': ('dev', 2, 'He said the pie business fits.', 'The pie fits, he said.', 1, '0'),
    'stsb': ('dev', 2, 'A man is dancing.', 'A man dances.', 5.0, '0'),
    'qqp': ('dev', 2, 'Why are African-Americans so beautiful?',
            'Why are hispanics so beautiful?', 0, '201359'),
    'mnli': ('dev_matched', 2, 'The new rights are "nice enough', 'Everyone likes them.', 1,
             '0'),
    'qnli': ('dev', 2, 'What came into force after the new constitution?',
             'As of that day, the new constitution came into force.', 0, '0'),
    'rte': ('dev', 2, 'Dana Reeve has died of lung cancer.',
            'Christopher Reeve had an accident.', 1, '0'),
    'wnli': ('dev', 2, 'The drain is clogged with hair. It has to be cleaned.',
             'The hair has to be cleaned.', 0, '0'),
}


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding='utf-8')
  return path


@pytest.fixture(scope='module')
def glue_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('glue')
  for name, text in _GLUE_FILES.items():
    _write(root / name, text)
  return root


def _fails(call, *fragments):
  """The call raises one single-line UserError holding every fragment."""
  with pytest.raises(UserError) as error:
    call()
  message = str(error.value)
  assert '\n' not in message
  for fragment in fragments:
    assert str(fragment) in message, message
  return message


@pytest.mark.parametrize('task', list(readers.GLUE))
def test_read_glue_each_task_in_its_own_layout(glue_dir, task):
  split, count, text, text_b, label, example_id = _GLUE_EXPECTED[task]
  examples = readers.read_glue(task, glue_dir, split)
  assert len(examples) == count
  first = examples[0]
  assert (first.text, first.text_b, first.label, first.id) == (text, text_b, label, example_id)
  spec = readers.GLUE[task]
  assert spec.pair == (text_b is not None)
  if spec.kind == 'classification':
    assert all(0 <= e.label < len(spec.labels) for e in examples)
  assert re.fullmatch(rf'{re.escape(str(glue_dir))}/[A-Za-z2-]+/{split}\.tsv:[12]', first.where)


def test_read_glue_from_the_task_folder_and_by_folder_name(glue_dir):
  assert readers.read_glue('rte', glue_dir / 'RTE', 'dev') == readers.read_glue('rte', glue_dir,
                                                                           'dev')
  assert len(readers.read_glue('SST-2', glue_dir, 'dev')) == 2


def test_read_glue_mnli_splits_and_labels(glue_dir):
  assert [e.label for e in readers.read_glue('mnli', glue_dir, 'dev_matched')] == [1, 2]
  assert [e.label for e in readers.read_glue('mnli', glue_dir, 'dev_mismatched')] == [0]
  assert [e.label for e in readers.read_glue('mnli', glue_dir, 'train')] == [1]


@pytest.mark.parametrize('task, split, text', [
    ('cola', 'test', 'Bill whistled past the house.'),
    ('sst2', 'test', 'uneasy mishmash of styles and genres .'),
    ('mrpc', 'test', 'PCCW said.'),
    ('stsb', 'test', 'A girl is styling her hair.'),
    ('qqp', 'test', 'How do I stop?'),
    ('mnli', 'test_matched', 'Hierbas.'),
])
def test_read_glue_test_splits_are_unlabelled(glue_dir, task, split, text):
  [example] = readers.read_glue(task, glue_dir, split)
  assert (example.text, example.label, example.id) == (text, None, '0')


def test_glue_errors(glue_dir, tmp_path):
  _fails(lambda: readers.read_glue('sst', glue_dir, 'dev'), "unknown GLUE task 'sst'",
         "did you mean 'sst2'")
  _fails(lambda: readers.read_glue('colaa', glue_dir, 'dev'), "did you mean 'cola'")
  _fails(lambda: readers.read_glue('mnli', glue_dir, 'dev'), "GLUE mnli has no split 'dev'",
         'dev_matched, dev_mismatched')
  missing = tmp_path / 'nowhere'
  _fails(lambda: readers.read_glue('rte', missing, 'dev'), f'{missing}/dev.tsv does not exist',
         'RTE/dev.tsv', 'CoLA/ SST-2/', 'download_glue_data.py')
  _fails(lambda: readers.read_glue('rte', glue_dir, 'train'), 'RTE/train.tsv does not exist')


@pytest.mark.parametrize('name, text, fragments', [
    ('SST-2/dev.tsv', 'sentence\tlabel\ngood\t1\nbad\tthing\t0\n',
     [':3 has 3 columns, not the 2 of sentence, label', 'fix that line']),
    ('CoLA/dev.tsv', 'gj04\t1\t\tFine.\ngj04\t1\tNo star column.\n',
     [':2 has 3 columns, not the 4 of source, label, star, sentence']),
    ('RTE/dev.tsv', 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n',
     [":3: label 'maybe' is not one of the task's labels (entailment, not_entailment)",
      'correct or remove that line']),
    ('SST-2/dev.tsv', 'sentence\tlabel\n',
     ['dev.tsv has no examples', 'empty split']),
    ('STS-B/dev.tsv', f'{_STSB_HEAD}\tscore\n{_STSB_ROW}\ta\tb\tfive\n',
     [":2: score 'five' is not a number"]),
    ('RTE/dev.tsv', 'sentence1\tsentence2\tgold\na\tb\tentailment\n',
     [":2 has no column 'label' (it has sentence1, sentence2, gold)",
      "is it GLUE's RTE/dev.tsv, unchanged?"]),
])
def test_glue_bad_files(tmp_path, name, text, fragments):
  path = _write(tmp_path / name, text)
  task = {'SST-2': 'sst2', 'CoLA': 'cola', 'RTE': 'rte', 'STS-B': 'stsb'}[path.parent.name]
  _fails(lambda: readers.read_glue(task, tmp_path, 'dev'), str(path), *fragments)


def _prepare_tfds_glue(data_dir, task, files):
  """Builds tfds glue/TASK as array_record from local TSVs with tfds' own GLUE code."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.text import glue
  builder = glue.Glue(config=task, data_dir=str(data_dir), file_format='array_record')
  builder._split_generators = lambda dl_manager: [
      tfds.core.SplitGenerator(name=split, gen_kwargs={
          'data_file': str(path), 'split': split.split('_')[0]})
      for split, path in files.items()]
  builder.download_and_prepare()


@pytest.fixture(scope='module')
def tfds_dir(glue_dir, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  _prepare_tfds_glue(data_dir, 'sst2', {'train': glue_dir / 'SST-2/dev.tsv',
                                        'validation': glue_dir / 'SST-2/dev.tsv',
                                        'test': glue_dir / 'SST-2/test.tsv'})
  _prepare_tfds_glue(data_dir, 'mnli', {
      'train': glue_dir / 'MNLI/train.tsv',
      'validation_matched': glue_dir / 'MNLI/dev_matched.tsv',
      'validation_mismatched': glue_dir / 'MNLI/dev_mismatched.tsv'})
  return data_dir


def _fields(examples):
  return sorted((e.text, e.text_b, e.label) for e in examples)


@pytest.mark.parametrize('task, split', [
    ('sst2', 'dev'), ('sst2', 'test'), ('mnli', 'dev_matched'), ('mnli', 'dev_mismatched'),
    ('mnli', 'train')])
def test_read_glue_tfds_agrees_with_the_tsv_reader(glue_dir, tfds_dir, task, split):
  from_tfds = readers.read_glue_tfds(task, split, data_dir=tfds_dir)
  assert _fields(from_tfds) == _fields(readers.read_glue(task, glue_dir, split))
  assert from_tfds[0].where.startswith(f'glue/{task}[')


def test_read_glue_tfds_errors(tfds_dir):
  _fails(lambda: readers.read_glue_tfds('rte', 'dev', data_dir=tfds_dir),
         'cannot read tfds dataset glue/rte[validation]', 'array_record', 'read_glue')
  _fails(lambda: readers.read_glue_tfds('sst2', 'dev_matched', data_dir=tfds_dir),
         "GLUE sst2 has no split 'dev_matched'")
  _fails(lambda: readers.read_glue_tfds('snli', 'dev'), "unknown GLUE task 'snli'")


def test_read_table_csv_with_quotes_and_sorted_labels(tmp_path):
  path = _write(tmp_path / 'reviews.csv',
                'id,review,stars\nr1,"Great, really",10\nr2,"said ""meh""",2\nr3,ok,2\n')
  spec, examples = readers.read_table(path, 'review', 'stars')
  assert spec == readers.TaskSpec('reviews', 'classification', ('2', '10'), False,
                                ('accuracy',))
  assert [(e.text, e.label, e.id) for e in examples] == [
      ('Great, really', 1, 'r1'), ('said "meh"', 0, 'r2'), ('ok', 0, 'r3')]
  assert examples[1].where == f'{path}:3'


def test_read_table_tsv_pair_and_given_labels(tmp_path):
  path = _write(tmp_path / 'nli.tsv', 'premise\thypothesis\tlabel\nA "b\tc\tyes\nd\te\tno\n')
  spec, examples = readers.read_table(path, 'premise', 'label', text_b_column='hypothesis',
                                    labels=('no', 'yes'), name='nli')
  assert (spec.name, spec.pair, spec.labels) == ('nli', True, ('no', 'yes'))
  assert [(e.text, e.text_b, e.label, e.id) for e in examples] == [
      ('A "b', 'c', 1, '0'), ('d', 'e', 0, '1')]


def test_read_table_jsonl_regression_and_unlabelled(tmp_path):
  lines = [json.dumps({'text': 'one', 'score': 0.5}), '',
           json.dumps({'text': 'two', 'score': 3, 'id': 7})]
  path = _write(tmp_path / 'scores.jsonl', '\n'.join(lines) + '\n')
  spec, examples = readers.read_table(path, 'text', 'score', kind='regression')
  assert (spec.kind, spec.labels, spec.metrics) == ('regression', ('',),
                                                    ('pearson', 'spearman'))
  assert [(e.text, e.label, e.id, e.where) for e in examples] == [
      ('one', 0.5, '0', f'{path}:1'), ('two', 3.0, '7', f'{path}:3')]
  _, unlabelled = readers.read_table(path, 'text', labels=('a', 'b'))
  assert [e.label for e in unlabelled] == [None, None]


def test_read_table_with_another_delimiter(tmp_path):
  path = _write(tmp_path / 'data.txt', 'text|label\na|x\nb|y\n')
  spec, examples = readers.read_table(path, 'text', 'label', delimiter='|')
  assert spec.labels == ('x', 'y') and [e.label for e in examples] == [0, 1]


@pytest.mark.parametrize('name, text, kwargs, fragments', [
    ('t.csv', 'text,label\na,1\nb,2,3\n', {}, [':3 has 3 columns, not the 2 of text, label']),
    ('t.tsv', 'text\tlabel\na\tpos\nb\tneutral\n', {'labels': ('neg', 'pos')},
     [":3: label 'neutral' is not one of the task's labels (neg, pos)"]),
    ('t.csv', 'text,label\n', {}, ['has no examples']),
    ('t.csv', 'sentence,label\na,1\n', {},
     [":2 has no column 'text' (it has sentence, label)", 'column mapping']),
    ('t.jsonl', '{"text": "a", "label": 1}\n{"text": "b", "label": 1,}\n', {},
     [':2 is not valid JSON', 'column 26']),
    ('t.jsonl', '[1, 2]\n', {}, [':1 is a JSON list, not an object']),
    ('t.jsonl', '{"text": 5, "label": 1}\n', {}, [":1: 'text' is a int, not text"]),
    ('t.parquet', 'x', {}, ['cannot tell how', 'delimiter=']),
])
def test_read_table_errors(tmp_path, name, text, kwargs, fragments):
  path = _write(tmp_path / name, text)
  _fails(lambda: readers.read_table(path, 'text', 'label', **kwargs), str(path), *fragments)


def test_read_table_missing_file_and_kind(tmp_path):
  _fails(lambda: readers.read_table(tmp_path / 'gone.csv', 'text'), 'gone.csv does not exist')
  _fails(lambda: readers.read_table(tmp_path / 'x.csv', 'text', kind='tokens'),
         "kind='tokens'")


_CONLLU = """\
# newdoc id = weblog-1
# sent_id = weblog-1-0001
# text = I'm home.
1-2\tI'm\t_\t_\t_\t_\t_\t_\t_\t_
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t3:nsubj\t_
2\t'm\tbe\tAUX\tVBP\t_\t3\tcop\t3:cop\t_
3\thome\thome\tADV\tRB\t_\t0\troot\t0:root\tSpaceAfter=No
3.1\tis\tbe\t_\t_\t_\t_\t_\t3:cop\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t3:punct\t_

1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t0:root\t_
"""


def test_read_conllu_skips_multiword_tokens_and_empty_nodes(tmp_path):
  path = _write(tmp_path / 'en-ud-dev.conllu', _CONLLU)
  first, second = readers.read_conllu(path)
  assert first.words == ['I', "'m", 'home', '.']
  assert [readers.UPOS[t] for t in first.tags] == ['PRON', 'AUX', 'ADV', 'PUNCT']
  assert (first.id, first.where) == ('weblog-1-0001', f'{path}:1')
  assert (second.words, second.tags, second.id) == (['Yes'], [readers.UPOS.index('INTJ')], '1')
  assert len(readers.UPOS) == 17 and readers.task_spec('pos').labels == readers.UPOS


@pytest.mark.parametrize('text, fragments', [
    ('1\tI\tI\tPRON\tPRP\t_\t0\troot\n', [':1 has 8 tab-separated columns', 'CoNLL-U has 10']),
    ('# c\n1\tI\tI\tPRN\tPRP\t_\t0\troot\t_\t_\n', [":2: label 'PRN' is not one of"]),
    ('# only a comment\n\n', ['has no examples']),
])
def test_read_conllu_errors(tmp_path, text, fragments):
  path = _write(tmp_path / 'bad.conllu', text)
  _fails(lambda: readers.read_conllu(path), str(path), *fragments)


_NER = """\
-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_read_conll_ner(tmp_path):
  path = _write(tmp_path / 'train.txt', _NER)
  spec, (first, second) = readers.read_conll_ner(path)
  assert spec == readers.TaskSpec('ner', 'tokens', ('B-PER', 'I-MISC', 'I-ORG', 'I-PER', 'O'),
                                False, ('entity_f1',))
  assert first.words == ['EU', 'rejects', 'German', 'call']
  assert [spec.labels[t] for t in first.tags] == ['I-ORG', 'O', 'I-MISC', 'O']
  assert (second.words, first.where, second.where) == (['Peter', 'Blackburn'], f'{path}:3',
                                                       f'{path}:8')
  dev = _write(tmp_path / 'dev.txt', 'Peter B-PER\nParis B-LOC\n')
  _fails(lambda: readers.read_conll_ner(dev, labels=spec.labels), f'{dev}:2',
         "label 'B-LOC' is not one of")


@pytest.mark.parametrize('text, fragments', [
    ('EU NNP I-ORG\nrejects O\n', [':2 has 2 columns, the first word line 3']),
    ('EU\n', [':1 has 1 columns']),
    ('-DOCSTART- -X- -X- O\n\n', ['has no examples']),
])
def test_read_conll_ner_errors(tmp_path, text, fragments):
  path = _write(tmp_path / 'ner.txt', text)
  _fails(lambda: readers.read_conll_ner(path), str(path), *fragments)


def _squad(questions, context='Denver Broncos defeated the Carolina Panthers.'):
  qas = [{'answers': [{'answer_start': start, 'text': text} for start, text in answers],
          'question': question, 'id': qid} for qid, question, answers in questions]
  data = {'version': '1.1', 'data': [{'title': 'Super_Bowl_50', 'paragraphs': [
      {'context': context, 'qas': qas}]}]}
  return json.dumps(data, indent=1)


def test_read_squad(tmp_path):
  path = _write(tmp_path / 'dev-v1.1.json', _squad([
      ('q1', 'Who won?', [(0, 'Denver Broncos'), (0, 'Denver')]),
      ('q2', 'Who lost?', [(28, 'Carolina Panthers')])]))
  first, second = readers.read_squad(path)
  assert first == readers.Example(
      context='Denver Broncos defeated the Carolina Panthers.', question='Who won?',
      answers=[('Denver Broncos', 0), ('Denver', 0)], id='q1', where=first.where)
  assert second.answers == [('Carolina Panthers', 28)]
  lines = path.read_text().split('\n')
  assert '"q2"' in lines[int(second.where.rsplit(':', 1)[1]) - 1]


def test_read_squad_errors(tmp_path):
  path = _write(tmp_path / 'a.json', _squad([('q1', 'Who?', [(0, 'Denver')]),
                                             ('q2', 'Who lost?', [(27, 'Carolina')])]))
  line = next(i for i, text in enumerate(path.read_text().split('\n'), 1) if '"q2"' in text)
  _fails(lambda: readers.read_squad(path), f'{path}:{line}',
         "answer 'Carolina' of question q2 is not at its answer_start 27",
         "(the context has ' Carolin' there; it starts at 28)", 'set answer_start')
  path = _write(tmp_path / 'b.json', _squad([('q1', 'Who?', [(0, 'Seattle')])]))
  _fails(lambda: readers.read_squad(path), 'the context does not contain it')
  path = _write(tmp_path / 'c.json', '{"data": [\n {"paragraphs": []},\n {"x": 1,}\n]}')
  _fails(lambda: readers.read_squad(path), f'{path}:3 is not valid JSON', 'column 10')
  path = _write(tmp_path / 'd.json', '{"data": [{"paragraphs": [{"context": "c"}]}]}')
  _fails(lambda: readers.read_squad(path), 'is not SQuAD v1.1 JSON', "'qas'")
  path = _write(tmp_path / 'e.json', _squad([('q1', 'Who?', [])]))
  _fails(lambda: readers.read_squad(path), 'question q1 has no answer')
  path = _write(tmp_path / 'f.json', '{"version": "1.1", "data": []}')
  _fails(lambda: readers.read_squad(path), 'has no examples')


def test_task_spec_lookup():
  assert readers.task_spec('STS-B') is readers.GLUE['stsb']
  assert readers.task_spec('squad').metrics == ('exact_match', 'f1')
  _fails(lambda: readers.task_spec('squat'), "unknown task 'squat'", "did you mean 'squad'")


def test_an_unknown_task_lists_every_task_a_command_takes():
  from ssljax.tasks import catalog
  assert catalog.known_task('SST-2') == 'sst2' and catalog.known_task('ner') == 'ner'
  _fails(lambda: catalog.known_task('nerr'), "unknown task 'nerr'", "did you mean 'ner'",
         'sst2', 'pos', 'ner', 'squad', 'table')


def _manifest_counts(manifest: str, file: str) -> dict[str, str]:
  """The MANIFEST.md table row of `file`, keyed by its table's header."""
  header = []
  for line in manifest.split('\n'):
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if cells[0] == 'file':
      header = cells
    elif cells[0] == file:
      return dict(zip(header, cells))
  raise AssertionError(f'{file} is not in MANIFEST.md')


def _numbers(cell: str) -> list[int]:
  return [int(n.replace(',', '')) for n in re.findall(r'\d[\d,]*', cell)]


@pytest.mark.skipif(not (_SHARED / 'MANIFEST.md').is_file(), reason='no ../shared/data')
@pytest.mark.parametrize('task, file', [('sst2', 'SST-2'), ('cola', 'CoLA'), ('rte', 'RTE'),
                                        ('stsb', 'STS-B')])
def test_real_glue_dev_files_match_the_manifest(task, file):
  row = _manifest_counts((_SHARED / 'MANIFEST.md').read_text(), f'glue/{file}/dev.tsv')
  rows, *label_counts = _numbers(row['rows'])
  examples = readers.read_glue(task, _SHARED / 'glue', 'dev')
  assert len(examples) == rows
  if label_counts:
    counts = collections.Counter(e.label for e in examples)
    assert sorted(counts.values()) == sorted(label_counts)


@pytest.mark.skipif(not (_SHARED / 'MANIFEST.md').is_file(), reason='no ../shared/data')
def test_real_ud_dev_file_matches_the_manifest():
  row = _manifest_counts((_SHARED / 'MANIFEST.md').read_text(),
                         'ud_english_ewt/en_ewt-ud-dev.conllu')
  examples = readers.read_conllu(_SHARED / 'ud_english_ewt' / 'en_ewt-ud-dev.conllu')
  assert len(examples) == _numbers(row['sentences'])[0]
  assert sum(len(e.words) for e in examples) == _numbers(row['tokens (word lines)'])[0]
