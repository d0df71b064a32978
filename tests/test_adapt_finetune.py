"""ssljax.adapt.finetune: it learns, keeps the best validation epoch, round-trips every head
kind, and scales learning rates by depth."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssljax import models as model_lib
from ssljax.adapt import finetune, probe, settings
from ssljax.errors import UserError
from ssljax.tasks import task_rows

import adapt_helpers
from adapt_helpers import SPECS, SQUAD, SST2, _build, _script_pearson, _settings, _task

tok, bert = adapt_helpers.tok, adapt_helpers.bert  # fixtures


def test_the_best_validation_epoch_is_kept(bert, tok, monkeypatch):
  script = [0.0, 0.2, 0.9, 0.5]  # + epoch 0
  seen = _script_pearson(monkeypatch, script)
  spec, cfg = SPECS['regression'], _settings(epochs=3, lr=1e-2)
  train = _task('regression', 24, 0)
  val = [train[i] for i in probe.carve(24, cfg.val_fraction, 0)[1]]
  result = finetune.finetune(bert, tok, spec, train, {'val': val}, cfg, 0)
  assert result['val']['pearson'] == 0.9
  best = len(script) - 2
  assert seen[-1] == seen[best] != seen[best + 1]  # the evals used the best epoch's weights


@pytest.mark.slow
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


@pytest.mark.slow
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
  rows = task_rows.build(loaded_tok, spec, _task(kind, 8, 1), 32, 8)
  batch = next(task_rows.batches(rows, 8))
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


def test_user_errors(bert, tok):
  with pytest.raises(UserError, match='epoch'):
    finetune.finetune(bert, tok, SST2, _task('classification', 8, 0), {}, _settings(epochs=0), 0)


def _pairs(n, seed):
  """Sentence pairs whose label is whether the second sentence holds 'python'."""
  return [dataclasses.replace(e, text=_task('classification', 1, seed * n + i)[0].text,
                              text_b=e.text)
          for i, e in enumerate(_task('classification', n, seed))]


@pytest.mark.slow
@pytest.mark.parametrize('kind, spec, make, floor', [
    ('pair', adapt_helpers.MRPC, _pairs, 0.95),
    ('regression', SPECS['regression'], lambda n, s: _task('regression', n, s), 0.9),
    ('span', adapt_helpers.SQUAD, lambda n, s: _task('span', n, s), 90.0),
])
def test_fine_tuning_fits_a_separable_task_of_every_kind(bert, tok, kind, spec, make, floor):
  """Near-perfect scores where the answer is plain: pairs (is 'python' in the second
  sentence), regression (how many 'the'), QA (where is 'python', in 14-word contexts cut
  into windows of 24 tokens 8 apart, so answers cross window boundaries). SQuAD scores are
  on its 0-100 scale."""
  cfg = _settings(lr=1e-3, epochs=4, batch_size=16, max_len=24, progress=False)
  if kind == 'span':  # the contexts do not fit one window
    rows = task_rows.build(tok, spec, make(64, 1), 24, 8)
    assert len(rows) > 64
  result = finetune.finetune(bert, tok, spec, make(600, 0), {'test': make(64, 1)}, cfg, 0)
  main = spec.metrics[0]
  assert result['evals']['test']['metrics'][main] >= floor, result['evals']['test']['metrics']


def test_seeds_and_inits_share_one_compiled_step(bert, tok):
  """A shape compiles once per run: the second seed, and a model of the same architecture
  from other weights (the scratch init), run the first one's jitted step."""
  cfg = _settings(epochs=1, lr='1e-3,3e-4')
  train = _task('classification', 32, 0)
  scratch = model_lib.build(bert.cfg, nnx.Rngs(7))
  finetune.finetune(bert, tok, SPECS['classification'], train, {}, cfg, 0)
  compiled = list(finetune._COMPILED.values())[-1]  # pylint: disable=protected-access
  sizes = compiled.step._cache_size(), compiled.forward._cache_size()
  assert sizes[0] == len(compiled.widths) >= 1
  for model, seed in ((bert, 1), (scratch, 0)):
    finetune.finetune(model, tok, SPECS['classification'], train, {}, cfg, seed)
    assert list(finetune._COMPILED.values())[-1] is compiled  # pylint: disable=protected-access
  assert (compiled.step._cache_size(), compiled.forward._cache_size()) == sizes


@pytest.mark.parametrize('pooler', settings.POOLERS)
def test_the_pooler_starts_fresh_and_equal_for_both_inits(bert, tok, pooler):
  """finetune.pooler=fresh: pretrained and scratch start from one pooler drawn from the seed
  (a pooler trained by an objective that stayed at chance must not handicap the pretrained
  start); =pretrained keeps the checkpoint's."""
  cfg = _settings(pooling='cls', pooler=pooler)
  train = _task('classification', 16, 0)
  scratch = model_lib.build(bert.cfg, nnx.Rngs(7))
  pretrained_pooler = nnx.to_pure_dict(nnx.state(bert.pooler))
  starts = [finetune._prepare(model, tok, SPECS['classification'], train, cfg, 3).init  # pylint: disable=protected-access
            for model in (bert, scratch)]
  kernels = [np.asarray(s['model']['pooler']['kernel']) for s in starts]
  if pooler == 'fresh':
    np.testing.assert_array_equal(kernels[0], kernels[1])
    assert not np.allclose(kernels[0], pretrained_pooler['kernel'])
    head = np.asarray(starts[0]['head']['kernel'])
    assert not np.allclose(head, kernels[0][:, :head.shape[1]])  # drawn apart from the head
  else:
    np.testing.assert_array_equal(kernels[0], pretrained_pooler['kernel'])
    assert not np.allclose(kernels[0], kernels[1])


def test_an_mlp_head_starts_from_the_mlm_head_and_round_trips(bert, tok, tmp_path):
  """finetune.head=mlp: dense + activation + norm before the classifier (ModernBERT's task
  heads), started from the model's MLM head transform as transformers starts them from a
  masked-LM checkpoint; it trains, and `save`/`load` give the same outputs."""
  cfg = _settings(head='mlp', pooling='mean', epochs=1)
  train = _task('classification', 16, 0)
  start = finetune._prepare(bert, tok, SPECS['classification'], train, cfg, 3).init  # pylint: disable=protected-access
  mlm = nnx.to_pure_dict(nnx.state(bert.mlm_head))
  np.testing.assert_array_equal(start['transform']['dense']['kernel'],
                                mlm['transform']['kernel'])
  np.testing.assert_array_equal(start['transform']['norm']['scale'], mlm['norm']['scale'])
  result = finetune.finetune(bert, tok, SPECS['classification'], train, {}, cfg, 0)
  assert not np.allclose(result['params']['transform']['dense']['kernel'],
                         mlm['transform']['kernel'])  # trained
  folder = finetune.save(tmp_path / 'model', result['params'], bert.cfg,
                         SPECS['classification'], cfg, tok)
  tuned, spec, meta, _ = finetune.load(folder)
  assert meta['head'] == 'mlp' and tuned.transform is not None
  rows = task_rows.build(tok, spec, train[:4], 32, 8)
  batch = task_rows.gather(rows, np.arange(len(rows)))
  graphdef, _ = nnx.split(tuned)
  again = nnx.merge(graphdef, result['params'])
  np.testing.assert_allclose(np.asarray(tuned(batch)), np.asarray(again(batch)), atol=1e-6)
