"""The Python API a notebook uses: docs/python.md runs as written, and `from_pretrained`'s
logits, score and encode give what the model computes; `ssljax.finetune` takes keywords."""

import os
import pathlib
import re

import jax
import numpy as np
import pytest

import ssljax
from ssljax import tokenizers
from ssljax.adapt import api as adapt_api
from ssljax.errors import UserError
from ssljax.inference import encoding

from conftest import pretrained_run_config
from test_adapt_run import _sst2_rows

DOCS = pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'python.md'


@pytest.fixture(scope='module')
def gpt_run(corpus_file, tokenizer_file, tmp_path_factory):
  from ssljax.pretrain import loop as train
  path = tmp_path_factory.mktemp('gpt_run')
  train.pretrain(pretrained_run_config(corpus_file, tokenizer_file, **{
      'model.arch': 'gpt', 'objective': 'clm', 'mesh.data': 1, 'train.steps': 2}), path)
  return path


@pytest.fixture(scope='module')
def bert(pretrained_run):
  return ssljax.from_pretrained(pretrained_run)


@pytest.mark.slow
def test_the_docs_page_runs_as_written(pretrained_run, gpt_run, tmp_path, monkeypatch):
  (tmp_path / 'runs').mkdir()
  (tmp_path / 'runs' / 'bert_tiny').symlink_to(pretrained_run)
  (tmp_path / 'runs' / 'gpt_tiny').symlink_to(gpt_run)
  (tmp_path / 'GLUE' / 'SST-2').mkdir(parents=True)
  (tmp_path / 'GLUE' / 'SST-2' / 'train.tsv').write_text(_sst2_rows(32, 0))
  (tmp_path / 'GLUE' / 'SST-2' / 'dev.tsv').write_text(_sst2_rows(8, 1))
  monkeypatch.chdir(tmp_path)
  namespace: dict = {}
  blocks = re.findall(r'```python\n(.*?)```', DOCS.read_text(), re.S)
  assert len(blocks) >= 3
  for block in blocks:
    exec(compile(block, str(DOCS), 'exec'), namespace)  # noqa: S102  (the page's own code)
  logits, ids = namespace['logits'], namespace['ids']
  assert len(logits) == 1 and logits[0].shape == (len(ids), namespace['pre'].model_cfg.vocab_size)
  np.testing.assert_allclose(np.linalg.norm(namespace['features'], axis=1), 1, rtol=1e-5)
  assert namespace['log_p'].shape == (2,) and (namespace['log_p'] < 0).all()
  assert [p['label'] for p in namespace['predictions']] and all(
      p['label'] in ('negative', 'positive') for p in namespace['predictions'])
  assert 0 <= namespace['best'] <= 1
  assert os.path.isfile('out/sst2_model/meta.json') and os.path.isfile('out/ft/report.md')
  assert os.path.isfile('out/sst2_hf/config.json')
  again = ssljax.from_pretrained('out/sst2_model')
  assert again.predict(['a dull , tedious mess'], show_progress=False) == \
      namespace['model'].predict(['a dull , tedious mess'], show_progress=False)


def test_logits_are_the_mlm_head_at_each_token(bert):
  texts = ['the function returns a list', 'a']
  got = bert.logits(texts, show_progress=False)
  rows = bert.token_ids(texts)
  for text_rows, logits in zip(rows, got):
    batch = encoding._batch([text_rows], 1, len(text_rows), bert.tokenizer.pad_id)
    want = np.asarray(bert.model.mlm_logits(bert.model(batch)))[0]
    np.testing.assert_allclose(logits, want, atol=1e-5)


def test_score_is_the_sum_of_next_token_log_probabilities(gpt_run):
  gpt = ssljax.from_pretrained(gpt_run)
  text = 'the function returns a list'
  ids = [tokenizers.causal_start_id(gpt.tokenizer), *gpt.tokenizer.encode([text])[0]]
  logits = gpt.logits([text], show_progress=False)  # GPT reads the text without a start
  batch = encoding._batch([np.asarray(ids[:-1], np.int32)], 1, len(ids) - 1,
                          gpt.tokenizer.pad_id)
  logp = np.asarray(jax.nn.log_softmax(gpt.model.lm_logits(gpt.model(batch))))[0]
  want = sum(logp[i, t] for i, t in enumerate(ids[1:]))
  np.testing.assert_allclose(gpt.score([text], show_progress=False), [want], rtol=1e-5)
  assert logits[0].shape == (len(ids) - 1, gpt.model_cfg.vocab_size)


def test_an_encoder_cannot_score_and_inputs_must_be_texts(bert):
  with pytest.raises(UserError, match='score needs a causal LM'):
    bert.score(['a text'])
  with pytest.raises(UserError, match='takes a string or a list of strings'):
    bert.encode([1, 2])


def test_encode_normalises_the_features_encode_gives(bert):
  texts = ['the function returns a list', 'a module name']
  plain = bert.encode(texts, show_progress=False)
  np.testing.assert_allclose(plain, encoding.sentence_features(bert, texts), atol=1e-6)
  unit = bert.encode(texts, normalize=True, show_progress=False)
  np.testing.assert_allclose(unit, plain / np.linalg.norm(plain, axis=1, keepdims=True),
                             atol=1e-6)


def test_repr_is_one_short_line(bert):
  text = repr(bert)
  assert '\n' not in text and len(text) < 160
  assert text.startswith('ssljax bert model: 2 layers, hidden 32') and 'step 6' in text


def test_keyword_settings_are_set_items():
  assert adapt_api.overrides({'data_dir': 'GLUE', 'lr': 1e-4, 'epochs': 2, 'seeds': 1,
                              'probe': {'layer': 2}}) == [
      'data_dir=GLUE', 'finetune.lr=0.0001', 'finetune.epochs=2', 'seeds=1', 'probe.layer=2']
  with pytest.raises(UserError, match='learning_rate'):
    ssljax.finetune('nowhere', task='sst2', learning_rate=1e-4)


def test_encode_and_the_adaptation_commands_read_a_fine_tuned_model(bert, tmp_path):
  """A fine-tuned model/ folder is a checkpoint too: its model without the head."""
  from flax import nnx

  from ssljax import cli
  from ssljax.adapt import finetune
  from ssljax.tasks import readers
  tuned = finetune.Tuned(bert.model, readers.GLUE['sst2'], 'cls', rngs=nnx.Rngs(0))
  settings = type('S', (), {'pooling': 'cls', 'head': 'linear', 'max_len': 32, 'doc_stride': 8})
  finetune.save(tmp_path / 'model', nnx.to_pure_dict(nnx.state(tuned)), bert.model_cfg,
                readers.GLUE['sst2'], settings, bert.tokenizer)
  loaded = adapt_api.load_model(tmp_path / 'model')
  assert loaded.model_cfg == bert.model_cfg and loaded.tokenizer.kind == bert.tokenizer.kind
  (tmp_path / 'in.txt').write_text('the function returns a list\na module name\n')
  assert cli.main(['encode', '--checkpoint', str(tmp_path / 'model'), '--input',
                   str(tmp_path / 'in.txt'), '--output', str(tmp_path / 'out.npy'),
                   '--normalize']) == 0
  want = encoding.sentence_features(bert, ['the function returns a list', 'a module name'],
                                    normalize=True)
  np.testing.assert_allclose(np.load(tmp_path / 'out.npy'), want, atol=1e-6)
  assert repr(ssljax.from_pretrained(tmp_path / 'model')).startswith(
      'ssljax fine-tuned bert (2 layers, hidden 32, pooling cls): sst2 classification')
