"""ModernBERT, Llama and GPT-NeoX interop, checked against transformers itself.

A tiny random model of each family made by transformers imports with the same logits on a
padded batch; a random ssljax model with the matching options exports to a folder that
AutoModelForMaskedLM / AutoModelForCausalLM and AutoTokenizer load with the same logits;
a model with no exact twin is one line naming the settings to change.
"""

import json

import jax
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
import tokenizers  # noqa: E402  (transformers needs it)
from test_interop_huggingface import TEXTS, _documents, _inputs, save_random  # noqa: E402

from ssljax import models, pretrained, tokenizers as tokenizer_lib  # noqa: E402
from ssljax.errors import UserError  # noqa: E402
from ssljax.inference import encoding, generation, loading  # noqa: E402
from ssljax.interop import huggingface as hf  # noqa: E402

from conftest import tiny_config  # noqa: E402

TOL = 1e-4
SIZES = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=24,
             max_position_embeddings=64)


def _save_tokenizer(folder, tok, **specials):
  transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **specials).save_pretrained(folder)


def _wordpiece(folder) -> int:
  wordpiece = tokenizers.BertWordPieceTokenizer(lowercase=True)
  wordpiece.train_from_iterator(_documents(), vocab_size=200, min_frequency=1)
  wordpiece.post_processor = tokenizers.processors.BertProcessing(
      ('[SEP]', wordpiece.token_to_id('[SEP]')), ('[CLS]', wordpiece.token_to_id('[CLS]')))
  _save_tokenizer(folder, wordpiece._tokenizer, unk_token='[UNK]', cls_token='[CLS]',
                  sep_token='[SEP]', pad_token='[PAD]', mask_token='[MASK]')
  return wordpiece.get_vocab_size()


def _bpe(folder, bos='<|endoftext|>') -> int:
  """Byte-level BPE with <|endoftext|> as id 0 and `bos` (the same, or a token of its own
  at id 1, as Llama's <s>)."""
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(_documents(), vocab_size=300,
                          special_tokens=list(dict.fromkeys(['<|endoftext|>', bos])))
  _save_tokenizer(folder, bpe._tokenizer, bos_token=bos, eos_token='<|endoftext|>')
  return bpe.get_vocab_size()


def _modernbert(folder, bias=False):
  vocab = _wordpiece(folder)
  config = transformers.ModernBertConfig(
      vocab_size=vocab, **SIZES, global_attn_every_n_layers=1, pad_token_id=0,
      cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3, norm_bias=bias,
      attention_bias=bias, mlp_bias=bias, classifier_bias=bias, decoder_bias=bias,
      global_rope_theta=1000.0, initializer_range=0.2)
  return transformers.ModernBertForMaskedLM(config)


def _llama(folder, tied=False, bos='<|endoftext|>'):
  vocab = _bpe(folder, bos)
  config = transformers.LlamaConfig(
      vocab_size=vocab, **SIZES, num_key_value_heads=2, rope_theta=500.0,
      bos_token_id=0 if bos == '<|endoftext|>' else 1,
      eos_token_id=0, tie_word_embeddings=tied, initializer_range=0.2, rms_norm_eps=1e-5)
  return transformers.LlamaForCausalLM(config)


def _gpt_neox(folder):
  vocab = _bpe(folder)
  config = transformers.GPTNeoXConfig(
      vocab_size=vocab, **SIZES, use_parallel_residual=False, rotary_pct=1.0,
      hidden_act='gelu', bos_token_id=0, eos_token_id=0, initializer_range=0.2)
  return transformers.GPTNeoXForCausalLM(config)


MAKERS = {'modernbert': _modernbert, 'modernbert_biases': lambda f: _modernbert(f, bias=True),
          'llama': _llama, 'llama_tied': lambda f: _llama(f, tied=True),
          'gpt_neox': _gpt_neox}


@pytest.fixture(scope='module', params=list(MAKERS))
def made(request, tmp_path_factory):
  """(folder, transformers model, transformers tokenizer) of a tiny random model."""
  folder = tmp_path_factory.mktemp(request.param)
  return folder, *save_random(MAKERS[request.param], folder)


def _logits(pre, batch):
  hidden = pre.model(batch)
  if pre.model_cfg.arch == 'gpt':
    return np.asarray(pre.model.lm_logits(hidden))
  return np.asarray(pre.model.mlm_logits(hidden))


def _diff(ours, theirs, real):
  """Max abs difference over the real (not padding) positions."""
  return float((np.abs(ours - theirs.detach().numpy()) * real.numpy()[..., None]).max())


