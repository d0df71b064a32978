"""Adaptation methods (encode, heads, probe, finetune) against independent references."""

import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sklearn import linear_model

from conftest import tiny_config
from ssljax import models as model, tokenizers as tokenizer_lib
from ssljax.adapt import finetune, heads, probe, rows as encode, tasks
from ssljax.adapt.tasks import Example
from ssljax.errors import UserError

# Words the test tokenizer keeps whole; 'python' splits into several pieces.
WORDS = ('the a of to is in and for that it be with as by this an object function value '
         'module name file return list').split()
SST2, MRPC, SQUAD = tasks.GLUE['sst2'], tasks.GLUE['mrpc'], tasks.SQUAD
SPECS = {'classification': tasks.TaskSpec('three', 'classification', ('x', 'y', 'z'), False,
                                          ('accuracy',)),
         'regression': tasks.TaskSpec('score', 'regression', ('',), False,
                                      ('pearson', 'spearman')),
         'tokens': tasks.TaskSpec('tags', 'tokens', ('other', 'python'), False,
                                  ('token_accuracy',))}


def _settings(**overrides):
  return types.SimpleNamespace(**{
      'pooling': 'mean', 'max_len': 32, 'batch_size': 8, 'val_fraction': 0.25,
      'cache_key': '', 'lr': 1e-3, 'epochs': 1, 'weight_decay': 0.01, 'warmup': 0.1,
      'llrd': 1.0, 'doc_stride': 8} | overrides)


def _build(corpus_file, tok, **overrides):
  config = tiny_config(corpus_file, **overrides)
  return model.build(model.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size),
                     nnx.Rngs(3))


@pytest.fixture(scope='module')
def tok(tokenizer_file):
  return tokenizer_lib.load(tokenizer_file)


@pytest.fixture(scope='module')
def bert(corpus_file, tok):
  return _build(corpus_file, tok)


def _text(n, start=0):
  return ' '.join(WORDS[(start + i) % len(WORDS)] for i in range(n))


def _ids(tok, text):
  return list(tok.encode([text])[0])


def _bert_truncate(a, b, room):  # google-research/bert run_classifier._truncate_seq_pair
  a, b = list(a), list(b)
  while len(a) + len(b) > room:
    (a if len(a) > len(b) else b).pop()
  return a, b


def _task(kind, n, seed):
  """Examples of a task a tiny model can learn: find the word 'python'."""
  rng, examples = np.random.default_rng(seed), []
  for i in range(n):
    words = [str(w) for w in rng.choice(WORDS, 6 if kind != 'span' else 14)]
    hit = i % 2 == 0 or kind == 'span'
    at = int(rng.integers(len(words)))
    if hit:
      words[at] = 'python'
    text = ' '.join(words)
    examples.append({
        'classification': lambda: Example(text=text, label=int(hit)),
        'regression': lambda: Example(text=text, label=float(words.count('the'))),
        'tokens': lambda: Example(words=words, tags=[int(w == 'python') for w in words]),
        'span': lambda: Example(context=text, question='where is python',
                                answers=[('python', len(' '.join(words[:at])) + (at > 0))]),
    }[kind]())
  return examples


def test_pair_and_single_rows(tok):
  cases = [(3, 2), (20, 4), (10, 10), (4, 20), (7, 8)]
  examples = [Example(text=_text(a), text_b=_text(b, 5), label=i % 2)
              for i, (a, b) in enumerate(cases)]
  rows = encode.build(tok, MRPC, examples, max_len=16)
  assert rows.arrays['input_ids'].shape == (len(cases), 16)
  np.testing.assert_array_equal(rows.arrays['labels'], [0, 1, 0, 1, 0])
  for row, e in enumerate(examples):
    a, b = _bert_truncate(_ids(tok, e.text), _ids(tok, e.text_b), 16 - 3)
    expected = [tok.cls_id] + a + [tok.sep_id] + b + [tok.sep_id]
    pad = [0] * (16 - len(expected))
    np.testing.assert_array_equal(rows.arrays['input_ids'][row], expected + pad)
    np.testing.assert_array_equal(rows.arrays['segment_ids'][row],
                                  [0] * (len(a) + 2) + [1] * (len(b) + 1) + pad)
    np.testing.assert_array_equal(rows.arrays['doc_ids'][row], [1] * len(expected) + pad)
  single = encode.build(tok, SST2, [Example(text=_text(30)), Example(text='a')], 24)
  assert single.arrays['input_ids'].shape == (2, 24)  # 32 rounded up, capped at max_len
  np.testing.assert_array_equal(single.arrays['input_ids'][0],
                                [tok.cls_id] + _ids(tok, _text(30))[:22] + [tok.sep_id])
  assert not single.arrays['segment_ids'].any()


