"""Hugging Face interop, checked against transformers itself.

For each architecture a tiny random model made by transformers (and a tokenizer trained
here, saved in the files that architecture ships) imports with the same token ids, hidden
states and logits, and exports to a folder that transformers loads with the same logits.
"""

import argparse
import json
import shutil

import jax
import numpy as np
import pytest
import sentencepiece as spm
from flax import nnx

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
import tokenizers  # noqa: E402  (transformers needs it)

from ssljax import models as model, pretrained, tokenizers as tokenizer_lib  # noqa: E402
from ssljax.cli import interop as hf_cli  # noqa: E402
from ssljax.data import corpus  # noqa: E402
from ssljax.errors import UserError  # noqa: E402
from ssljax.inference import encoding, loading  # noqa: E402
from ssljax.interop import huggingface as hf  # noqa: E402
from ssljax.pretrain import loop as train  # noqa: E402

from conftest import tiny_config  # noqa: E402

TOL = 1e-5
TEXTS = ['The quick brown fox jumps over the lazy dog.',
         'Héllo wörld: naïve café, résumé!',
         'def f(x): return x ** 2  # squares',
         'a',
         '日本語 and emoji 🤗 with averyveryverylongwordthatnobodyuses']
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def _documents():
  return [d for d in corpus.embedded_documents()[:60]]


def _bert(folder):
  wordpiece = tokenizers.BertWordPieceTokenizer(lowercase=True)
  wordpiece.train_from_iterator(_documents(), vocab_size=200, min_frequency=1)
  wordpiece.save_model(str(folder))  # vocab.txt, as BERT checkpoints ship it
  config = transformers.BertConfig(vocab_size=wordpiece.get_vocab_size(), **SIZES,
                                   max_position_embeddings=64)
  return transformers.BertForPreTraining(config)


def _byte_level_bpe(folder, specials):
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(_documents(), vocab_size=300, special_tokens=specials)
  bpe.save_model(str(folder))  # vocab.json + merges.txt
  return bpe.get_vocab_size()


def _roberta(folder):
  vocab = _byte_level_bpe(folder, ['<s>', '<pad>', '</s>', '<unk>', '<mask>'])
  config = transformers.RobertaConfig(vocab_size=vocab, **SIZES, max_position_embeddings=66,
                                      type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                                      eos_token_id=2)
  return transformers.RobertaForMaskedLM(config)


def _gpt2(folder):
  vocab = _byte_level_bpe(folder, ['<|endoftext|>'])
  config = transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4,
                                   n_positions=64, bos_token_id=0, eos_token_id=0)
  return transformers.GPT2LMHeadModel(config)


def _albert(folder):
  model = folder / 'spiece.model'
  lines = [line for d in _documents() for line in d.splitlines() if line.strip()]
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_prefix=str(folder / 'spiece'), vocab_size=200,
      hard_vocab_limit=False, pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece='<pad>',
      unk_piece='<unk>', control_symbols=['[CLS]', '[SEP]', '[MASK]'], minloglevel=2)
  vocab = spm.SentencePieceProcessor(model_file=str(model)).get_piece_size()
  config = transformers.AlbertConfig(vocab_size=vocab, embedding_size=16, **SIZES,
                                     max_position_embeddings=64)
  return transformers.AlbertForPreTraining(config)


MAKERS = {'bert': _bert, 'roberta': _roberta, 'albert': _albert, 'gpt2': _gpt2}


def save_random(make, folder):
  """(transformers model, tokenizer) of a tiny random model `make(folder)`, saved there."""
  torch.manual_seed(0)
  model = make(folder).eval()
  model.save_pretrained(folder)
  return model, transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope='module', params=list(MAKERS))
def made(request, tmp_path_factory):
  """(model type, folder, transformers model, transformers tokenizer) of a tiny model."""
  folder = tmp_path_factory.mktemp(request.param)
  return request.param, folder, *save_random(MAKERS[request.param], folder)


