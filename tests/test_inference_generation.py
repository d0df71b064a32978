"""Generation: transformers' greedy tokens on a batch of uneven prompts, stopping at
end-of-text, reproducible sampling, the KV cache against recomputing, and bad input.

Sampling and the KV cache run on ssljax's own GPT (no torch needed); the comparisons with
transformers' `generate` and the command line on an imported GPT-2 skip without torch."""

import dataclasses
import functools
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ssljax
from ssljax import cli, models, pretrained, tokenizers as tokenizer_lib
from ssljax.data import corpus
from ssljax.errors import UserError
from ssljax.inference import generation, loading

from conftest import tiny_config

PROMPTS = ['The quick brown fox', 'a', 'def f(x): return x ** 2  # squares the number x',
           'Hello, world', 'Python is a programming language']
NEW = 20
BATCH = 2  # one batch size throughout, so the tests share compiled programs


def tiny_gpt2(folder):
  """A tiny transformers GPT-2 saved in `folder` with its byte-level BPE tokenizer; large
  initial weights make its greedy text vary."""
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  tokenizers = pytest.importorskip('tokenizers')
  folder.mkdir(parents=True, exist_ok=True)
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(corpus.embedded_documents()[:60], vocab_size=300,
                          special_tokens=['<|endoftext|>'])
  bpe.save_model(str(folder))
  torch.manual_seed(0)
  config = transformers.GPT2Config(vocab_size=bpe.get_vocab_size(), n_embd=32, n_layer=2,
                                   n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0,
                                   initializer_range=0.4)
  model = transformers.GPT2LMHeadModel(config).eval()
  model.save_pretrained(folder)
  return model


@pytest.fixture(scope='module')
def gpt2(tmp_path_factory):
  """(folder, transformers model, its tokenizer padding on the left, ours) of tiny_gpt2."""
  folder = tmp_path_factory.mktemp('gpt2')
  model = tiny_gpt2(folder)
  import transformers  # tiny_gpt2 skipped without it
  tok = transformers.AutoTokenizer.from_pretrained(folder, padding_side='left')
  tok.pad_token = tok.eos_token
  return folder, model, tok, loading.load(folder)


@pytest.fixture(scope='module')
def own_gpt(corpus_file, tokenizer_file):
  """ssljax's GPT, random weights, with the sentencepiece tokenizer of the test corpus."""
  config = tiny_config(corpus_file, **{'model.arch': 'gpt', 'objective': 'clm',
                                       'model.max_len': 64})
  tok = tokenizer_lib.load(tokenizer_file)
  model_cfg = models.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size)
  return pretrained.Pretrained(config, model_cfg, models.build(model_cfg, nnx.Rngs(0)), tok, 0)


def _transformers_greedy(model, tok, prompts, **kwargs):
  """New tokens per prompt from transformers' cached generate, up to its end-of-text."""
  import torch  # the gpt2 fixture skipped without it
  inputs = tok(prompts, return_tensors='pt', padding=True)
  with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=NEW, do_sample=False,
                         pad_token_id=tok.pad_token_id, **kwargs)
  eos = kwargs.get('eos_token_id', tok.eos_token_id)
  return [generation._until_stop(row, [eos]).tolist()
          for row in out[:, inputs['input_ids'].shape[1]:].numpy()]


def test_greedy_matches_transformers_generate(gpt2):
  _, model, tok, pre = gpt2
  rows = generation.prompt_rows(pre, PROMPTS)
  assert [r.tolist() for r in rows] == tok(PROMPTS)['input_ids']
  ours = generation.generate_ids(pre, rows, max_new_tokens=NEW, batch_size=BATCH)  # 3 batches
  assert [o.tolist() for o in ours] == _transformers_greedy(model, tok, PROMPTS)
  assert len({tuple(o) for o in ours}) == len(PROMPTS) and len(set(ours[0].tolist())) > 3


