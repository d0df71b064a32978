"""A key is written once: its default, values and meaning live in the schema (config.Config,
adapt.settings.Settings), the docs' key tables are generated from it, and one generic check
enforces every constraint."""

import dataclasses
import importlib.util
import math
import pathlib

import pytest

from ssljax import config, models, schema
from ssljax.adapt import settings
from ssljax.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _docs_tables():
  spec = importlib.util.spec_from_file_location('docs_tables', ROOT / 'scripts/docs_tables.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('doc', ['docs/config.md', 'docs/adaptation.md'])
def test_the_docs_key_tables_are_the_schemas(doc):
  tables = _docs_tables()
  text = (ROOT / doc).read_text()
  assert tables.rewritten(text, tables.TABLES[doc]) == text, (
      f'{doc} differs from the schema: run python scripts/docs_tables.py')
  for name, _ in schema.fields(tables.TABLES[doc]):
    assert f'| `{name}` |' in text


def test_every_key_has_a_doc_and_a_default_of_its_type():
  for cls in (config.Config, settings.Settings):
    for name, f in schema.fields(cls):
      assert f.metadata['doc'], name
      assert isinstance(f.default, eval(f.type) if isinstance(f.type, str) else f.type), name


def test_the_model_sections_defaults_are_the_modules():
  """models.ModelConfig is config.Model: the same fields and defaults, written once."""
  assert issubclass(models.ModelConfig, config.Model)
  assert ([(f.name, f.default) for f in dataclasses.fields(models.ModelConfig)]
          == [(f.name, f.default) for f in dataclasses.fields(config.Model)])
  assert models.ModelConfig.from_config(config.base().model) == models.ModelConfig()


@pytest.mark.parametrize('name, value, message', [
    ('optimizer.b2', 1.0, r'optimizer.b2=1.0 must lie in \[0, 1\)'),
    ('optimizer.eps', 0.0, r'optimizer.eps=0.0 must lie in \(0, inf\)'),
    ('mlm.mask_fraction', 1.5, r'mlm.mask_fraction=1.5 must lie in \[0, 1\]'),
    ('mlm.rate', math.nan, r'mlm.rate=nan must lie in \(0, 1\)'),
    ('train.extend', 'later', "train.extend='later' is not one of , decay, rewarm"),
])
def test_one_check_reads_each_keys_constraint(name, value, message):
  field = schema.field(config.Config, name)
  with pytest.raises(UserError, match=message):
    schema.check_value(name, value, field)
  schema.check_value(name, field.default, field)  # the default always passes
