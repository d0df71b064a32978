"""Prompting a causal LM: continuation log-likelihoods against a one-sequence-at-a-time
reference, the choice of demonstrations, long prompts, errors, and the CLI end to end."""

import json

import numpy as np
import pytest
from flax import nnx

from ssljax import cli, models as model, pretrained, tokenizers as tokenizer_lib
from ssljax.adapt import fewshot
from ssljax.errors import UserError
from ssljax.inference import scoring
from ssljax.pretrain import loop as train
from ssljax.tasks import readers

from conftest import tiny_config

SPEC = readers.GLUE['sst2']
TEMPLATE = 'Review: {text}\nSentiment:'
VERBALIZERS = (' bad', ' good')


def _examples(count, words=4):
  text = ' '.join(['the', 'function', 'returns', 'a', 'value'] * words)
  return [readers.Example(text=text[:40 + i], label=i % 2) for i in range(count)]


@pytest.fixture(scope='module')
def gpt(corpus_file, tokenizer_file):
  config = tiny_config(corpus_file, **{'model.arch': 'gpt', 'objective': 'clm'})
  tok = tokenizer_lib.load(tokenizer_file)
  model_cfg = model.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size)
  return pretrained.Pretrained(config, model_cfg, model.build(model_cfg, nnx.Rngs(3)), tok, 0)


def _reference(pre, row, n):
  """log p(last n tokens | the rest) from one unpadded sequence, summed in numpy."""
  length = len(row)
  batch = {'input_ids': row[None], 'segment_ids': np.zeros((1, length), np.int32),
           'doc_ids': np.ones((1, length), np.int32), 'positions': np.arange(length)[None]}
  logits = np.asarray(pre.model.lm_logits(pre.model(batch)), np.float64)[0]
  logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                                                             keepdims=True)) \
      - logits.max(-1, keepdims=True)
  return sum(logp[t - 1, row[t]] for t in range(length - n, length))


@pytest.mark.slow
def test_scores_match_one_sequence_at_a_time_and_decide_the_prediction(gpt):
  train_set, queries = _examples(6), _examples(5)
  demos = fewshot.demonstrations(train_set, 2, seed=0)
  rows, lengths = fewshot.candidate_rows(gpt, SPEC, queries, demos, TEMPLATE, VERBALIZERS,
                                           '\n\n')
  ours = scoring.continuation_scores(gpt, rows, lengths, batch_size=4)
  reference = np.asarray([_reference(gpt, r, n) for r, n in zip(rows, lengths)])
  np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=1e-5)
  result = fewshot.classify(gpt, SPEC, train_set, queries, template=TEMPLATE,
                              verbalizers=VERBALIZERS, shots=[2], seed=0, batch_size=4)
  assert result[2]['predictions'] == reference.reshape(5, 2).argmax(1).tolist()
  truths = [e.label for e in queries]
  assert result[2]['metrics']['accuracy'] == np.mean(
      np.asarray(result[2]['predictions']) == truths)


def test_demonstrations_are_balanced_and_fixed_by_seed():
  train_set = [readers.Example(text=f'example {i}', label=int(i < 3)) for i in range(20)]
  four = fewshot.demonstrations(train_set, 4, seed=7)
  assert sorted(e.label for e in four) == [0, 0, 1, 1]
  assert four == fewshot.demonstrations(train_set, 4, seed=7)
  assert four != fewshot.demonstrations(train_set, 4, seed=8)
  assert fewshot.demonstrations(train_set, 0, seed=7) == []
  eight = fewshot.demonstrations(train_set, 8, seed=1)  # label 1 has only 3 examples
  assert sorted(e.label for e in eight) == [0, 0, 0, 0, 0, 1, 1, 1]


def test_long_prompts_drop_demonstrations_then_cut_the_query_from_the_left(gpt, caplog):
  limit = gpt.model_cfg.max_len
  train_set = _examples(6, words=20)
  query = readers.Example(text=' '.join(f'word{i}' for i in range(200)) + ' END', label=0)
  rows, _ = fewshot.candidate_rows(gpt, SPEC, [query], train_set[:3], TEMPLATE, VERBALIZERS,
                                     '\n\n')
  answer = gpt.tokenizer.encode([VERBALIZERS[1]])[0]
  ending = gpt.tokenizer.encode([TEMPLATE.format(text=query.text)])[0][-5:]
  assert all(len(r) <= limit for r in rows)
  np.testing.assert_array_equal(rows[1][-len(answer):], answer)
  np.testing.assert_array_equal(rows[1][-len(answer) - 5:-len(answer)], ending)
  assert 'demonstrations dropped' in caplog.text