def test_rows_stop_at_end_of_text(gpt2):
  _, model, tok, pre = gpt2
  rows = generation.prompt_rows(pre, PROMPTS)
  free = generation.generate_ids(pre, rows, max_new_tokens=NEW, batch_size=BATCH)
  stop = int(free[0][3])  # the 4th token of the first prompt ends its text
  ours = generation.generate_ids(pre, rows, max_new_tokens=NEW, batch_size=BATCH,
                               stop_ids=[stop])
  assert ours[0].tolist() == free[0][:list(free[0]).index(stop) + 1].tolist()
  assert [o.tolist() for o in ours] == _transformers_greedy(model, tok, PROMPTS,
                                                            eos_token_id=stop)


def test_sampling_is_reproducible_and_per_prompt(own_gpt):
  pre = own_gpt
  sample = lambda prompts, seed, **kw: generation.generate(
      pre, prompts, max_new_tokens=NEW, temperature=1.0, seed=seed, batch_size=BATCH, **kw)
  first = sample(PROMPTS, 1, top_k=50, top_p=0.9)
  assert first == sample(PROMPTS, 1, top_k=50, top_p=0.9)
  assert first != sample(PROMPTS, 2, top_k=50, top_p=0.9)
  # A prompt's sample does not depend on the others in its batch (keys: seed, index).
  assert sample(PROMPTS, 1)[:4] == sample(PROMPTS[:4], 1)
  # Keeping one token (top-k 1, or top-p near 0) is greedy decoding.
  greedy = ssljax.generate(pre, PROMPTS, max_new_tokens=NEW, batch_size=BATCH)
  assert sample(PROMPTS, 3, top_k=1) == greedy == sample(PROMPTS, 4, top_p=1e-6)
  with pytest.raises(UserError, match='top_k -1 \\(--top-k\\) must be >= 0'):
    sample(PROMPTS, 1, top_k=-1)


def _jitted(pre):
  """(full forward's logits of one row, cached decode's logits and cache), jitted: eager
  NNX calls are slow."""
  graphdef, state = nnx.split(pre.model)
  width = pre.model_cfg.context_length

  @jax.jit
  def full(state, ids_1xW, real_1xW):
    model = nnx.merge(graphdef, state)
    batch = {'input_ids': ids_1xW, 'positions': jnp.arange(width)[None], 'doc_ids': real_1xW}
    return model.lm_logits(model(batch))[0]

  @jax.jit
  def cached(state, ids_BxL, positions_BxL, real_BxS, cache, index):
    model = nnx.merge(graphdef, state)
    hidden_BxLxH, cache = model.decode(ids_BxL, positions_BxL, real_BxS, cache, index)
    return model.lm_logits(hidden_BxLxH), cache

  def alone(row):  # right padding: the causal mask keeps it out of the row's logits
    ids = np.zeros((1, width), np.int32)
    ids[0, :len(row)] = row
    return np.asarray(full(state, ids, np.arange(width)[None] < len(row)))[:len(row)]

  return alone, functools.partial(cached, state)


@pytest.mark.parametrize('layout', [
    pytest.param({}, id='learned'),
    pytest.param({'positions': 'rope'}, id='rope', marks=pytest.mark.slow),
    pytest.param({'scan_layers': True}, id='scan_layers', marks=pytest.mark.slow)])
