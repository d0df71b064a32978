"""The shipped modern recipes leave ssljax exactly: configs/bert_tiny.py, bert_cpu30.py and
gpt_tiny.py (tiny sizes, two steps) pretrain, export-hf writes ModernBERT and GPT-NeoX
folders, and transformers, sentence-transformers and lm-eval's `hf` model give
ssljax's numbers on them."""

import json

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
pytest.importorskip('lm_eval')
pytest.importorskip('accelerate')  # lm-eval's hf model needs it

from test_inference_harness import _lm_eval, _numbers, local_tasks_only, tasks  # noqa: E402,F401
from test_interop_modern import TOL, check_export, check_greedy  # noqa: E402

from ssljax import cli  # noqa: E402
from ssljax.inference import encoding, loading  # noqa: E402
from ssljax.pretrain import loop  # noqa: E402

from conftest import tiny_config  # noqa: E402

pytestmark = pytest.mark.slow  # two pretraining runs, lm-eval twice

PROMPTS = ['The quick brown', 'def f(x):', 'Python is', 'a']


def _pretrain_and_export(root, recipe, corpus_file, tokenizer_file):
  """(run folder, export folder) of `recipe` pretrained for two steps at tiny sizes."""
  config = tiny_config(corpus_file, f'configs/{recipe}.py',
                       **{'tokenizer.path': tokenizer_file, 'train.steps': 2,
                          'train.time_budget': 0.0})
  loop.pretrain(config, root / 'run')
  assert cli.main(['export-hf', str(root / 'run'), '--out', str(root / 'hf')]) == 0
  return root / 'run', root / 'hf'


@pytest.fixture(scope='module')
def bert_tiny(tmp_path_factory, corpus_file, tokenizer_file):
  return _pretrain_and_export(tmp_path_factory.mktemp('bert_tiny'), 'bert_tiny', corpus_file,
                              tokenizer_file)


@pytest.fixture(scope='module')
def bert_cpu30(tmp_path_factory, corpus_file, tokenizer_file):
  return _pretrain_and_export(tmp_path_factory.mktemp('bert_cpu30'), 'bert_cpu30', corpus_file,
                              tokenizer_file)


@pytest.fixture(scope='module')
def gpt_tiny(tmp_path_factory, corpus_file, tokenizer_file):
  return _pretrain_and_export(tmp_path_factory.mktemp('gpt_tiny'), 'gpt_tiny', corpus_file,
                              tokenizer_file)


@pytest.mark.parametrize('recipe, architecture', [('bert_tiny', 'ModernBertForMaskedLM'),
                                                  ('bert_cpu30', 'ModernBertForMaskedLM'),
                                                  ('gpt_tiny', 'GPTNeoXForCausalLM')])
def test_recipe_exports_with_the_same_logits(recipe, architecture, request, tmp_path):
  run, _ = request.getfixturevalue(recipe)
  diff = check_export(loading.load(run), tmp_path, architecture)
  print(recipe, 'pretrain -> export max abs logit diff', diff)
  assert diff < TOL


def test_encoder_export_in_sentence_transformers(bert_tiny):
  st = pytest.importorskip('sentence_transformers')
  run, exported = bert_tiny
  texts = PROMPTS + ['Héllo wörld: naïve café, résumé!']
  theirs = st.SentenceTransformer(str(exported), device='cpu').encode(texts, batch_size=2)
  ours = encoding.sentence_features(loading.load(run), texts, 'mean', batch_size=2)
  np.testing.assert_allclose(ours, theirs, atol=TOL)


def test_greedy_generation_equals_transformers(gpt_tiny):
  run, exported = gpt_tiny
  pre = loading.load(run)
  model = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
  declared = json.loads((exported / 'generation_config.json').read_text())
  assert declared['eos_token_id'] == pre.tokenizer.sep_id  # generation stops at end-of-text
  assert declared['bos_token_id'] == pre.tokenizer.sep_id  # as ssljax read it between texts
  check_greedy(pre, model, PROMPTS, steps=12)


def test_lm_eval_hf_on_the_export_gives_ssljax_numbers(gpt_tiny, tasks, tmp_path):  # noqa: F811
  run, exported = gpt_tiny
  ours, our_samples = _lm_eval('ssljax', f'checkpoint={run}', tasks, tmp_path / 'ssljax')
  theirs, their_samples = _lm_eval('hf', f'pretrained={exported}', tasks, tmp_path / 'hf')
  for kind in ('mc', 'ppl'):  # per request: (log-likelihood, is_greedy) per choice; per text
    for doc, responses in their_samples[kind].items():
      assert _numbers(our_samples[kind][doc]) == pytest.approx(_numbers(responses), abs=TOL)
  # Generated text: sentencepiece decodes a run of bare '▁' pieces to '', transformers'
  # converted tokenizer to spaces; the tokens are the same (see the greedy test above).
  text = lambda samples: {d: [[t.strip() for t in r] for r in rs] for d, rs in samples.items()}
  assert text(our_samples['gen']) == text(their_samples['gen'])
  assert ours['ssljax_mc']['acc,none'] == theirs['ssljax_mc']['acc,none']
