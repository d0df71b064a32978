"""The continuous twins of MLM and CLM, and a de-noising auto-encoder, on patches of
series (models.patches).

masked_patch (PatchTST, MAE): a fixed share (mlm.rate) of each window's patches is replaced
by the mask vector; the loss is the mean squared error of the reconstructed masked patches,
in the normalisation the encoder reads. next_patch: position t of the causal decoder
predicts patch t + 1, in the normalisation of patches 0..t, scored from t = L / 2 on: with
less context the running spread of a smooth series is tiny and the next patch lies tens of
spreads away, so the first positions' squared errors would drown the rest (the forecast, at
the last position, has the whole window). denoise (the auto-encoder with a bottleneck):
Gaussian noise of spread mlm.noise is added to the normalised patches, and the loss is the
squared error of every clean patch rebuilt from the bottleneck. contrastive (SimCLR): two
views of each series (mlm.rate of its patches masked, noise of spread mlm.noise added),
and NT-Xent over the whole global batch: each view's projection must pick its twin out of
the 2B - 1 others.

Sums, never means, as in `objectives`: loss = squared error summed over the predicted patches'
values / (P x C), count = predicted patches; the step divides by the global count.
"""

import jax
import jax.numpy as jnp

from ssljax.models import patches

OBJECTIVES = ('masked_patch', 'next_patch', 'denoise', 'contrastive')
ARCH = {'masked_patch': 'patch_encoder', 'next_patch': 'patch_decoder',
        'denoise': 'patch_autoencoder', 'contrastive': 'patch_encoder'}


def num_masked(length: int, rate: float) -> int:
  """Patches masked in every window of `length` patches: at least one, one left visible."""
  return min(max(1, round(length * rate)), length - 1)


def predicting(length: int) -> int:
  """Positions whose next patch next_patch scores: t = length // 2 .. length - 2."""
  return length - 1 - length // 2


def mask_patches(key, rows_B, length: int, rate: float):
  """B x L booleans, exactly `num_masked` True per row, drawn from (key, global row) so that
  any mesh or pmap masks the same patches."""
  count = num_masked(length, rate)

  def row(r):
    score_L = jax.random.uniform(jax.random.fold_in(key, r), (length,))
    return jnp.argsort(jnp.argsort(score_L)) < count

  return jax.vmap(row)(rows_B)


def noise(key, rows_B, shape_LxPxC, spread: float):
  """B x L x P x C Gaussian noise drawn from (key, global row), as masks are."""
  return jax.vmap(lambda r: spread * jax.random.normal(jax.random.fold_in(key, r),
                                                       shape_LxPxC))(rows_B)


def prepare(objective, batch, key, rows_B, patch_len: int, mlm):
  """(model inputs, masks, counts before any psum) of a batch of B x T x C windows; `mlm`
  is the config section of the corruption (rate, noise)."""
  b, steps, channels = batch['values'].shape
  length = steps // patch_len
  if objective == 'next_patch':
    return batch, {}, {'next_patch': jnp.asarray(float(b * predicting(length)))}
  if objective == 'denoise':
    noise_BxLxPxC = noise(key, rows_B, (length, patch_len, channels), mlm.noise)
    return dict(batch, noise=noise_BxLxPxC), {}, {'denoise': jnp.asarray(float(b * length))}
  if objective == 'contrastive':  # views a then b: 2B rows
    keys = jax.random.split(key, 4)
    views = {'values': jnp.concatenate([batch['values']] * 2),
             'masked': jnp.concatenate([mask_patches(k, rows_B, length, mlm.rate)
                                        for k in keys[:2]]),
             'noise': jnp.concatenate([noise(k, rows_B, (length, patch_len, channels),
                                             mlm.noise) for k in keys[2:]])}
    return views, {}, {'contrastive': jnp.asarray(float(2 * b))}
  masked_BxL = mask_patches(key, rows_B, length, mlm.rate)
  return (dict(batch, masked=masked_BxL), {'masked': masked_BxL},
          {'masked_patch': jnp.asarray(float(b * num_masked(length, mlm.rate)))})


def _squared_error_sums(pred_BxLxPxC, target_BxLxPxC, weights_BxL):
  per_patch_BxL = ((pred_BxLxPxC - target_BxLxPxC) ** 2).mean((2, 3))
  return {'loss': (per_patch_BxL * weights_BxL).sum(), 'count': weights_BxL.sum()}


def nt_xent_sums(z_2BxP, temperature: float, axis_name=None):
  """NT-Xent of views a (rows :B) and b (rows B:) against every view of the global batch:
  under pmap or a shard_map (`axis_name`) the other devices' projections are gathered, so
  the loss is the one device's over the whole batch."""
  z_2BxP = z_2BxP / jnp.linalg.norm(z_2BxP, axis=1, keepdims=True)
  b = z_2BxP.shape[0] // 2
  local_a, local_b = z_2BxP[:b], z_2BxP[b:]
  gather = lambda x: (x if axis_name is None
                      else jax.lax.all_gather(x, axis_name, tiled=True))
  all_a, all_b = gather(local_a), gather(local_b)
  offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * b
  rows_B = offset + jnp.arange(b)

  def anchored(anchor_BxP, same_NxP, other_NxP):
    same_BxN = anchor_BxP @ same_NxP.T / temperature
    same_BxN = jnp.where(jnp.arange(same_NxP.shape[0])[None] == rows_B[:, None], -jnp.inf,
                         same_BxN)  # a view is not its own negative
    logits_Bx2N = jnp.concatenate([anchor_BxP @ other_NxP.T / temperature, same_BxN], 1)
    return -jax.nn.log_softmax(logits_Bx2N)[jnp.arange(b), rows_B].sum()

  loss = anchored(local_a, all_a, all_b) + anchored(local_b, all_b, all_a)
  return {'loss': loss, 'count': jnp.asarray(2.0 * b)}


def head_sums(model, hidden_BxLxH, batch, masks, objective, mlm=None, axis_name=None):
  """{objective: {loss, count}} of the model's patch predictions against the normalised
  patches of the unmasked batch (contrastive: of its views' projections)."""
  if objective == 'contrastive':
    return {objective: nt_xent_sums(model.project(hidden_BxLxH), mlm.temperature, axis_name)}
  pred_BxLxPxC = model.predict_patches(hidden_BxLxH)
  if objective in ('masked_patch', 'denoise'):  # the masked patches, or every one
    weights_BxL = (masks['masked'].astype(jnp.float32) if objective == 'masked_patch'
                   else jnp.ones(pred_BxLxPxC.shape[:2], jnp.float32))
    return {objective: _squared_error_sums(pred_BxLxPxC, model.normalise(batch['values']),
                                           weights_BxL)}
  # position t's prediction against patch t + 1, normalised by the statistics of 0..t
  raw_BxLxPxC = patches.to_patches(batch['values'].astype(jnp.float32), model.cfg.patch_len)
  mean_BxLx1xC, std_BxLx1xC = patches.causal_stats(raw_BxLxPxC)
  first = raw_BxLxPxC.shape[1] // 2
  target_BxKxPxC = ((raw_BxLxPxC[:, first + 1:] - mean_BxLx1xC[:, first:-1])
                    / std_BxLx1xC[:, first:-1])
  weights_BxK = jnp.ones(target_BxKxPxC.shape[:2], jnp.float32)
  return {objective: _squared_error_sums(pred_BxLxPxC[:, first:-1], target_BxKxPxC,
                                         weights_BxK)}
