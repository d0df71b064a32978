"""Fine-tuned models out to Hugging Face: `ssljax export-hf WORKDIR/model` writes a folder
that transformers' task class loads with the same outputs, and whose pipeline predicts what
`ssljax predict` predicts (a GPT's sequence classifier included: bias-free head, last real
token, end-of-text tokens added); a head transformers cannot reproduce is refused in one
line."""

import argparse
import json

import jax
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from ssljax import models, tokenizers as tokenizer_lib  # noqa: E402
from ssljax.adapt import export, finetune, predict  # noqa: E402
from ssljax.cli import interop as hf_cli  # noqa: E402
from ssljax.errors import UserError  # noqa: E402
from ssljax.interop import huggingface  # noqa: E402
from ssljax.tasks import task_rows  # noqa: E402
from ssljax.tasks.readers import Example  # noqa: E402

from adapt_helpers import MRPC, SPECS, SQUAD, _settings, _task  # noqa: E402
from conftest import tiny_config  # noqa: E402

TOL = 1e-5
FAMILIES = {
    'bert': {},
    'roberta': {'model.position_offset': 2, 'model.max_len': 34},
    'albert': {'model.arch': 'albert', 'model.share_layers': True, 'model.embed_size': 16,
               'objective': 'mlm_sop'},
    'gpt2': {'model.arch': 'gpt', 'objective': 'clm', 'model.activation': 'gelu_tanh'},
    'gpt_neox': {'model.arch': 'gpt', 'objective': 'clm', 'model.positions': 'rope',
                 'model.activation': 'gelu_tanh', 'model.layer_norm_eps': 1e-5},
    'llama': {'model.arch': 'gpt', 'objective': 'clm', 'model.positions': 'rope',
              'model.norm': 'rms', 'model.activation': 'swiglu', 'model.use_bias': False,
              'model.layer_norm_eps': 1e-6, 'model.tie_embeddings': False},
    'modernbert': {'model.pre_ln': True, 'model.positions': 'rope', 'model.activation': 'geglu',
                   'model.first_attention_norm': False, 'objective': 'mlm',
                   'model.type_vocab_size': 0},  # as an imported ModernBERT: no token types
}
# pretrained by ssljax with segment embeddings (the demo's): single texts export exactly
FAMILIES['modernbert_segments'] = FAMILIES['modernbert'] | {'model.type_vocab_size': 2}
AUTO = {'classification': 'AutoModelForSequenceClassification',
        'regression': 'AutoModelForSequenceClassification',
        'tokens': 'AutoModelForTokenClassification', 'span': 'AutoModelForQuestionAnswering'}
TEXTS = ['the function returns a list of values', 'a module name', 'python is an object',
         'this file is for the value of it']
DECODERS = ('gpt2', 'gpt_neox', 'llama')


