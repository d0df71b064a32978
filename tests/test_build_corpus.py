"""scripts/build_corpus.py: training-set text only, one document per source unit."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'scripts' / 'build_corpus.py'


def _data(root):
  (root / 'wikitext-2').mkdir(parents=True)
  article = ' = Title {n} = \n \n First line of {n} .\n Second line of {n} .\n'
  for name in ('wiki.valid.tokens', 'wiki.test.tokens'):
    (root / 'wikitext-2' / name).write_text('\n' + ''.join(article.format(n=f'{name}{i}')
                                                            for i in range(2)))
  glue = root / 'glue'
  for folder, header, rows in (
      ('SST-2', 'sentence\tlabel', ['a fine film\t1', 'dull\t0']),
      ('RTE', 'index\tsentence1\tsentence2\tlabel', ['0\tA cat sat.\tA cat.\tentailment']),
      ('STS-B', 'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t'
                'sentence2\tscore', ['0\tg\tf\ty\t1\ts\ts\tA man runs.\tA man is running.\t4.0'])):
    (glue / folder).mkdir(parents=True)
    (glue / folder / 'train.tsv').write_text('\n'.join([header] + rows) + '\n')
    (glue / folder / 'dev.tsv').write_text('\n'.join([header, rows[0].replace('A', 'DEV')]))
  (glue / 'CoLA').mkdir()
  (glue / 'CoLA' / 'train.tsv').write_text('gj04\t1\t\tThe book is red.\n')
  ud = root / 'ud_english_ewt'
  ud.mkdir()
  (ud / 'en_ewt-ud-train.conllu').write_text(
      '# newdoc id = d1\n# text = One two.\n1\tOne\n\n# text = Three.\n1\tThree\n\n'
      '# newdoc id = d2\n# text = Four.\n1\tFour\n\n')
  (ud / 'en_ewt-ud-dev.conllu').write_text('# newdoc id = x\n# text = DEV ONLY.\n')


def test_writes_training_text_only(tmp_path):
  _data(tmp_path / 'data')
  subprocess.run([sys.executable, SCRIPT, '--data', tmp_path / 'data', '--out',
                  tmp_path / 'corpus'], check=True, capture_output=True)
  docs = {p.stem: p.read_text().split('\n\n') for p in (tmp_path / 'corpus').glob('*.txt')}
  assert sorted(docs) == ['cola', 'rte', 'sst2', 'stsb', 'ud_ewt', 'wikitext2']
  assert len(docs['wikitext2']) == 4 and docs['wikitext2'][0].startswith('= Title')
  assert docs['sst2'] == ['a fine film', 'dull']
  assert docs['rte'] == ['A cat sat.\nA cat.']
  assert docs['stsb'] == ['A man runs.\nA man is running.']
  assert docs['ud_ewt'] == ['One two.\nThree.', 'Four.']
  assert not any('DEV' in d for ds in docs.values() for d in ds)  # no dev text goes in


def test_a_folder_without_the_data_says_what_it_needs(tmp_path):
  out = subprocess.run([sys.executable, SCRIPT, '--data', tmp_path, '--out', tmp_path / 'c'],
                       capture_output=True, text=True)
  assert out.returncode != 0 and 'has no wikitext-2/' in out.stderr
  assert len(out.stderr.strip().splitlines()) == 1
