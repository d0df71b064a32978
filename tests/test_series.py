"""Series through the stack: patch models, the masked_patch and next_patch objectives in the
pretraining step, series data (files, bad arrays), and the probe and forecast evaluations."""

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssljax import cli, config as config_lib, models
from ssljax.adapt import series as series_eval
from ssljax.data import series
from ssljax.errors import UserError
from ssljax.models import patches
from ssljax.pretrain import loop, series_objectives

AEON = importlib.util.find_spec('aeon') is not None


def tiny_cfg(arch='patch_encoder', channels=2, **extra):
  values = dict(arch=arch, vocab_size=0, hidden_size=16, num_layers=1, num_heads=2,
                mlp_dim=32, max_len=16, pre_ln=True, dropout_rate=0.0,
                attention_dropout_rate=0.0, patch_len=4, channels=channels) | extra
  return models.ModelConfig(**values)


def waves(n=48, steps=64, channels=1, seed=0):
  """Noisy sines of two frequencies: class 0 slow, class 1 fast (labels)."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % 2
  t = np.arange(steps)[None, :, None]
  freq = np.where(labels == 0, 0.1, 0.35)[:, None, None]
  phase = rng.uniform(0, 2 * np.pi, (n, 1, channels))
  values = 3 + 2 * np.sin(freq * t + phase) + 0.1 * rng.normal(size=(n, steps, channels))
  return values.astype(np.float32), labels


def sets(**values):
  return [a for k, v in values.items() for a in ('--set', f'{k}={v}')]


def tiny_run(path, objective='masked_patch', **extra):
  arch = series_objectives.ARCH[objective]
  return sets(**{
      'objective': objective, 'model.arch': arch, 'model.patch_len': 4,
      'model.hidden_size': 16, 'model.num_layers': 1, 'model.num_heads': 2,
      'model.mlp_dim': 32, 'model.max_len': 16, 'model.pre_ln': True,
      'model.dropout_rate': 0.0, 'model.attention_dropout_rate': 0.0, 'mlm.rate': 0.4,
      'data.source': 'series', 'data.path': str(path), 'data.seq_len': 16,
      'data.eval_fraction': 0.2, 'train.batch_size': 8, 'train.steps': 4,
      'train.log_every': 1, 'train.eval_every': 4, 'train.eval_batches': 1,
      'train.checkpoint_every': 4, 'train.progress': False, 'optimizer.warmup_steps': 1,
      'mesh.data': 1, 'model.projection': 8 if objective == 'contrastive' else 0} | extra)


# ------------------------------------------------------------------------------ models


@pytest.mark.parametrize('arch', ['patch_encoder', 'patch_decoder'])
def test_patch_models_map_series_to_patch_predictions(arch):
  model = models.build(tiny_cfg(arch), nnx.Rngs(0))
  values = jnp.asarray(waves(3, 32, 2)[0])
  hidden = model({'values': values})
  assert hidden.shape == (3, 8, 16)
  assert model.predict_patches(hidden).shape == (3, 8, 4, 2)


def test_instance_norm_makes_each_channel_zero_mean_unit_spread():
  x = jnp.asarray(waves(2, 32, 3)[0]) * jnp.array([1.0, 100.0, 0.5])
  normed = patches.instance_norm(patches.to_patches(x, 4))
  np.testing.assert_allclose(normed.mean((1, 2)), 0, atol=1e-4)
  np.testing.assert_allclose(normed.std((1, 2)), 1, atol=1e-3)


def test_causal_stats_are_those_of_the_patches_so_far():
  x = jnp.asarray(waves(2, 32, 2)[0]) + 60.0  # far from zero: precision kept
  mean, std = patches.causal_stats(patches.to_patches(x, 4))
  for t in (0, 3, 7):
    seen = np.asarray(x[:, :4 * (t + 1)])
    np.testing.assert_allclose(mean[:, t, 0], seen.mean(1), rtol=1e-5)
    np.testing.assert_allclose(std[:, t, 0], np.sqrt(seen.var(1) + patches.EPS), rtol=1e-3)


def test_the_decoder_never_reads_the_future():
  model = models.build(tiny_cfg('patch_decoder'), nnx.Rngs(0))
  values = jnp.asarray(waves(2, 32, 2)[0])
  changed = values.at[:, 20:].add(5.0)  # patches 5.. change
  a, b = model({'values': values}), model({'values': changed})
  np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-5)
  assert not np.allclose(a[:, 5:], b[:, 5:])


# -------------------------------------------------------------------------- objectives


def test_masks_hide_a_fixed_share_drawn_from_the_global_row():
  key = jax.random.key(0)
  masked = series_objectives.mask_patches(key, jnp.arange(6), 10, 0.4)
  assert masked.shape == (6, 10) and (masked.sum(1) == 4).all()
  again = series_objectives.mask_patches(key, jnp.arange(3, 6), 10, 0.4)
  np.testing.assert_array_equal(masked[3:], again)  # rows 3-5 on another device: the same
  assert series_objectives.num_masked(2, 0.9) == 1  # one patch is always left to read


def test_masked_patches_read_the_mask_vector_not_their_values():
  model = models.build(tiny_cfg(), nnx.Rngs(0))
  values = jnp.asarray(waves(2, 32, 2)[0])
  masked = jnp.zeros((2, 8), bool).at[:, 3].set(True)
  a = model({'values': values, 'masked': masked})
  # patch 3's steps reversed: other values, the same series mean and spread
  b = model({'values': values.at[:, 12:16].set(values[:, 15:11:-1]), 'masked': masked})
  np.testing.assert_allclose(a, b, atol=1e-5)
  assert not np.allclose(a, model({'values': values.at[:, 12:16].set(values[:, 15:11:-1])}))


# ------------------------------------------------------------------------------- data


def test_npy_npz_and_csv_series_load(tmp_path):
  values, labels = waves(4, 32, 2)
  np.save(tmp_path / 'a.npy', values[..., 0])
  np.savez(tmp_path / 'b.npz', values=values, labels=labels)
  (tmp_path / 'c.csv').write_text('timestamp,x,y,label\n' + ''.join(
      f'{i},{v[0]},{v[1]},0\n' for i, v in enumerate(values[0])))
  assert series.load(str(tmp_path / 'a.npy')).values.shape == (4, 32, 1)
  b = series.load(str(tmp_path / 'b.npz'))
  assert b.values.shape == (4, 32, 2) and list(b.labels) == list(labels)
  c = series.load(str(tmp_path / 'c.csv'))
  np.testing.assert_allclose(c.values[0], values[0], rtol=1e-5)


def test_ts_files_parse_and_ragged_ones_are_refused(tmp_path):
  head = '@problemName x\n@univariate false\n@classLabel true a b\n@data\n'
  (tmp_path / 'ok.ts').write_text(head + '1,2,3:4,5,6:a\n7,8,9:1,1,1:b\n')
  ok = series.load(str(tmp_path / 'ok.ts'))
  assert ok.values.shape == (2, 3, 2) and ok.values[0, :, 1].tolist() == [4, 5, 6]
  assert ok.labels.tolist() == ['a', 'b']
  (tmp_path / 'ragged.ts').write_text(head + '1,2,3:a\n1,2:b\n')
  with pytest.raises(UserError, match='unequal lengths'):
    series.load(str(tmp_path / 'ragged.ts'))


@pytest.mark.parametrize('array, message', [
    (np.array([[1.0, np.nan, 2.0]]), 'NaN or infinite values'),
    (np.zeros((0, 5)), 'none of them 0'),
    (np.zeros((2, 3, 4, 5)), 'expected N series'),
    (np.array([['a', 'b']]), 'not numbers'),
])
def test_bad_arrays_get_one_line(tmp_path, array, message):
  np.save(tmp_path / 'bad.npy', array)
  with pytest.raises(UserError, match=message):
    series.load(str(tmp_path / 'bad.npy'))


def test_missing_files_short_series_and_unknown_formats_get_one_line(tmp_path):
  with pytest.raises(UserError, match='does not exist'):
    series.load(str(tmp_path / 'none.npy'))
  (tmp_path / 'x.txt').write_text('1 2 3')
  with pytest.raises(UserError, match='.npy, .npz, .csv or .ts'):
    series.load(str(tmp_path / 'x.txt'))
  with pytest.raises(UserError, match='shorter than a window'):
    series.windows(np.zeros((1, 10, 1)), 16, 4, 'short.npy')


def test_windows_and_the_held_out_end_of_one_series():
  one = np.arange(100, dtype=np.float32)[None, :, None]
  train, held = series.split(one, 0.3, 16, 0)
  assert train.shape[1] == 70 and held.shape[1] == 30
  w = series.windows(train, 16, 4, 'x')
  assert w.shape == (14, 16, 1) and w[1, 0, 0] == 4


def test_ucr_without_aeon_names_the_extra(monkeypatch):
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(UserError, match=r"\[series\]'.*--no-deps aeon"):
    series.load('ucr:GunPoint')


@pytest.mark.skipif(not AEON, reason='the aeon wheel (series extra) ships the UCR sets')
def test_ucr_sets_come_from_the_aeon_wheel():
  gun = series.load('ucr:GunPoint')
  assert gun.values.shape == (50, 150, 1) and set(gun.labels.tolist()) == {'1', '2'}
  motions = series.load('ucr:BasicMotions:test')
  assert motions.values.shape == (40, 100, 6)
  with pytest.raises(UserError, match='aeon ships no'):
    series.load('ucr:NoSuchSet')


# ------------------------------------------------------------------- config and loop


def test_series_objectives_need_series_data_and_their_arch():
  with pytest.raises(UserError, match='does not fit model.arch'):
    config_lib.load(None, ['objective=masked_patch', 'data.source=series'])
  with pytest.raises(UserError, match='read data.source=series'):
    config_lib.load(None, ['objective=masked_patch', 'model.arch=patch_encoder'])


@pytest.mark.parametrize('objective', series_objectives.OBJECTIVES)
def test_cli_pretrains_each_series_objective(tmp_path, objective, capsys):
  np.save(tmp_path / 'w.npy', waves(40, 64)[0])
  assert cli.main(['pretrain', '--workdir', str(tmp_path / 'run'),
                   *tiny_run(tmp_path / 'w.npy', objective)]) == 0
  assert f"'eval_{objective}_loss'" in capsys.readouterr().out
  lines = [json.loads(x) for x in (tmp_path / 'run' / 'metrics.jsonl').read_text().split('\n')
           if x]
  assert all(np.isfinite(x['loss']) for x in lines if 'loss' in x)


def _config(path, objective='masked_patch', **extra):
  return config_lib.load(None, [a for a in tiny_run(path, objective, **extra) if a != '--set'])


def test_a_stopped_run_continues_exactly(tmp_path):
  np.save(tmp_path / 'w.npy', waves(40, 64)[0])
  config = _config(tmp_path / 'w.npy', **{'train.steps': 6, 'train.checkpoint_every': 2})
  whole = loop.pretrain(config, tmp_path / 'whole')
  loop.pretrain(config, tmp_path / 'parts', stop_after=2)
  assert loop.pretrain(config, tmp_path / 'parts')['loss'] == whole['loss']


def test_pretraining_lowers_the_masked_patch_loss(tmp_path):
  np.save(tmp_path / 'w.npy', waves(64, 64)[0])
  config = _config(tmp_path / 'w.npy', **{
      'train.steps': 60, 'train.eval_every': 0, 'train.checkpoint_every': 60,
      'model.hidden_size': 32, 'model.positions': 'rope', 'optimizer.learning_rate': 0.01})
  loop.pretrain(config, tmp_path / 'run')
  losses = [json.loads(x)['loss'] for x in (tmp_path / 'run' / 'metrics.jsonl').read_text()
            .split('\n') if x and '"loss"' in x]
  assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:3])  # about 0.5 of it


@pytest.mark.slow  # three runs each
@pytest.mark.parametrize('objective', series_objectives.OBJECTIVES)
def test_the_mesh_and_pmap_steps_equal_one_device(tmp_path, objective):
  np.save(tmp_path / 'w.npy', waves(40, 64)[0])
  finals = []
  for strategy, data in (('jit', 1), ('jit', 8), ('pmap', -1)):
    config = _config(tmp_path / 'w.npy', objective, **{
        'mesh.data': data, 'train.eval_every': 0, 'parallel.strategy': strategy})
    finals.append(loop.pretrain(config, tmp_path / f'{strategy}{data}')['loss'])
  assert finals[1] == pytest.approx(finals[0], rel=1e-4)
  assert finals[2] == pytest.approx(finals[0], rel=1e-4)


# ----------------------------------------------------------------------- evaluations


def test_probe_beats_the_majority_class(tmp_path):
  values, labels = waves(48, 64, seed=1)
  np.savez(tmp_path / 'train.npz', values=values[:24], labels=labels[:24])
  np.savez(tmp_path / 'test.npz', values=values[24:], labels=labels[24:])
  assert cli.main(['pretrain', '--workdir', str(tmp_path / 'run'),
                   *tiny_run(tmp_path / 'train.npz')]) == 0
  assert cli.main(['series', 'probe', str(tmp_path / 'run'), '--train',
                   str(tmp_path / 'train.npz'), '--test', str(tmp_path / 'test.npz'),
                   '--seeds', '1', '--out', str(tmp_path / 'out')]) == 0
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert results['baselines']['majority'] == 0.5
  assert results['summary']['pretrained'] > 0.65 and results['summary']['scratch'] > 0.65
  assert '| majority | 0.500 |' in (tmp_path / 'out' / 'report.md').read_text()


def test_fine_tuning_beats_the_majority_class(tmp_path):
  values, labels = waves(48, 64, seed=2)
  np.savez(tmp_path / 'train.npz', values=values[:24], labels=labels[:24])
  np.savez(tmp_path / 'test.npz', values=values[24:], labels=labels[24:])
  assert cli.main(['pretrain', '--workdir', str(tmp_path / 'run'),
                   *tiny_run(tmp_path / 'train.npz')]) == 0
  assert cli.main(['series', 'finetune', str(tmp_path / 'run'), '--train',
                   str(tmp_path / 'train.npz'), '--test', str(tmp_path / 'test.npz'),
                   '--seeds', '1', '--out', str(tmp_path / 'out')]) == 0
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert results['method'] == 'series_finetune'
  assert results['summary']['pretrained'] > 0.8 and results['summary']['scratch'] > 0.8


def test_forecasts_are_scored_against_naive_and_seasonal_naive(tmp_path):
  t = np.arange(1200)
  np.save(tmp_path / 'one.npy', (np.sin(2 * np.pi * t / 24) + 0.01 * t)[None])
  assert cli.main(['pretrain', '--workdir', str(tmp_path / 'run'), *tiny_run(
      tmp_path / 'one.npy', 'next_patch', **{'data.eval_fraction': 0.25})]) == 0
  assert cli.main(['series', 'forecast', str(tmp_path / 'run'), '--out',
                   str(tmp_path / 'out')]) == 0
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert results['period'] == 24 and results['held_out_from'] == 900
  assert results['scores']['seasonal_naive']['mse'] < results['scores']['naive']['mse']
  assert (tmp_path / 'out' / 'forecast.png').stat().st_size > 1000


def test_auroc_counts_ties_half_and_needs_both_classes():
  assert series_eval.auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
  assert series_eval.auroc([0, 1, 0, 1], [1, 1, 1, 1]) == 0.5
  assert series_eval.auroc([1, 0, 0], [0.1, 0.5, 0.2]) == 0.0
  with pytest.raises(UserError, match='both normal and anomalous'):
    series_eval.auroc([0, 0], [1, 2])


def test_anomaly_scores_find_a_labelled_spike(tmp_path):
  t = np.arange(1200)
  value = np.sin(2 * np.pi * t / 24)
  np.save(tmp_path / 'normal.npy', value[None])
  labels = (t >= 1000) & (t < 1004)
  value = np.where(labels, value + 3, value)
  (tmp_path / 'test.csv').write_text('value,is_anomaly\n' + ''.join(
      f'{v},{int(a)}\n' for v, a in zip(value, labels)))
  assert cli.main(['pretrain', '--workdir', str(tmp_path / 'run'), *tiny_run(
      tmp_path / 'normal.npy', 'next_patch')]) == 0
  assert cli.main(['series', 'anomaly', str(tmp_path / 'run'), '--data',
                   str(tmp_path / 'test.csv'), '--out', str(tmp_path / 'out')]) == 0
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert results['anomalous_steps'] == 4 and results['period'] == 24
  seasonal = results['scores']['seasonal_naive']
  assert seasonal['auroc'] > 0.99 and seasonal['top_in_anomaly']
  assert 0 <= results['scores']['model']['auroc'] <= 1


def test_seasonal_period_and_nearest_neighbour():
  t = np.arange(500)
  assert series_eval.seasonal_period(np.sin(2 * np.pi * t / 37), 200) == 37
  assert series_eval.seasonal_period(np.sin(2 * np.pi * t / 37) + 0.05 * t, 200) == 37
  up, down = np.arange(4.0)[:, None], -np.arange(4.0)[:, None]
  pred = series_eval.nearest_neighbour(np.stack([up, down]), np.array([0, 1]),
                                       np.stack([10 * down + 3, up + 100]))
  assert pred.tolist() == [1, 0]  # shapes, whatever their level and scale


def test_the_probe_refuses_a_decoder_free_forecast(tmp_path):
  np.save(tmp_path / 'w.npy', waves(40, 64)[0])
  assert cli.main(['pretrain', '--workdir', str(tmp_path / 'run'),
                   *tiny_run(tmp_path / 'w.npy')]) == 0
  with pytest.raises(UserError, match='forecasts come from a patch_decoder'):
    series_eval.forecast(tmp_path / 'run')


# ----------------------------------------------------------------------------- images


def test_an_images_patches_are_its_square_blocks_in_raster_order():
  images = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
  rows = series.patch_rows(images, 2, 'x')
  assert rows.shape == (2, 6 * 2, 2 * 3)  # 6 patches of 2 steps, each a row of 2 pixels
  patches_NxLxPxC = patches.to_patches(jnp.asarray(rows), 2)  # how the patch models cut
  for n, i, j in ((0, 0, 0), (1, 0, 2), (1, 1, 1)):
    block = images[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(2, 6)
    np.testing.assert_array_equal(patches_NxLxPxC[n, 3 * i + j], block)
  with pytest.raises(UserError, match=r'x: images of 4 x 6 pixels do not split into patches '
                     r'of 4 x 4'):
    series.patch_rows(images, 4, 'x')


def test_image_sources_load_as_patch_series(tmp_path):
  train, test = series.load('digits', 2), series.load('digits:test', 2)
  assert train.values.shape == (1258, 32, 2) and test.values.shape == (539, 32, 2)
  assert set(train.labels.tolist()) == set(range(10))
  np.savez(tmp_path / 'x.npz', images=np.ones((3, 4, 4)), labels=np.arange(3))
  assert series.load(str(tmp_path / 'x.npz'), 2).values.shape == (3, 8, 2)
  with pytest.raises(UserError, match='holds images: read them with a patch model'):
    series.load(str(tmp_path / 'x.npz'))
  with pytest.raises(UserError, match='digits takes the split train or test'):
    series.load('digits:dev', 2)
  np.savez(tmp_path / 'flat.npz', images=np.ones((3, 16)))
  with pytest.raises(UserError, match=r'`images` has shape \(3, 16\); expected N x H x W'):
    series.load(str(tmp_path / 'flat.npz'), 2)


def test_digits_pretrain_and_probe_from_the_cli(tmp_path):
  """The configs/mae_digits.py path at a tiny size: masked patches of images, then the
  probe on the held-out digits beats the majority class."""
  run = str(tmp_path / 'run')
  assert cli.main(['pretrain', '--workdir', run, *tiny_run(
      'digits', **{'model.patch_len': 2, 'train.batch_size': 32})]) == 0
  assert cli.main(['series', 'probe', run, '--seeds', '1', '--out',
                   str(tmp_path / 'out')]) == 0
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert results['test'] == 'digits:test' and results['classes'] == 10
  assert results['summary']['pretrained'] > 3 * results['baselines']['majority']


def test_reconstruction_errors_score_images_the_encoder_never_saw(tmp_path):
  """Pretrained on digits other than 9 (a few steps), the encoder scores each test image by
  its masked-patch reconstruction error; AUROC of the 9s against the rest, beside PCA and
  the nearest pretraining image. Bad labels are one line."""
  from sklearn import datasets
  digits = datasets.load_digits()
  normal, odd = digits.target[:600] != 9, digits.target[600:900]
  np.savez(tmp_path / 'normal.npz', images=digits.images[:600][normal],
           labels=digits.target[:600][normal])
  np.savez(tmp_path / 'test.npz', images=digits.images[600:900], labels=odd)
  run = str(tmp_path / 'run')
  assert cli.main(['pretrain', '--workdir', run, *tiny_run(
      tmp_path / 'normal.npz', **{'model.patch_len': 2, 'train.batch_size': 32})]) == 0
  out = tmp_path / 'out'
  assert cli.main(['series', 'anomaly', run, '--data', str(tmp_path / 'test.npz'),
                   '--anomalous', '9', '--out', str(out)]) == 0
  results = json.loads((out / 'results.json').read_text())
  assert results['anomalous'] == int((odd == 9).sum()) and results['scored'] == 300
  assert set(results['scores']) == {'reconstruction', 'pca', 'nearest_normal'}
  assert results['scores']['nearest_normal']['auroc'] > 0.8  # the data path is right
  assert 0 <= results['scores']['reconstruction']['auroc'] <= 1
  with pytest.raises(UserError, match='name the anomalous labels'):
    series_eval.anomaly(run, str(tmp_path / 'test.npz'))
  with pytest.raises(UserError, match='has no series labelled 11'):
    series_eval.anomaly(run, str(tmp_path / 'test.npz'), anomalous=('11',))


def test_pca_errors_are_zero_inside_the_subspace():
  rng = np.random.default_rng(0)
  basis = rng.normal(size=(2, 12))
  train = rng.normal(size=(50, 2)) @ basis
  inside, outside = rng.normal(size=(3, 2)) @ basis, rng.normal(size=(3, 12))
  errors = series_eval.pca_errors(train, np.concatenate([inside, outside]), variance=0.99)
  assert errors[:3].max() < 1e-10 < errors[3:].min()


# ----------------------------------------------------------------------- auto-encoder


def test_the_autoencoder_rebuilds_every_patch_from_its_code_alone():
  """Two series with the same code rebuild the same patches: the decoder reads nothing
  else. Noise in the batch changes the code; without it the code is deterministic."""
  model = models.build(tiny_cfg('patch_autoencoder', bottleneck=3), nnx.Rngs(0))
  values = jnp.asarray(waves(3, 32, 2)[0])
  code = model.encode({'values': values})
  assert code.shape == (3, 3)
  rebuilt = model.predict_patches(model({'values': values}))
  assert rebuilt.shape == (3, 8, 4, 2)
  noise = jnp.ones((3, 8, 4, 2))
  assert not np.allclose(model.encode({'values': values, 'noise': noise}), code)
  model.encode = lambda batch, key=None: jnp.broadcast_to(code[:1], code.shape)
  same = model.predict_patches(model({'values': values}))
  np.testing.assert_allclose(same[0], same[2], atol=1e-6)


def test_denoise_noise_is_drawn_from_the_global_row():
  key = jax.random.key(0)
  noise = series_objectives.noise(key, jnp.arange(4), (8, 4, 2), 0.5)
  again = series_objectives.noise(key, jnp.arange(2, 4), (8, 4, 2), 0.5)
  np.testing.assert_array_equal(noise[2:], again)
  assert 0.4 < float(noise.std()) < 0.6


def test_the_autoencoder_learns_and_scores_anomalies(tmp_path):
  """denoise lowers its loss on images, its code feeds the probe, and its reconstruction
  error is an anomaly score (auto-encoders' one-class use)."""
  from sklearn import datasets
  digits = datasets.load_digits()
  normal = digits.target[:600] != 9
  np.savez(tmp_path / 'normal.npz', images=digits.images[:600][normal],
           labels=digits.target[:600][normal])
  np.savez(tmp_path / 'test.npz', images=digits.images[600:800],
           labels=digits.target[600:800])
  run = str(tmp_path / 'run')
  assert cli.main(['pretrain', '--workdir', run, *tiny_run(
      tmp_path / 'normal.npz', 'denoise', **{
          'model.patch_len': 2, 'model.bottleneck': 8, 'train.batch_size': 32,
          'train.steps': 40, 'train.eval_every': 40, 'train.checkpoint_every': 40,
          'optimizer.learning_rate': 0.003})]) == 0
  losses = [json.loads(x)['loss'] for x in (tmp_path / 'run' / 'metrics.jsonl').read_text()
            .split('\n') if x and '"loss"' in x]
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])
  assert cli.main(['series', 'anomaly', run, '--data', str(tmp_path / 'test.npz'),
                   '--anomalous', '9', '--out', str(tmp_path / 'out')]) == 0
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert results['model'] == 'patch_autoencoder'
  assert 0 <= results['scores']['reconstruction']['auroc'] <= 1
  kept = digits.target[600:800] != 9
  np.savez(tmp_path / 'test_normal.npz', images=digits.images[600:800][kept],
           labels=digits.target[600:800][kept])
  assert cli.main(['series', 'probe', run, '--train', str(tmp_path / 'normal.npz'), '--test',
                   str(tmp_path / 'test_normal.npz'), '--seeds', '1', '--out',
                   str(tmp_path / 'probe')]) == 0
  probe = json.loads((tmp_path / 'probe' / 'results.json').read_text())
  assert probe['summary']['pretrained'] > 2 * probe['baselines']['majority']  # the code