def test_token_rows_label_first_pieces(tok):
  sentences = [['the', 'python', 'function', 'antidisestablishmentarianism', 'value'],
               ['python'] * 12]  # the second does not fit in max_len 32
  examples = [Example(words=w, tags=[i % 2 for i in range(len(w))]) for w in sentences]
  ner = tasks.TaskSpec('ner', 'tokens', ('B-PY', 'O'), False, ('entity_f1',))
  rows = encode.build(tok, ner, examples, max_len=32)
  expected = []
  for row, words in enumerate(sentences):
    position = 1
    for number, pieces in enumerate(tok.encode(words)):
      if position + len(pieces) > 31:
        break
      expected.append((row, position, number))
      assert rows.arrays['input_ids'][row, position] == pieces[0]
      position += len(pieces)
  assert len(expected) < sum(map(len, sentences))  # some words were cut
  np.testing.assert_array_equal(rows.words, expected)
  labels = rows.arrays['labels']
  assert set(zip(*np.nonzero(labels >= 0))) == {(r, p) for r, p, _ in expected}
  assert [labels[r, p] for r, p, _ in expected] == [
      examples[r].tags[w] for r, _, w in expected]
  one_hot = np.eye(2)[[examples[r].tags[w] for r, _, w in expected]]
  decoded = heads.KINDS['tokens'].decode(ner, rows, one_hot, examples)
  assert decoded[0] == [ner.labels[t] for t in examples[0].tags]
  kept = sum(r == 1 for r, _, _ in expected)  # words past max_len are outside entities
  assert decoded[1] == [ner.labels[t] if w < kept else 'O'
                        for w, t in enumerate(examples[1].tags)]


def test_squad_windows_and_decoding(tok):
  words = [WORDS[i % 20] for i in range(40)]
  words[26] = 'python'
  context = ' '.join(words)
  char = lambda k: len(' '.join(words[:k])) + (k > 0)
  answers = [(25, 2), (3, 1)]  # (first word, word count): one late answer, one early
  examples = [Example(context=context, question='what is this',
                      answers=[(' '.join(words[k:k + n]), char(k))]) for k, n in answers]
  max_len, stride = 24, 6
  rows = encode.build(tok, SQUAD, examples, max_len, doc_stride=stride)
  pieces = tok.encode(words)
  flat = np.concatenate(pieces)
  question = _ids(tok, 'what is this')
  head, room = len(question) + 2, max_len - len(question) - 3
  windows = 1 + -(-(len(flat) - room) // stride)
  np.testing.assert_array_equal(rows.example, np.repeat([0, 1], windows))
  for index, (k, n) in enumerate(answers):
    first = sum(map(len, pieces[:k]))
    last = sum(map(len, pieces[:k + n])) - 1
    inside = 0
    for w in range(windows):
      row, begin = index * windows + w, w * stride
      body = list(flat[begin:begin + room])
      ids = [tok.cls_id] + question + [tok.sep_id] + body + [tok.sep_id]
      np.testing.assert_array_equal(rows.arrays['input_ids'][row, :len(ids)], ids)
      start, end = rows.arrays['start'][row], rows.arrays['end'][row]
      if begin <= first and last < begin + room:
        inside += 1
        assert (start, end) == (head + first - begin, head + last - begin)
        assert tok.decode(rows.arrays['input_ids'][row, start:end + 1]) == \
            examples[index].answers[0][0]
      else:
        assert (start, end) == (0, 0)
      spans = rows.offsets[row, head:head + len(body)]
      assert [context[s:t] for s, t in spans] == [
          words[i] for i in np.repeat(np.arange(40), list(map(len, pieces)))[begin:][:room]]
      assert (rows.offsets[row, :head] == -1).all()
    assert 0 < inside < windows
  width = rows.arrays['input_ids'].shape[1]
  start_NxL = np.eye(width)[rows.arrays['start']]
  end_NxL = np.eye(width)[rows.arrays['end']]
  assert heads.best_spans(start_NxL, end_NxL, rows.offsets, rows.example, [context] * 2) == [
      e.answers[0][0] for e in examples]


# Two windows over 'aa bb cc dd ee': row 0 holds aa bb cc, row 1 cc dd ee, each at
# positions 3-5 after [CLS] question [SEP]; marks are (side, row, position): logit.
_OFFSETS = np.full((2, 8, 2), -1)
_OFFSETS[0, 3:6] = [(0, 2), (3, 5), (6, 8)]
_OFFSETS[1, 3:6] = [(6, 8), (9, 11), (12, 14)]


@pytest.mark.parametrize('marks, max_answer_len, expected', [
    ({(0, 0, 3): 2, (1, 0, 4): 2, (0, 1, 4): 3, (1, 1, 5): 3}, 30, 'dd ee'),  # best window
    ({(0, 0, 3): 2, (1, 0, 4): 2, (0, 1, 0): 50, (1, 1, 1): 50}, 30, 'aa bb'),  # not [CLS]
    ({(0, 1, 3): 5, (1, 1, 5): 5, (1, 1, 4): 1}, 3, 'cc dd ee'),
    ({(0, 1, 3): 5, (1, 1, 5): 5, (1, 1, 4): 1}, 2, 'cc dd'),  # too long: next best end
    ({(0, 0, 5): 9, (1, 0, 3): 9, (1, 0, 5): 1}, 30, 'cc'),  # an end before its start
])
def test_best_spans_hand_worked(marks, max_answer_len, expected):
  logits = np.zeros((2, 2, 8))
  for (side, row, position), value in marks.items():
    logits[side, row, position] = value
  assert heads.best_spans(logits[0], logits[1], _OFFSETS, np.array([0, 0]),
                          ['aa bb cc dd ee'], max_answer_len) == [expected]


@pytest.mark.parametrize('lam', [1e-3, 0.7, 50.0])
def test_ridge_fit_matches_sklearn(lam):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(60, 7)) + 2, rng.normal(size=(60, 3))
  kernel, bias = probe.ridge_fit(x, y, lam)
  reference = linear_model.Ridge(alpha=lam, fit_intercept=True).fit(x, y)
  np.testing.assert_allclose(kernel, reference.coef_.T, rtol=1e-6)
  np.testing.assert_allclose(bias, reference.intercept_, rtol=1e-6)


