"""Writes an in-domain pretraining corpus from a data folder laid out like ../shared/data.

  python scripts/build_corpus.py --data ../shared/data --out runs/corpus
  ssljax pretrain --config configs/bert_cpu30.py --workdir runs/cpu30 \
      --set data.source=text --set data.path=runs/corpus

Documents, blank-line separated, one file per source: WikiText-2 articles (valid and test,
split at their ` = Title = ` lines), and the unlabelled text of the task TRAINING sets only
(SST-2 and CoLA sentences, RTE and STS-B pairs as two-sentence documents, UD English-EWT
training documents). Using a task's own unlabelled text is legitimate self-supervision
(Krishna et al. 2022); no dev or test text goes in, so evaluation stays clean.
"""

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssljax.tasks import readers  # noqa: E402  (the GLUE readers)


def wikitext(data: pathlib.Path) -> list[str]:
  articles = []
  for name in ('wiki.valid.tokens', 'wiki.test.tokens'):
    text = (data / 'wikitext-2' / name).read_text(encoding='utf-8')
    for article in re.split(r'\n (?== [^=])', text):
      lines = [line.strip() for line in article.splitlines() if line.strip()]
      if len(lines) > 1:
        articles.append('\n'.join(lines))
  return articles


def glue_train(data: pathlib.Path, task: str) -> list[str]:
  examples = readers.read_glue(task, data / 'glue', 'train')
  return [e.text if e.text_b is None else f'{e.text}\n{e.text_b}' for e in examples]


def ud_train(data: pathlib.Path) -> list[str]:
  """The training treebank's documents (`# newdoc`), one sentence per line."""
  docs, current = [], []
  for path in sorted((data / 'ud_english_ewt').glob('*-ud-train.conllu')):
    for line in path.read_text(encoding='utf-8').splitlines():
      if line.startswith('# newdoc') and current:
        docs.append('\n'.join(current))
        current = []
      elif line.startswith('# text = '):
        current.append(line[len('# text = '):])
  return docs + (['\n'.join(current)] if current else [])


SOURCES = {'wikitext2': wikitext, 'sst2': lambda d: glue_train(d, 'sst2'),
           'cola': lambda d: glue_train(d, 'cola'), 'rte': lambda d: glue_train(d, 'rte'),
           'stsb': lambda d: glue_train(d, 'stsb'), 'ud_ewt': ud_train}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'))
  p.add_argument('--out', default='runs/corpus')
  args = p.parse_args(argv)
  data, out = pathlib.Path(args.data), pathlib.Path(args.out)
  if not (data / 'wikitext-2').is_dir():
    raise SystemExit(f'{data} has no wikitext-2/: pass --data, the folder laid out like '
                     '../shared/data')
  out.mkdir(parents=True, exist_ok=True)
  for name, read in SOURCES.items():
    docs = read(data)
    (out / f'{name}.txt').write_text('\n\n'.join(docs), encoding='utf-8')
    print(f'{out / name}.txt: {len(docs)} documents, {sum(map(len, docs)):,} characters')


if __name__ == '__main__':
  main()