def test_import_matches_transformers(made):
  folder, model, hf_tok = made
  pre, report = hf.load_folder(folder)
  assert report.missing == [] and report.unexpected == []
  ours = [list(r) for r in encoding.token_rows(pre, TEXTS)]
  assert ours == hf_tok(TEXTS)['input_ids']
  batch, ids, real = _inputs(pre, TEXTS)
  assert not real.all()  # padded
  with torch.no_grad():
    theirs = model(ids, attention_mask=real).logits
  diff = _diff(_logits(pre, batch), theirs, real)
  print(folder.name, 'import max abs logit diff', diff)
  assert diff < TOL


def test_import_then_export_gives_the_same_tensors(made, tmp_path):
  folder, model, _ = made
  hf.export(loading.load(folder), tmp_path)
  reloaded = type(model).from_pretrained(tmp_path).eval()
  ids = torch.tensor([[5, 9, 17, 30, 2, 8]])
  with torch.no_grad():
    assert _diff(reloaded(ids).logits.numpy(), model(ids).logits,
                 torch.ones_like(ids)) < TOL


def test_imported_llama_generates_like_transformers(tmp_path):
  """An imported Llama-family folder is a causal LM like any other: greedy generation
  equals transformers' on the folder itself."""
  torch.manual_seed(1)
  model = _llama(tmp_path).eval()
  model.save_pretrained(tmp_path)
  ours = check_greedy(loading.load(tmp_path), model, ['The quick brown', 'def f(x):', 'a'])
  assert len(set(ours[0].tolist())) > 1  # not one token over and over


def check_greedy(pre, model, prompts, steps=10):
  """ssljax's greedy tokens after each prompt equal transformers' `generate` (with the
  eos id the folder declares); returns ours."""
  rows = generation.prompt_rows(pre, prompts)
  ours = generation.generate_ids(pre, rows, max_new_tokens=steps, batch_size=2)
  for row, new in zip(rows, ours):
    with torch.no_grad():
      out = model.generate(torch.tensor(row[None].astype(np.int64)), do_sample=False,
                           max_new_tokens=steps)
    assert out[0, len(row):].tolist() == new.tolist()
  return ours


# (options for tiny_config, the family the export must be)
OURS = {
    'modernbert': ({'model.pre_ln': True, 'model.positions': 'rope',
                    'model.activation': 'geglu', 'model.first_attention_norm': False,
                    'model.use_bias': False, 'model.rope_base': 500.0, 'objective': 'mlm'},
                   'ModernBertForMaskedLM'),
    'modernbert_nsp': ({'model.pre_ln': True, 'model.positions': 'rope',
                        'model.activation': 'geglu', 'model.first_attention_norm': False},
                       'ModernBertForMaskedLM'),
    'llama': ({'model.arch': 'gpt', 'objective': 'clm', 'model.positions': 'rope',
               'model.norm': 'rms', 'model.activation': 'swiglu', 'model.use_bias': False,
               'model.layer_norm_eps': 1e-6, 'model.tie_embeddings': False},
              'LlamaForCausalLM'),
    'gpt_neox': ({'model.arch': 'gpt', 'objective': 'clm', 'model.positions': 'rope',
                  'model.activation': 'gelu_tanh', 'model.layer_norm_eps': 1e-5},
                 'GPTNeoXForCausalLM'),
}


def _random_pre(corpus_file, tokenizer_file, options, seed=3, **extra):
  config = tiny_config(corpus_file, **options, **extra)
  tok = tokenizer_lib.load(tokenizer_file)
  model_cfg = models.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size)
  module = models.build(model_cfg, nnx.Rngs(seed))
  nnx.update(module, _bumped(nnx.to_pure_dict(nnx.state(module)), seed))
  return pretrained.Pretrained(config, model_cfg, module, tok, 0)


def _bumped(params, seed):
  """Norms and biases lifted off 1 and 0 (and segments off 0.02) by noise, so that a
  misplaced norm or bias shows in the logits."""
  rng = np.random.default_rng(seed)

  def bump(path, value):
    names = '.'.join(map(str, path))
    if names.endswith(('scale', 'bias')) or 'segment' in names:
      return np.asarray(value) + rng.normal(0, 0.3, np.shape(value)).astype(np.float32)
    return value

  return jax.tree_util.tree_map_with_path(
      lambda p, v: bump([getattr(k, 'key', k) for k in p], v), params)


def check_export(pre, out, architecture=None):
  """Exports `pre`; transformers' Auto classes and tokenizer reproduce ours on a padded
  batch. Returns the max abs logit difference."""
  hf.export(pre, out)
  config = json.loads((out / 'config.json').read_text())
  if architecture:
    assert config['architectures'] == [architecture]
  auto = (transformers.AutoModelForCausalLM if pre.model_cfg.arch == 'gpt'
          else transformers.AutoModelForMaskedLM)
  reloaded = auto.from_pretrained(out).eval()
  their_tok = transformers.AutoTokenizer.from_pretrained(out)
  texts = TEXTS + [' '.join(d.split()[:20]) for d in _documents()[:3]]
  assert their_tok(texts, truncation=True)['input_ids'] == [
      r.tolist() for r in encoding.token_rows(pre, texts)]
  batch, ids, real = _inputs(pre, texts)
  with torch.no_grad():
    theirs = reloaded(ids, attention_mask=real).logits
  return _diff(_logits(pre, batch), theirs, real)