def _features(kind, n, seed):
  """Features whose label is a linear function of them (classes: separated centres)."""
  rng, fixed = np.random.default_rng(seed), np.random.default_rng(0)
  if kind == 'regression':
    x = rng.normal(size=(n, 12))
    y = (x @ fixed.normal(size=12) + 0.5).astype(np.float32)
  else:
    y = rng.integers(0, 3, n).astype(np.int32)
    x = 3 * fixed.normal(size=(3, 12))[y] + rng.normal(size=(n, 12))
  examples = [Example(label=v.item()) for v in y]
  return probe.Features(x.astype(np.float32), encode.Rows({'labels': y}, np.arange(n)),
                        examples)


@pytest.mark.parametrize('method', ['ridge', 'linear'])
@pytest.mark.parametrize('kind', ['classification', 'regression'])
def test_probes_fit_a_linear_task(method, kind):
  spec, cfg = SPECS[kind], _settings(lr=5e-2, epochs=12, batch_size=32, val_fraction=0.2)
  result = getattr(probe, method)(_features(kind, 300, 1), {'test': _features(kind, 200, 2)},
                                  spec, cfg, 0)
  main = spec.metrics[0]
  assert result['evals']['test']['metrics'][main] >= (0.99 if method == 'ridge' else 0.95)
  assert result['val'][main] == max(c[f'val_{main}'] for c in result['curve'])
  assert len(result['curve']) == (len(probe.RIDGE_GRID) if method == 'ridge' else 12)


@pytest.mark.parametrize('method', ['probe', 'finetune'])
def test_the_best_validation_epoch_is_kept(bert, tok, monkeypatch, method):
  script = [0.2, 0.9, 0.5] if method == 'probe' else [0.0, 0.2, 0.9, 0.5]  # + epoch 0
  seen, real = [], heads.score

  def score(spec, examples, predictions):  # the script's pearson for each validation
    result = real(spec, examples, predictions)
    if len(seen) < len(script):
      result['metrics']['pearson'] = script[len(seen)]
    seen.append(predictions)
    return result

  monkeypatch.setattr(heads, 'score', score)
  spec, cfg = SPECS['regression'], _settings(epochs=3, lr=1e-2)
  if method == 'probe':
    train = _features('regression', 64, 1)
    val = train.take(probe.carve(64, cfg.val_fraction, 0)[1])
    result = probe.linear(train, {'val': val}, spec, cfg, 0)
  else:
    train = _task('regression', 24, 0)
    val = [train[i] for i in probe.carve(24, cfg.val_fraction, 0)[1]]
    result = finetune.finetune(bert, tok, spec, train, {'val': val}, cfg, 0)
  assert result['val']['pearson'] == 0.9
  best = len(script) - 2
  assert seen[-1] == seen[best] != seen[best + 1]  # the evals used the best epoch's weights