@pytest.mark.parametrize('change, fragment', [
    ({'arch': 'bert'}, 'is an encoder'),
    ({'spec': readers.GLUE['stsb']}, 'is a regression task'),
    ({'verbalizers': (' bad',)}, '1 verbalisers for the 2 labels'),
    ({'template': 'Sentiment:'}, 'needs {text}'),
    ({'template': '{text} {text_b}'}, 'needs {text} (and no {text_b})'),
])
def test_errors(gpt, change, fragment):
  pre = gpt
  if 'arch' in change:
    pre = pretrained.Pretrained(gpt.config, type(gpt.model_cfg)(
        **{**gpt.model_cfg.__dict__, 'arch': 'bert'}), gpt.model, gpt.tokenizer, 0)
  with pytest.raises(UserError, match=fragment.replace('{', r'\{').replace('(', r'\(')
                     .replace(')', r'\)')):
    fewshot.classify(pre, change.get('spec', SPEC), _examples(4), _examples(2),
                       template=change.get('template', TEMPLATE),
                       verbalizers=change.get('verbalizers', VERBALIZERS), shots=[0], seed=0)


@pytest.mark.slow
def test_fewshot_command_writes_accuracy_against_k(corpus_file, tokenizer_file, tmp_path):
  glue = tmp_path / 'SST-2'
  glue.mkdir()
  rows = ''.join(f'{e.text}\t{e.label}\n' for e in _examples(10))
  for split in ('train', 'dev'):
    (glue / f'{split}.tsv').write_text('sentence\tlabel\n' + rows)
  train.pretrain(tiny_config(corpus_file, **{'model.arch': 'gpt', 'objective': 'clm',
                                             'tokenizer.path': tokenizer_file,
                                             'train.steps': 2}), tmp_path / 'gpt')
  assert cli.main(['fewshot', '--checkpoint', str(tmp_path / 'gpt'), '--task', 'sst2',
                   '--data-dir', str(tmp_path), '--workdir', str(tmp_path / 'out'),
                   '--set', 'fewshot.shots=0,2', '--set', 'seeds=2',
                   '--set', 'fewshot.verbalizers= bad| good']) == 0
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert list(results['metrics']) == ['0-shot', '2-shot']
  assert [(r['shots'], r['seed']) for r in results['runs']] == [(0, 0), (2, 0), (0, 1), (2, 1)]
  assert results['metrics']['0-shot']['dev']['accuracy']['values'][0] == \
      results['metrics']['0-shot']['dev']['accuracy']['values'][1]  # no demos: seed-free
  assert (tmp_path / 'out' / 'shots.png').is_file()


def test_zero_shot_is_scored_once_whatever_the_seed(gpt, monkeypatch):
  calls = []
  score = scoring.continuation_scores
  monkeypatch.setattr(scoring, 'continuation_scores',
                      lambda *a, **k: calls.append(1) or score(*a, **k))
  train, examples = _examples(8), _examples(6)
  run = lambda pre, seed, shots=(0, 1): fewshot.classify(
      pre, SPEC, train, examples, template=TEMPLATE, verbalizers=VERBALIZERS, shots=shots,
      seed=seed)
  first = run(gpt, 0)
  assert len(calls) == 2
  second = run(gpt, 1)
  assert len(calls) == 3  # only the 1-shot prompts of seed 1
  assert second[0] == first[0]
  other = pretrained.Pretrained(gpt.config, gpt.model_cfg,
                                model.build(gpt.model_cfg, nnx.Rngs(9)), gpt.tokenizer, 0)
  run(other, 1, shots=(0,))  # another model (a scratch init): scored again
  assert len(calls) == 4
  fewshot.classify(gpt, SPEC, train, examples, template=TEMPLATE, verbalizers=VERBALIZERS,
                   shots=(0,), seed=0, normalize=True)  # another prompt setting
  assert len(calls) == 5
