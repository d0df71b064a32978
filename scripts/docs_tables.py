"""Rewrites the key tables of docs/config.md and docs/adaptation.md from the schema
(`ssljax.config.Config`, `ssljax.adapt.settings.Settings`): a key's default, values and meaning
are written once, in the code. tests/test_config_docs.py fails while the docs differ.

  python scripts/docs_tables.py
"""

import pathlib
import re

from ssljax import config, schema
from ssljax.adapt import settings

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLES = {'docs/config.md': config.Config, 'docs/adaptation.md': settings.Settings}
BEGIN, END = '<!-- keys: scripts/docs_tables.py writes this table -->', '<!-- end of keys -->'


def table(cls) -> str:
  return f'{BEGIN}\n\n{schema.markdown(cls)}\n{END}'


def rewritten(text: str, cls) -> str:
  """`text` with the table between the markers replaced by `cls`'s."""
  pattern = re.compile(re.escape(BEGIN) + '.*?' + re.escape(END), re.S)
  if not pattern.search(text):
    raise SystemExit(f'no {BEGIN} ... {END} markers')
  return pattern.sub(lambda _: table(cls), text)


def main():
  for name, cls in TABLES.items():
    path = ROOT / name
    path.write_text(rewritten(path.read_text(), cls))
    print(f'wrote the key table of {name}')


if __name__ == '__main__':
  main()