def _reference_pool(bert, rows, pooling):
  hidden = np.asarray(bert({k: rows.arrays[k] for k in encode.INPUTS}))
  real = rows.arrays['doc_ids'] > 0
  if pooling == 'mean':
    return (hidden * real[..., None]).sum(1) / real.sum(1, keepdims=True)
  if pooling == 'first':
    return hidden[:, 0]
  if pooling == 'last':
    return hidden[np.arange(len(hidden)), real.sum(1) - 1]
  return np.tanh(hidden[:, 0] @ np.asarray(bert.pooler.kernel[...]) +
                 np.asarray(bert.pooler.bias[...]))


@pytest.mark.parametrize('pooling', ['mean', 'last', 'cls', 'first'])
def test_extract_equals_a_direct_forward(bert, tok, pooling):
  examples = [Example(text=_text(n, n), label=0) for n in (1, 4, 9, 2, 30, 6)]
  features = probe.extract(bert, tok, SST2, examples, _settings(pooling=pooling,
                                                                batch_size=4))
  assert features.x.shape == (6, 32)
  np.testing.assert_allclose(features.x, _reference_pool(bert, features.rows, pooling),
                             atol=1e-5)


def test_extract_reads_its_cache(bert, tok, tmp_path, monkeypatch):
  examples = [Example(text=_text(n), label=n % 2) for n in (2, 5, 7)]
  first = probe.extract(bert, tok, SST2, examples, _settings(cache_key='k'), tmp_path)
  assert len(list(tmp_path.glob('k_sst2_mean_*.npz'))) == 1

  def forward(*args):
    raise AssertionError('the cached features were recomputed')

  monkeypatch.setattr(probe, '_pooled', forward)
  again = probe.extract(bert, tok, SST2, examples, _settings(cache_key='k'), tmp_path)
  np.testing.assert_array_equal(again.x, first.x)
  with pytest.raises(AssertionError, match='recomputed'):  # another key misses the cache
    probe.extract(bert, tok, SST2, examples, _settings(cache_key='other'), tmp_path)


def test_extract_tokens_gives_one_row_per_word(bert, tok):
  sentences = [['the', 'python', 'value'], ['antidisestablishmentarianism', 'is', 'a', 'name']]
  examples = [Example(words=w, tags=[int(x == 'python') for x in w]) for w in sentences]
  features = probe.extract(bert, tok, SPECS['tokens'], examples, _settings(batch_size=1))
  assert features.x.shape == (7, 32)
  hidden = np.asarray(bert({k: features.rows.arrays[k] for k in encode.INPUTS}))
  np.testing.assert_allclose(features.x, hidden[features.rows.words[:, 0],
                                                features.rows.words[:, 1]], atol=1e-5)
  np.testing.assert_array_equal(features.targets(), [0, 1, 0, 0, 0, 0, 0])
  later = features.take(np.array([1]))
  np.testing.assert_array_equal(later.x, features.x[3:])
  np.testing.assert_array_equal(later.rows.words[:, 0], 0)


def test_finetune_learns_a_keyword_task(bert, tok):
  cfg = _settings(epochs=4, lr=2e-3, batch_size=16, max_len=16, val_fraction=0.2)
  before = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(bert)))
  result = finetune.finetune(bert, tok, SST2, _task('classification', 160, 0),
                             {'test': _task('classification', 64, 1)}, cfg, 1)
  assert result['val']['accuracy'] >= 0.8
  assert result['evals']['test']['metrics']['accuracy'] >= 0.8
  assert result['val']['accuracy'] == max(c['val_accuracy'] for c in result['curve'][1:])
  assert len(result['losses']) == 4 * 8 and result['losses'][-1] < result['losses'][0]
  jax.tree.map(np.testing.assert_array_equal, before,  # the caller's model is untouched
               nnx.to_pure_dict(nnx.state(bert)))