def _inputs(pre, texts):
  """Our token rows, padded: the batch for ssljax and (ids, mask) for transformers."""
  rows = encoding.token_rows(pre, texts)
  batch = encoding._batch(rows, len(rows), max(map(len, rows)), pre.tokenizer.pad_id)
  return batch, torch.tensor(batch['input_ids']), torch.tensor(batch['doc_ids'])


def _heads(pre, model_type, hidden):
  """The logits our model gives, named as transformers' outputs name them."""
  if model_type == 'gpt2':
    return {'logits': pre.model.lm_logits(hidden)}
  mlm = np.asarray(pre.model.mlm_logits(hidden))
  if model_type == 'roberta':
    return {'logits': mlm}
  sentence = 'seq_relationship_logits' if model_type == 'bert' else 'sop_logits'
  return {'prediction_logits': mlm, sentence: np.asarray(pre.model.sentence_logits(hidden))}


def _max_diff(ours, theirs, real_BxL=None):
  diff = np.abs(np.asarray(ours) - theirs.detach().numpy())
  if real_BxL is not None and diff.ndim == 3:
    diff = diff * real_BxL.numpy()[..., None]
  return float(diff.max())


def test_token_ids_match_transformers(made):
  model_type, folder, _, hf_tok = made
  pre = loading.load(folder)
  ours = [list(r) for r in encoding.token_rows(pre, TEXTS)]
  assert ours == hf_tok(TEXTS)['input_ids']
  assert pre.tokenizer.kind == 'hf'


def test_import_matches_transformers(made):
  model_type, folder, model, _ = made
  pre, report = hf.load_folder(folder)
  no_pooler = ['roberta.pooler.dense.weight', 'roberta.pooler.dense.bias']  # ForMaskedLM has none
  assert report.missing == (no_pooler if model_type == 'roberta' else [])
  assert report.unexpected == []
  assert pre.config.objective == {'bert': 'mlm_nsp', 'roberta': 'mlm', 'albert': 'mlm_sop',
                                  'gpt2': 'clm'}[model_type]
  batch, ids, real = _inputs(pre, TEXTS)
  with torch.no_grad():
    out = model(ids, attention_mask=real, output_hidden_states=True)
  hidden = pre.model(batch)
  diffs = {'hidden': _max_diff(hidden, out.hidden_states[-1], real)}
  diffs |= {k: _max_diff(v, out[k], real) for k, v in _heads(pre, model_type, hidden).items()}
  print(model_type, diffs)
  assert max(diffs.values()) < TOL, diffs


def test_export_reloads_in_transformers(made, tmp_path):
  model_type, folder, model, hf_tok = made
  hf.export(loading.load(folder), tmp_path)
  reloaded = type(model).from_pretrained(tmp_path).eval()
  base = transformers.AutoModel.from_pretrained(tmp_path).eval()
  ids = torch.tensor(hf_tok(TEXTS[:1])['input_ids'])
  with torch.no_grad():
    want, got = model(ids, output_hidden_states=True), reloaded(ids)
    hidden = base(ids).last_hidden_state
  logits = 'logits' if model_type in ('roberta', 'gpt2') else 'prediction_logits'
  assert _max_diff(got[logits], want[logits]) < TOL
  assert _max_diff(hidden, want.hidden_states[-1]) < TOL
  assert transformers.AutoTokenizer.from_pretrained(tmp_path)(TEXTS)['input_ids'] == \
      hf_tok(TEXTS)['input_ids']


def _parser():
  parser = argparse.ArgumentParser(prog='ssljax')
  hf_cli.add_commands(parser.add_subparsers(dest='command', required=True))
  return parser


def _run(*argv):
  args = _parser().parse_args(argv)
  args.run(args)


@pytest.fixture(scope='module')
def bert_folder(tmp_path_factory):
  folder = tmp_path_factory.mktemp('bert_src')
  torch.manual_seed(1)
  _bert(folder).save_pretrained(folder)
  return folder