@pytest.mark.parametrize('name', list(OURS))
def test_ssljax_models_export(name, corpus_file, tokenizer_file, tmp_path):
  options, architecture = OURS[name]
  diff = check_export(_random_pre(corpus_file, tokenizer_file, options), tmp_path, architecture)
  print(name, 'export max abs logit diff', diff)
  assert diff < TOL


@pytest.mark.parametrize('options, message', [
    ({'model.pre_ln': True, 'model.positions': 'rope'},
     r'this bert model \(model.activation=gelu, model.first_attention_norm=True\) has no '
     r'exact Hugging Face twin: ModernBERT needs model.activation=geglu, '
     r'model.first_attention_norm=False$'),
    ({'model.arch': 'gpt', 'objective': 'clm', 'model.positions': 'rope', 'model.norm': 'rms'},
     r'\(model.activation=gelu\) .*Llama needs model.activation=swiglu$'),
    ({'model.arch': 'gpt', 'objective': 'clm', 'model.positions': 'rope',
      'model.use_bias': False},
     r'\(model.use_bias=False\) .*GPT-NeoX needs model.use_bias=True$'),
    ({'model.use_bias': False}, r'BERT needs model.use_bias=True$'),
])
def test_no_twin_is_one_line(options, message, corpus_file, tokenizer_file, tmp_path):
  with pytest.raises(UserError, match=message):
    hf.export(_random_pre(corpus_file, tokenizer_file, options), tmp_path)


@pytest.mark.parametrize('maker, change, message', [
    (_modernbert, {'global_attn_every_n_layers': 3, 'layer_types': None},
     r'layers \[1, 2\] attend to a local window \(local_attention=128\); ssljax attends '
     'globally in every layer: import a model with global_attn_every_n_layers=1'),
    (_modernbert, {'decoder_bias': True}, 'differ between layers; ssljax has all of them or none'),
    (_gpt_neox, {'use_parallel_residual': True}, 'use_parallel_residual=True is not supported'),
    (_llama, {'rope_parameters': {'rope_type': 'linear', 'factor': 2.0, 'rope_theta': 1e4}},
     "rope_type 'linear' is not supported"),
])
def test_what_import_cannot_reproduce_is_one_line(maker, change, message, tmp_path):
  torch.manual_seed(0)
  maker(tmp_path).save_pretrained(tmp_path)
  config = json.loads((tmp_path / 'config.json').read_text())
  (tmp_path / 'config.json').write_text(json.dumps(config | change))
  with pytest.raises(UserError, match=message):
    loading.load(tmp_path)


@pytest.mark.parametrize('method, options', [
    ('probe', ['probe.kind=ridge']),
    ('finetune', ['finetune.epochs=2', 'finetune.min_steps=0', 'finetune.lr=1e-3', 'batch_size=8',
                  'init=both'])])
def test_an_imported_llama_probes_and_finetunes(method, options, tmp_path):
  """An imported Llama-family folder adapts like an ssljax checkpoint: `ssljax probe` and
  `ssljax finetune` (pretrained and from scratch) run on it and write their results."""
  from ssljax import cli  # pylint: disable=g-import-not-at-top

  from test_adapt_run import _sst2_rows  # pylint: disable=g-import-not-at-top
  torch.manual_seed(2)
  _llama(tmp_path / 'llama').save_pretrained(tmp_path / 'llama')
  for split, (count, offset) in {'train': (32, 0), 'dev': (12, 1)}.items():
    (tmp_path / 'glue' / 'SST-2').mkdir(parents=True, exist_ok=True)
    (tmp_path / 'glue' / 'SST-2' / f'{split}.tsv').write_text(_sst2_rows(count, offset))
  argv = [method, '--checkpoint', tmp_path / 'llama', '--task', 'sst2', '--data-dir',
          tmp_path, '--workdir', tmp_path / 'out', '--set', 'max_len=32', '--set', 'seeds=1',
          *[a for o in options for a in ('--set', o)]]
  assert cli.main([str(a) for a in argv]) == 0
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert results['examples'] == {'train': 32, 'dev': 12}
  groups = ['pretrained', 'scratch'] if method == 'finetune' else ['pretrained']
  for group in groups:
    assert 0.0 <= results['metrics'][group]['dev']['accuracy']['mean'] <= 1.0