@pytest.mark.parametrize('kind, spec, pooling, overrides, llrd', [
    ('regression', SPECS['regression'], 'cls', {'model.scan_layers': True}, 0.8),
    ('tokens', SPECS['tokens'], 'mean', {'model.arch': 'albert', 'model.share_layers': True},
     0.8),
    ('span', SQUAD, 'mean', {}, 1.0),
    ('classification', SST2, 'last', {'model.arch': 'gpt', 'objective': 'clm'}, 0.9),
])
def test_finetune_kinds_run_and_round_trip(corpus_file, tok, tmp_path, kind, spec, pooling,
                                           overrides, llrd):
  base = _build(corpus_file, tok, **overrides)
  cfg = _settings(pooling=pooling, llrd=llrd)
  result = finetune.finetune(base, tok, spec, _task(kind, 24, 0),
                             {'test': _task(kind, 8, 1)}, cfg, 0)
  assert np.isfinite(result['losses']).all() and len(result['losses']) >= 3
  low, high = {'regression': (-1, 1), 'span': (0, 100)}.get(kind, (0, 1))
  assert all(low <= v <= high for v in result['evals']['test']['metrics'].values())
  finetune.save(tmp_path, result['params'], base.cfg, spec, cfg, tok)
  loaded, loaded_spec, meta, loaded_tok = finetune.load(tmp_path)
  assert loaded_spec == spec and meta['pooling'] == pooling
  rows = encode.build(loaded_tok, spec, _task(kind, 8, 1), 32, 8)
  batch = next(encode.batches(rows, 8))
  graphdef = nnx.split(finetune.Tuned(base, spec, pooling, rngs=nnx.Rngs(0)))[0]
  np.testing.assert_array_equal(loaded(batch), nnx.merge(graphdef, result['params'])(batch))


@pytest.mark.parametrize('overrides', [
    {}, {'model.scan_layers': True}, {'model.arch': 'albert', 'model.share_layers': True}])
def test_layer_scales_decay_towards_the_embeddings(corpus_file, tok, overrides):
  tuned = finetune.Tuned(_build(corpus_file, tok, **overrides), SST2, 'cls',
                         rngs=nnx.Rngs(0))
  params = nnx.to_pure_dict(nnx.state(tuned))
  decay, layers = 0.5, tuned.model.cfg.num_layers  # depth: embeddings 0, layer i i + 1

  def expected(path, leaf):
    name = jax.tree_util.keystr(path)
    if "['embeddings']" in name:
      depth = 0
    elif "['layers']" in name:
      depth = int(re.search(r"\['layers'\]\[(\d+)\]", name).group(1)) + 1
    elif "['scanned']" in name:
      return (decay ** (layers - np.arange(layers))).reshape((-1,) + (1,) * (leaf.ndim - 1))
    else:
      depth = layers if "['shared']" in name else layers + 1
    return np.float32(decay ** (layers + 1 - depth))

  want = jax.tree_util.tree_map_with_path(expected, params)
  jax.tree.map(np.testing.assert_allclose, finetune.layer_scales(params, layers, decay), want)
  grads = jax.tree.map(jnp.ones_like, params)
  updates = []
  for llrd in (1.0, decay):
    tx = finetune.make_optimizer(_settings(llrd=llrd, warmup=0.0), 10, params, layers)
    updates.append(jax.jit(tx.update)(grads, tx.init(params), params)[0])
  jax.tree.map(lambda plain, scaled, scale: np.testing.assert_allclose(
      scaled, plain * scale, rtol=1e-6), *updates, want)


@pytest.mark.parametrize('num, fraction', [(2, 0.1), (10, 0.1), (10, 0.99), (101, 0.25)])
def test_carve_is_a_deterministic_partition(num, fraction):
  fit, val = probe.carve(num, fraction, seed=4)
  assert len(val) == min(max(round(num * fraction), 1), num - 1)
  np.testing.assert_array_equal(np.sort(np.concatenate([fit, val])), np.arange(num))
  again = probe.carve(num, fraction, seed=4)
  np.testing.assert_array_equal(again[1], val)
  if num > 100:
    assert not np.array_equal(probe.carve(num, fraction, seed=5)[1], val)


@pytest.mark.parametrize('call, message', [
    (lambda m, t: probe.extract(m, t, SQUAD, _task('span', 2, 0), _settings()), 'fine-tune'),
    (lambda m, t: probe.extract(m, t, SST2, _task('classification', 2, 0),
                                _settings(pooling='max')), 'pooling'),
    (lambda m, t: finetune.finetune(m, t, SST2, _task('classification', 8, 0), {},
                                    _settings(epochs=0), 0), 'epoch'),
    (lambda m, t: probe.linear(_features('classification', 8, 0), {}, SPECS['classification'],
                               _settings(epochs=0), 0), 'epoch'),
    (lambda m, t: probe.ridge(_features('classification', 1, 0), {}, SPECS['classification'],
                              _settings(), 0), '2 or more'),
    (lambda m, t: encode.max_length(m.cfg, 4), 'at least 8'),
])
def test_user_errors(bert, tok, call, message):
  with pytest.raises(UserError, match=message):
    call(bert, tok)