# -------------------------------------------------------------------------- contrastive


def test_nt_xent_is_simclrs_loss_and_the_same_over_devices():
  z = jax.random.normal(jax.random.key(0), (8, 5))
  unit = np.asarray(z / jnp.linalg.norm(z, axis=1, keepdims=True))
  sim = unit @ unit.T / 0.1
  np.fill_diagonal(sim, -np.inf)
  twin = np.r_[np.arange(4, 8), np.arange(4)]
  reference = -(sim[np.arange(8), twin] - np.log(np.exp(sim).sum(1))).sum()
  assert float(series_objectives.nt_xent_sums(z, 0.1)['loss']) == pytest.approx(reference,
                                                                                 rel=1e-5)
  per_device = jnp.stack([jnp.concatenate([z[2 * i:2 * i + 2], z[4 + 2 * i:6 + 2 * i]])
                          for i in range(2)])  # each device: its rows of view a, then of b
  sharded = jax.vmap(lambda x: series_objectives.nt_xent_sums(x, 0.1, 'd')['loss'],
                     axis_name='d')(per_device)
  assert float(sharded.sum()) == pytest.approx(reference, rel=1e-5)


def test_contrastive_needs_a_projection_and_the_whole_batch():
  base = ['objective=contrastive', 'model.arch=patch_encoder', 'data.source=series']
  with pytest.raises(UserError, match='needs a projection head'):
    config_lib.load(None, base)
  with pytest.raises(UserError, match='train.grad_accum=1'):
    config_lib.load(None, base + ['model.projection=8', 'train.grad_accum=2'])


def test_contrastive_pretraining_separates_digits(tmp_path):
  """SimCLR views of digits: the loss falls and a probe of the pooled states beats the
  majority class."""
  run = str(tmp_path / 'run')
  assert cli.main(['pretrain', '--workdir', run, *tiny_run('digits', 'contrastive', **{
      'model.patch_len': 2, 'train.batch_size': 32, 'train.steps': 30,
      'train.eval_every': 30, 'train.checkpoint_every': 30, 'mlm.rate': 0.3,
      'optimizer.learning_rate': 0.003})]) == 0
  losses = [json.loads(x)['loss'] for x in (tmp_path / 'run' / 'metrics.jsonl').read_text()
            .split('\n') if x and '"loss"' in x]
  assert np.mean(losses[-5:]) < np.mean(losses[:3])
  assert cli.main(['series', 'probe', run, '--seeds', '1', '--out', str(tmp_path / 'p')]) == 0
  probe = json.loads((tmp_path / 'p' / 'results.json').read_text())
  assert probe['summary']['pretrained'] > 3 * probe['baselines']['majority']
