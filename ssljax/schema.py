"""Settings as frozen dataclasses: each field holds its default, a one-line doc and its
constraint, so a key is written once. One generic check reads the constraints; the docs'
key tables are generated from the same fields. Runs still see ml_collections ConfigDicts
(built from the dataclasses), so config files and `--set` work as they always did.
"""

import dataclasses
from typing import Any

import ml_collections

from ssljax.errors import UserError


def key(default, doc: str, *, choices=(), at_least=None, above=None, at_most=None,
        below=None) -> Any:
  """A setting: its default, what it means, and the values it may take (`choices`, or the
  bounds of an interval: `at_least`/`above` below it, `at_most`/`below` above it)."""
  return dataclasses.field(default=default, metadata=dict(
      doc=doc, choices=tuple(choices), at_least=at_least, above=above, at_most=at_most,
      below=below))


def section(cls) -> Any:
  """A nested group of settings (`model`, `train`, ...), itself such a dataclass; its
  docstring says what the group is for."""
  return dataclasses.field(default_factory=cls, metadata=dict(doc=cls.__doc__, section=cls))


def interval(field: dataclasses.Field) -> str:
  """'[0, 1)'-style text of a field's bounds; '' where it has none."""
  m = field.metadata
  if all(m.get(b) is None for b in ('at_least', 'above', 'at_most', 'below')):
    return ''
  low = (f'[{m["at_least"]}' if m['at_least'] is not None else
         f'({m["above"]}' if m['above'] is not None else '(-inf')
  high = (f'{m["at_most"]}]' if m['at_most'] is not None else
          f'{m["below"]})' if m['below'] is not None else 'inf)')
  return f'{low}, {high}'


def check_value(name: str, value, field: dataclasses.Field) -> None:
  """One line naming the key, its value and what it may be, when `value` breaks `field`'s
  constraint. NaN lies in no interval (every comparison with it is false)."""
  m = field.metadata
  if m.get('choices') and value not in m['choices']:
    raise UserError(f'{name}={value!r} is not one of {", ".join(map(str, m["choices"]))}')
  inside = ((m.get('at_least') is None or value >= m['at_least'])
            and (m.get('above') is None or value > m['above'])
            and (m.get('at_most') is None or value <= m['at_most'])
            and (m.get('below') is None or value < m['below']))
  if not inside:
    raise UserError(f'{name}={value} must lie in {interval(field)}')


def fields(cls, prefix: str = ''):
  """(dotted name, field) of every setting of `cls`, sections expanded, in order."""
  for f in dataclasses.fields(cls):
    if 'section' in f.metadata:
      yield from fields(f.metadata['section'], f'{prefix}{f.name}.')
    else:
      yield prefix + f.name, f


def field(cls, name: str) -> dataclasses.Field:
  """The field of the dotted setting `name`."""
  return dict(fields(cls))[name]


def check(cls, values) -> None:
  """Every setting of `values` (a ConfigDict shaped like `cls`) against its constraint."""
  for name, f in fields(cls):
    node = values
    for part in name.split('.'):
      node = node[part]
    check_value(name, node, f)


def config_dict(cls) -> ml_collections.ConfigDict:
  """The defaults of `cls` as a ConfigDict, sections nested."""
  return ml_collections.ConfigDict(
      {f.name: config_dict(f.metadata['section']) if 'section' in f.metadata else f.default
       for f in dataclasses.fields(cls)})


def markdown(cls) -> str:
  """The key table of docs/config.md and docs/adaptation.md: key, default, constraint, doc."""
  lines = ['| key | default | values | meaning |', '| --- | --- | --- | --- |']
  for name, f in fields(cls):
    values = (', '.join(f'`{c}`' if c != '' else "`''`" for c in f.metadata['choices'])
              or interval(f))
    default = f'`{f.default!r}`' if isinstance(f.default, str) else f'`{f.default}`'
    doc = f.metadata['doc'].replace('|', '\\|')
    lines.append(f'| `{name}` | {default} | {values} | {doc} |')
  return '\n'.join(lines) + '\n'