def test_import_command_writes_a_checkpoint(bert_folder, tmp_path, capsys):
  _run('import-hf', str(bert_folder), '--out', str(tmp_path / 'ckpt'))
  assert 'checkpoints/0' in capsys.readouterr().out
  loaded = loading.load(tmp_path / 'ckpt')
  direct = loading.load(bert_folder)
  assert loaded.step == 0 and loaded.config.objective == 'mlm_nsp'
  assert loaded.tokenizer.encode(TEXTS)[0].tolist() == direct.tokenizer.encode(TEXTS)[0].tolist()
  batch = _inputs(direct, TEXTS)[0]
  np.testing.assert_array_equal(loaded.model(batch), direct.model(batch))
  with pytest.raises(UserError, match='already holds a run'):
    hf.import_folder(bert_folder, tmp_path / 'ckpt')


def test_missing_and_unexpected_tensors_are_listed(bert_folder, tmp_path):
  weights = hf.read_weights(bert_folder)
  weights.pop('cls.seq_relationship.weight')
  weights['cls.extra.weight'] = np.zeros(3, np.float32)
  shutil.copytree(bert_folder, tmp_path, dirs_exist_ok=True)
  hf.safetensors.numpy.save_file(weights, tmp_path / 'model.safetensors')
  _, report = hf.load_folder(tmp_path)
  assert report.missing == ['cls.seq_relationship.weight']
  assert report.unexpected == ['cls.extra.weight']


def test_non_finite_weights_are_refused_at_import_and_load(bert_folder, tmp_path):
  weights = hf.read_weights(bert_folder)
  weights['bert.encoder.layer.0.attention.self.query.weight'][0, :2] = [np.nan, np.inf]
  folder = tmp_path / 'src'
  shutil.copytree(bert_folder, folder)
  hf.safetensors.numpy.save_file(weights, folder / 'model.safetensors')
  with pytest.raises(UserError) as raised:
    hf.import_folder(folder, tmp_path / 'out')
  message = str(raised.value)
  assert '\n' not in message and message.startswith(f'{folder}: tensor bert.encoder.layer.0.')
  assert 'holds 2 non-finite values' in message
  assert not (tmp_path / 'out' / 'checkpoints').exists()  # nothing written: a rerun is free
  with pytest.raises(UserError, match='holds 2 non-finite values'):
    loading.load(folder)  # encode, probe and init_from read it through here


def test_bad_folders_say_what_is_wrong(bert_folder, tmp_path):
  with pytest.raises(UserError, match='nor a Hugging Face folder'):
    loading.load(tmp_path)
  (tmp_path / 'config.json').write_text(json.dumps({'model_type': 't5'}))
  with pytest.raises(UserError, match="model_type 't5'.*not supported"):
    hf.import_folder(tmp_path, tmp_path / 'out')
  shutil.copytree(bert_folder, tmp_path, dirs_exist_ok=True)
  weights = tmp_path / 'model.safetensors'
  weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
  with pytest.raises(UserError, match='model.safetensors is not a readable safetensors file'):
    loading.load(tmp_path)
  shutil.copy(bert_folder / 'model.safetensors', weights)
  config = json.loads((tmp_path / 'config.json').read_text())
  (tmp_path / 'config.json').write_text(json.dumps(config | {'intermediate_size': 38}))
  with pytest.raises(UserError, match=r'intermediate.dense.weight has shape \(37, 32\) but '
                     r'its config.json gives \(38, 32\)'):
    loading.load(tmp_path)


# ---------------------------------------------------------------------------------------
# Models made by ssljax: exported, they give the same logits in transformers.


def _ssljax_logits(pre, ids_BxL):
  batch = {'input_ids': ids_BxL, 'doc_ids': np.ones_like(ids_BxL),
           'segment_ids': np.zeros_like(ids_BxL),
           'positions': np.broadcast_to(np.arange(ids_BxL.shape[1]), ids_BxL.shape)}
  hidden = pre.model(batch)
  if pre.model_cfg.arch == 'gpt':
    return np.asarray(pre.model.lm_logits(hidden))
  return np.asarray(pre.model.mlm_logits(hidden))