def _bumped(params, seed):
  """Every parameter moved by noise, so that a misplaced norm, bias or head shows."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda v: np.asarray(v) + rng.normal(0, 0.2, np.shape(v)).astype(np.float32), params)


def _saved(family, spec, pooling, corpus_file, tokenizer_file, folder, bias=None, head=None):
  """A fine-tuned model folder as `ssljax finetune` saves it, with random weights; `bias`:
  `Tuned`'s (0.0: a head bias of zeros); `head`: finetune.head, by default the family's."""
  config = tiny_config(corpus_file, **FAMILIES[family])
  tok = tokenizer_lib.load(tokenizer_file)
  model_cfg = models.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size)
  head = head or ('mlp' if family.startswith('modernbert') else 'linear')
  tuned = finetune.Tuned(models.build(model_cfg, nnx.Rngs(3)), spec, pooling,
                         rngs=nnx.Rngs(4), bias=None if bias is None else True,
                         mlp=head == 'mlp')
  params = _bumped(nnx.to_pure_dict(nnx.state(tuned)), 5)
  if bias == 0.0:
    params['head']['bias'] = np.zeros_like(params['head']['bias'])
  finetune.save(folder, params, model_cfg, spec, _settings(pooling=pooling, head=head), tok)
  return folder


def _pooling(family):
  """The sequence pooling whose classifier transformers has for `family`."""
  return 'last' if family in DECODERS else 'first' if family.startswith('modernbert') else 'cls'


def _export(model_dir, out):
  parser = argparse.ArgumentParser(prog='ssljax')
  hf_cli.add_commands(parser.add_subparsers(dest='command', required=True))
  args = parser.parse_args(['export-hf', str(model_dir), '--out', str(out)])
  args.run(args)
  return out


def _theirs(hf_model, batch, encoder):
  """transformers' outputs on the batch's ids, padded with the config's pad token as its
  tokenizer pads."""
  real = batch['doc_ids'] > 0
  ids = np.where(real, batch['input_ids'], hf_model.config.pad_token_id)
  inputs = {'input_ids': torch.tensor(ids, dtype=torch.long),
            'attention_mask': torch.tensor(real, dtype=torch.long)}
  if encoder and hf_model.config.model_type != 'modernbert':
    inputs['token_type_ids'] = torch.tensor(batch['segment_ids'], dtype=torch.long)
  with torch.no_grad():
    out = hf_model(**inputs)
  if hasattr(out, 'start_logits'):
    return np.stack([out.start_logits.numpy(), out.end_logits.numpy()], axis=-1)
  return out.logits.numpy()


@pytest.mark.parametrize('family, spec', [
    ('bert', SPECS['classification']), ('bert', MRPC), ('bert', SPECS['regression']),
    ('bert', SPECS['tokens']), ('bert', SQUAD),
    ('roberta', SPECS['classification']), ('roberta', SPECS['tokens']),
    ('albert', SPECS['regression']), ('albert', SQUAD),
    ('gpt2', SPECS['tokens']), ('gpt_neox', SQUAD), ('llama', SPECS['tokens']),
    ('modernbert', SPECS['classification']), ('modernbert', SPECS['tokens']),
    ('modernbert', SQUAD), ('modernbert-mean', SPECS['regression']),
    ('modernbert_segments', SPECS['tokens']),
] + [(family, SPECS[kind]) for family in DECODERS for kind in ('classification', 'regression')])
def test_transformers_gives_the_fine_tuned_outputs(family, spec, corpus_file, tokenizer_file,
                                                   tmp_path, capsys):
  family, _, pooling = family.partition('-')
  model_dir = _saved(family, spec, pooling or _pooling(family), corpus_file, tokenizer_file,
                     tmp_path / 'model')
  out = _export(model_dir, tmp_path / 'hf')
  config = json.loads((out / 'config.json').read_text())
  assert config['architectures'][0] in capsys.readouterr().out
  hf_model = getattr(transformers, AUTO[spec.kind]).from_pretrained(out).eval()
  assert type(hf_model).__name__ == config['architectures'][0]
  if spec.kind in ('classification', 'tokens'):
    assert hf_model.config.id2label == dict(enumerate(spec.labels))
  if spec.kind == 'regression':
    assert hf_model.config.problem_type == 'regression' and hf_model.config.num_labels == 1

  tuned, _, _, tok = finetune.load(model_dir)
  examples = _task(spec.kind, 6, 1) if spec.kind == 'span' or not spec.pair else [
      Example(text=a, text_b=b, label=0) for a, b in zip(TEXTS, TEXTS[1:])]
  rows = task_rows.build(tok, spec, examples, 32, 8)
  batch = {k: v[:len(rows)] for k, v in task_rows.gather(rows, np.arange(len(rows))).items()}
  assert len(set(batch['doc_ids'].sum(axis=1))) > 1  # padded rows of different lengths
  ours = np.asarray(tuned(batch))
  theirs = _theirs(hf_model, batch, tuned.model.cfg.arch != 'gpt')
  if ours.ndim == 3:  # per position: padding is no output
    real = (batch['doc_ids'] > 0)[..., None]
    ours, theirs = ours * real, theirs * real
  diff = float(np.abs(ours - theirs).max())
  assert diff < TOL, diff
  assert np.abs(ours).max() > 0.1  # the head says something


@pytest.mark.parametrize('family, spec', [
    ('bert', SPECS['classification']), ('roberta', SPECS['regression']),
    ('albert', SPECS['classification']), ('modernbert-mean', SPECS['classification']),
] + [(family, SPECS[kind]) for family in DECODERS for kind in ('classification', 'regression')])
def test_the_pipeline_predicts_what_ssljax_predict_does(family, spec, corpus_file,
                                                        tokenizer_file, tmp_path):
  """In batches of 2 texts of different lengths: the tokenizer pads the shorter one."""
  family, _, pooling = family.partition('-')
  model_dir = _saved(family, spec, pooling or _pooling(family), corpus_file, tokenizer_file,
                     tmp_path / 'model')
  out = _export(model_dir, tmp_path / 'hf')
  ours = predict.predict(model_dir, examples=[Example(text=t) for t in TEXTS])
  classify = transformers.pipeline('text-classification', model=str(out), batch_size=2)
  if spec.kind == 'regression':
    theirs = classify(TEXTS, function_to_apply='none')
    assert [p['label'] for p in theirs] == [spec.name] * len(TEXTS)
    np.testing.assert_allclose([p['score'] for p in theirs], [p['score'] for p in ours],
                               atol=TOL)
    return
  theirs = classify(TEXTS, top_k=None)
  for mine, their in zip(ours, theirs):
    assert max(their, key=lambda p: p['score'])['label'] == mine['label']
    assert {p['label']: round(p['score'], 5) for p in their} == pytest.approx(
        mine['probabilities'], abs=TOL)


@pytest.mark.parametrize('family, spec, pooling, bias, head, why', [
    ('bert', SPECS['classification'], 'mean', None, None, 'pooling=mean.*--set pooling=cls'),
    ('gpt2', SPECS['classification'], 'mean', None, None,
     'GPT2ForSequenceClassification reads the last token.*--set pooling=last'),
    ('llama', SPECS['regression'], 'last', True, None,  # saved before the head lost its bias
     'has a bias.*LlamaForSequenceClassification scores without one: fine-tune again'),
    ('modernbert', SPECS['tokens'], 'cls', None, 'linear',
     'ModernBertPredictionHead.*--set finetune.head=mlp'),
    ('modernbert', SPECS['classification'], 'cls', None, None,
     'pooling=cls.*mean over the real tokens or .*first token.*--set pooling=mean'),
    ('bert', SPECS['tokens'], 'cls', None, 'mlp',
     'finetune.head=mlp.*BertForTokenClassification has one linear layer'),
    ('modernbert_segments', SQUAD, 'cls', None, None,
     'ModernBERT has no token types.*segment 1.*model.type_vocab_size=0'),
])
def test_heads_without_an_exact_twin_are_refused(family, spec, pooling, bias, head, why,
                                                 corpus_file, tokenizer_file, tmp_path):
  model_dir = _saved(family, spec, pooling, corpus_file, tokenizer_file, tmp_path / 'model',
                     bias, head)
  with pytest.raises(UserError, match=why):
    _export(model_dir, tmp_path / 'hf')
  assert not (tmp_path / 'hf').exists()



def test_a_decoder_head_saved_with_a_zero_bias_exports(corpus_file, tokenizer_file, tmp_path):
  """A model fine-tuned before the decoder's last-token head lost its bias still loads; with
  a bias of zeros it is what transformers computes."""
  model_dir = _saved('gpt_neox', SPECS['classification'], 'last', corpus_file, tokenizer_file,
                     tmp_path / 'model', bias=0.0)
  out = _export(model_dir, tmp_path / 'hf')
  ours = predict.predict(model_dir, examples=[Example(text=t) for t in TEXTS])
  theirs = transformers.pipeline('text-classification', model=str(out))(TEXTS, top_k=None)
  for mine, their in zip(ours, theirs):
    assert {p['label']: round(p['score'], 5) for p in their} == pytest.approx(
        mine['probabilities'], abs=TOL)


def test_a_tokenizer_that_pads_with_the_row_end_is_refused(tmp_path):
  """GPT-2's own tokenizer pads with <|endoftext|>, which also ends each task row, so
  transformers would read the token before it."""
  from test_interop_huggingface import MAKERS, save_random
  (tmp_path / 'gpt2').mkdir()
  save_random(MAKERS['gpt2'], tmp_path / 'gpt2')
  pre, _ = huggingface.load_folder(tmp_path / 'gpt2')
  assert pre.tokenizer.pad_id == pre.tokenizer.sep_id
  tuned = finetune.Tuned(pre.model, SPECS['classification'], 'last', rngs=nnx.Rngs(0))
  with pytest.raises(UserError, match='pads with the token that ends each.*no exact twin'):
    export.head_to_hf(tuned, SPECS['classification'], {'pooling': 'last'}, pre.tokenizer,
                      tmp_path / 'hf')
  assert not (tmp_path / 'hf').exists()


@pytest.mark.parametrize('family, pooling, head', [
    ('bert', 'cls', 'linear'), ('roberta', 'cls', 'linear'), ('gpt2', 'last', 'linear'),
    ('llama', 'last', 'linear'), ('modernbert', 'mean', 'mlp')])
def test_a_fine_tune_defaults_to_the_head_its_family_exports(family, pooling, head,
                                                             corpus_file, tokenizer_file):
  """Unset, pooling and finetune.head are what the family's task classes compute, so the
  saved model exports (the README demo's model is ModernBERT-shaped); set, they are kept."""
  from ssljax.adapt import run
  config = tiny_config(corpus_file, **FAMILIES[family])
  model_cfg = models.ModelConfig.from_config(
      config.model, vocab_size=tokenizer_lib.load(tokenizer_file).vocab_size)
  flat = run.method_settings(run.load_settings(), 'finetune', model_cfg)
  assert (flat.pooling, flat.head) == (pooling, head)
  assert run.method_settings(run.load_settings(), 'probe', model_cfg).pooling == 'mean'
  chosen = run.load_settings(['pooling=mean', 'finetune.head=linear'])
  assert (run.method_settings(chosen, 'finetune', model_cfg).pooling,
          run.method_settings(chosen, 'finetune', model_cfg).head) == ('mean', 'linear')