def test_kv_cache_equals_recomputing(own_gpt, layout):
  """Logits and greedy tokens with the cache equal a full forward pass over each row alone."""
  pre = own_gpt
  if layout:
    model_cfg = dataclasses.replace(pre.model_cfg, **layout)
    pre = pretrained.Pretrained(pre.config, model_cfg, models.build(model_cfg, nnx.Rngs(1)),
                                pre.tokenizer, 0)
  alone, cached = _jitted(pre)
  rows = generation.prompt_rows(pre, [PROMPTS[0], PROMPTS[1], PROMPTS[3]])  # one width bucket
  lengths = np.asarray([len(r) for r in rows])
  # Left-padded prompts read at once, then one greedy token at a time.
  width, steps = 16, NEW
  ids = np.full((3, width), pre.tokenizer.pad_id, np.int32)
  real = np.arange(width + steps)[None] >= width - lengths[:, None]
  for i, row in enumerate(rows):
    ids[i, width - len(row):] = row
  positions = np.maximum(np.arange(width)[None] - (width - lengths)[:, None], 0)
  logits, cache = cached(ids, positions, real, pre.model.init_cache(3, width + steps), 0)
  step_logits = [np.asarray(logits[:, -1])]
  for t in range(steps - 1):
    token = step_logits[-1].argmax(-1)
    logits, cache = cached(token[:, None], (lengths + t)[:, None], real, cache, width + t)
    step_logits.append(np.asarray(logits[:, 0]))
  tokens = np.stack([s.argmax(-1) for s in step_logits], axis=1)
  for i, row in enumerate(rows):
    grown = np.concatenate([row, tokens[i]])
    np.testing.assert_allclose(np.stack(step_logits, 1)[i], alone(grown)[len(row) - 1:-1],
                               atol=2e-5)
  # The jitted loop's tokens against argmax of a full pass per new token.
  recomputed = []
  for row in rows:
    for _ in range(steps):
      row = np.append(row, alone(row)[-1].argmax()).astype(np.int32)
    recomputed.append(row[-steps:].tolist())
  got = generation.generate_ids(pre, rows, max_new_tokens=steps, batch_size=BATCH,
                              stop_ids=())
  assert [g.tolist() for g in got] == recomputed == tokens.tolist()


@pytest.fixture(scope='module')
def encoder_folder(corpus_file, tokenizer_file, tmp_path_factory):
  """A tiny ssljax BERT as a Hugging Face folder."""
  from ssljax.interop import huggingface as hf
  config = tiny_config(corpus_file)
  tok = tokenizer_lib.load(tokenizer_file)
  model_cfg = models.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size)
  pre = pretrained.Pretrained(config, model_cfg, models.build(model_cfg, nnx.Rngs(0)), tok, 0)
  return hf.export(pre, tmp_path_factory.mktemp('bert'))


def _cli(capsys, *args):
  code = cli.main(list(args))
  out, err = capsys.readouterr()
  assert 'Traceback' not in err
  return code, out, err


def test_command_prints_continuations(gpt2, tmp_path, capsys):
  folder, _, _, pre = gpt2
  greedy = generation.generate(pre, PROMPTS, max_new_tokens=NEW, batch_size=BATCH)
  settings = ['--max-new-tokens', str(NEW), '--batch-size', str(BATCH)]
  code, out, _ = _cli(capsys, 'generate', '--checkpoint', str(folder), '--prompt', PROMPTS[0],
                      *settings)
  assert code == 0 and out == PROMPTS[0] + greedy[0] + '\n'
  (tmp_path / 'prompts.txt').write_text('\n'.join(PROMPTS))
  code, out, _ = _cli(capsys, 'generate', '--checkpoint', str(folder), '--input',
                      str(tmp_path / 'prompts.txt'), *settings)
  assert [json.loads(line) for line in out.splitlines()] == [
      {'prompt': p, 'completion': g} for p, g in zip(PROMPTS, greedy)]


@pytest.mark.parametrize('case, args, message', [
    ('encoder', ['--prompt', 'hi'], 'is a bert encoder, which cannot generate text; pass a '
     'causal LM'),
    ('long prompt', ['--prompt', 'word ' * 70], r'prompt 1 has \d+ tokens: the model reads 1 '
     'to 64 tokens, prompt and max_new_tokens \\(32\\) together; shorten the prompt or lower '
     '--max-new-tokens'),
    ('top-p 0', ['--prompt', 'hi', '--top-p', '0'], r'top_p 0.0 \(--top-p\) must lie in '
     r'\(0, 1\]'),
    ('top-p 1.5', ['--prompt', 'hi', '--top-p', '1.5'], r'top_p 1.5 \(--top-p\) must lie in'),
])
def test_bad_input_is_one_line(gpt2, encoder_folder, capsys, case, args, message):
  checkpoint = encoder_folder if case == 'encoder' else gpt2[0]
  code, _, err = _cli(capsys, 'generate', '--checkpoint', str(checkpoint), *args)
  assert code == 2 and len(err.strip().splitlines()) == 1, err
  assert err.startswith('ssljax: error: ') and re.search(message, err), err