def _check_export(pre, out):
  """Exports `pre`; transformers' head model and tokenizer reproduce ours."""
  hf.export(pre, out)
  architecture = json.loads((out / 'config.json').read_text())['architectures'][0]
  reloaded = getattr(transformers, architecture).from_pretrained(out).eval()
  texts = [' '.join(d.split()[:20]) for d in corpus.embedded_documents()[:4]] + TEXTS
  ours = [r.tolist() for r in encoding.token_rows(pre, texts)]
  their_tok = transformers.AutoTokenizer.from_pretrained(out)
  theirs_ids = their_tok(texts, truncation=True)
  assert theirs_ids['input_ids'] == ours  # both cut to the model's positions
  if architecture == 'GPT2LMHeadModel':  # generation and lm-eval stop at end-of-text
    assert their_tok.eos_token_id == reloaded.config.eos_token_id == pre.tokenizer.sep_id
  ids = np.asarray(ours[0])[None]
  with torch.no_grad():
    output = reloaded(torch.tensor(ids))
  theirs = output.logits if architecture == 'GPT2LMHeadModel' else output.prediction_logits
  diff = _max_diff(_ssljax_logits(pre, ids), theirs)
  assert diff < TOL, diff


@pytest.mark.parametrize('arch, extra', [
    ('bert', {}),
    ('albert', {'model.share_layers': True, 'model.embed_size': 16, 'objective': 'mlm_sop'}),
    ('albert', {'objective': 'mlm_sop'}),  # no projection (E = H): exported as the identity
    ('gpt', {'objective': 'clm', 'model.activation': 'gelu_tanh'}),
])
def test_ssljax_models_export(arch, extra, corpus_file, tokenizer_file, tmp_path):
  config = tiny_config(corpus_file, **{'model.arch': arch, **extra})
  tok = tokenizer_lib.load(tokenizer_file)
  model_cfg = model.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size)
  pre = pretrained.Pretrained(config, model_cfg, model.build(model_cfg, nnx.Rngs(3)), tok, 0)
  _check_export(pre, tmp_path)


@pytest.mark.slow
def test_bert_pretrained_by_ssljax_exports(corpus_file, tokenizer_file, tmp_path):
  train.pretrain(tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file,
                                             'train.steps': 2}), tmp_path / 'run')
  _run('export-hf', str(tmp_path / 'run'), '--out', str(tmp_path / 'hf'))
  assert (tmp_path / 'hf' / 'spiece.model').is_file()
  _check_export(loading.load(tmp_path / 'run'), tmp_path / 'hf')


@pytest.mark.slow
def test_pretraining_continues_from_an_import(bert_folder, corpus_file, tmp_path):
  _run('import-hf', str(bert_folder), '--out', str(tmp_path / 'imported'))
  config = tiny_config(corpus_file, **{'train.init_from': str(tmp_path / 'imported'),
                                       'train.steps': 2, 'optimizer.learning_rate': 1e-4})
  run = train.setup(config, tmp_path / 'run', init=loading.init_from(config))
  assert run.model_cfg.hidden_size == 32 and run.model_cfg.mlp_dim == 37
  source = loading.load(tmp_path / 'imported')
  start = jax.device_get(train.initial_state(run).params)
  jax.tree.map(np.testing.assert_array_equal, start, jax.device_get(
      nnx.to_pure_dict(nnx.state(source.model))))
  run.manager.close()
  final = train.pretrain(config, tmp_path / 'run', init=source)
  assert np.isfinite(final['loss'])
  trained = loading.load(tmp_path / 'run')
  assert trained.step == 2 and trained.tokenizer.kind == 'hf'
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                       jax.device_get(nnx.to_pure_dict(nnx.state(trained.model))), start)
  assert 0 < max(jax.tree.leaves(moved)) < 0.01
