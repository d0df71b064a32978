"""Attention kernels behind one call, chosen by `model.attention`.

- `xla`: einsums and a float32 softmax over a B x N x L x L matrix; any backend (CPU's).
- `splash`: TPU's Pallas splash attention: fused, the L x L scores live in on-chip tiles
  only. Documents come in as segment ids (doc_ids), causal or full, and it runs inside
  `jax.shard_map` over the mesh's row and head axes (Mosaic kernels cannot be
  partitioned automatically).
- `cudnn`: cuDNN's fused attention on GPU. It has no segment ids; what it gets instead
  depends on how many documents a row may hold (`DocMask.max_docs`):
  1 (an encoder's rows, fine-tuning and inference rows): the row's length, through
  `jax.nn.dot_product_attention(query_seq_lengths=...)`, no mask at all;
  n > 1 (packed causal-LM rows, `model.max_docs_per_row`): cuDNN's packed layout, each
  document's offset and length in the row (jax's cuDNN module; Hopper or newer, older GPUs
  take the dense mask), so every document is its own sequence to the kernel and no mask is
  built;
  0 (any number): the same-document mask as a dense B x 1 x L x L boolean, which cuDNN
  reads as an additive bias from HBM in every layer, forward and backward.

`auto` picks the backend's fused kernel where it computes what XLA's path does: no
attention dropout (neither kernel has it), for splash a length in 128-token tiles, for
cuDNN a 16-bit compute dtype (it has no float32 kernel).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from ssljax import sharding
from ssljax.errors import UserError

KERNELS = ('auto', 'xla', 'splash', 'cudnn')
FUSED = {'tpu': 'splash', 'gpu': 'cudnn'}  # the fused kernel of each backend
SPLASH_TILE = 128  # splash's tiles are multiples of this
SPLASH_BLOCK = 512  # the largest tile used


@functools.partial(jax.tree_util.register_dataclass, data_fields=['doc_ids_BxL'],
                   meta_fields=['causal', 'max_docs'])
@dataclasses.dataclass(frozen=True)
class DocMask:
  """Who attends to whom, as document ids: a token attends to tokens of its own document
  (id > 0), and with `causal` only to earlier ones. Kept as ids so that kernels with
  segment ids never build the B x L x L mask; `dense` builds it for the others.
  `max_docs`: the most documents a row holds, each a contiguous run of one id with the
  padding after them (0: unknown); cuDNN's layouts need it fixed."""
  doc_ids_BxL: jax.Array
  causal: bool
  max_docs: int = 0

  def dense(self):
    """B x 1 x L x L booleans, broadcast over heads."""
    doc_ids_BxL = self.doc_ids_BxL
    same_BxLxL = doc_ids_BxL[:, :, None] == doc_ids_BxL[:, None, :]
    mask_BxLxL = same_BxLxL & (doc_ids_BxL[:, None, :] > 0)
    if self.causal:
      length = doc_ids_BxL.shape[1]
      mask_BxLxL &= jnp.tril(jnp.ones((length, length), bool))
    return mask_BxLxL[:, None]


def dense(mask):
  """The B x 1 x L x S boolean mask of a DocMask, or the mask itself."""
  return mask.dense() if isinstance(mask, DocMask) else mask


def resolve(setting: str, platform: str, *, dropout: bool, length: int | None = None,
            dtype: str = 'bfloat16') -> str:
  """The kernel `setting` means on `platform` ('cpu', 'tpu', 'gpu'), for a run with or
  without attention dropout, rows of `length` tokens (None: not known yet) and `dtype`
  (model.dtype) as the compute dtype."""
  if setting not in KERNELS:
    raise UserError(f"model.attention={setting!r}: choose one of {', '.join(KERNELS)}")
  if setting == 'xla':
    return 'xla'
  fused = FUSED.get(platform)
  tiles = length is None or length % SPLASH_TILE == 0
  half = dtype != 'float32'
  if setting == 'auto':
    fits = tiles if fused == 'splash' else half
    return fused if fused and not dropout and fits else 'xla'
  if fused != setting:
    raise UserError(f'model.attention={setting} runs on '
                    f"{'TPU' if setting == 'splash' else 'GPU'}, not on {platform}: use auto")
  if dropout:
    raise UserError(f'model.attention={setting} has no attention dropout: set '
                    'model.attention_dropout_rate=0 or model.attention=xla')
  if setting == 'cudnn' and not half:
    raise UserError('model.attention=cudnn runs in bfloat16: set model.dtype=bfloat16 or '
                    'model.attention=xla')
  if setting == 'splash' and not tiles:
    raise UserError(f'model.attention=splash needs rows of a multiple of {SPLASH_TILE} '
                    f'tokens, not {length}: change data.seq_len or use model.attention=xla')
  return setting


def attend(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask, kernel: str, rows=sharding.BATCH,
           interpret: bool = False):
  """softmax(q k^T / sqrt(D)) v over the keys `mask` allows, B x L x N x D, by `kernel`:
  `auto` is the fused kernel of the backend in use, a named one is taken as given (`resolve`
  checks it where a run starts). `rows`: the mesh axes that split the batch; `interpret`
  runs a Pallas kernel in interpret mode (tests on CPU)."""
  if kernel == 'auto':
    kernel = resolve('auto', jax.default_backend(), dropout=False, length=q_BxLxNxD.shape[1],
                     dtype=q_BxLxNxD.dtype.name)
  if kernel == 'splash':
    return _splash(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask, rows, interpret)
  if kernel == 'cudnn':
    local = functools.partial(_cudnn_rows, causal=mask.causal, max_docs=mask.max_docs)
    if jax.sharding.get_abstract_mesh().manual_axes:
      # Inside the data-parallel accumulation's shard_map, jax's partitioner of the cuDNN
      # call fails (an AssertionError from custom_partitioning, found compiling albert_base
      # for h100:8): the kernel then runs per device, as splash does.
      return _per_device(local, q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask.doc_ids_BxL, rows)
    return local(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask.doc_ids_BxL)
  return jax.nn.dot_product_attention(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask=dense(mask))


def _cudnn_rows(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, doc_ids_BxL, causal, max_docs):
  """cuDNN's attention on rows of at most `max_docs` documents (see the module's
  docstring); padding positions come out 0."""
  real_BxL = doc_ids_BxL > 0
  if max_docs == 1:
    lengths_B = real_BxL.sum(axis=1, dtype=jnp.int32)
    out_BxLxNxD = jax.nn.dot_product_attention(
        q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, is_causal=causal, query_seq_lengths=lengths_B,
        key_value_seq_lengths=lengths_B, implementation='cudnn')
  elif max_docs > 1 and _cudnn_packs():
    from jax._src.cudnn import fused_attention_stablehlo as cudnn
    lengths_BxM, starts_BxM1 = packed_layout(doc_ids_BxL, max_docs)
    out_BxLxNxD = cudnn.dot_product_attention(
        q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, q_seqlen=lengths_BxM, kv_seqlen=lengths_BxM,
        q_offsets=starts_BxM1, kv_offsets=starts_BxM1, scale=q_BxLxNxD.shape[-1] ** -0.5,
        mask_type=cudnn.MaskType.CAUSAL if causal else cudnn.MaskType.NO_MASK)
  else:
    within = dense(DocMask(doc_ids_BxL, causal=False))
    out_BxLxNxD = jax.nn.dot_product_attention(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask=within,
                                               is_causal=causal, implementation='cudnn')
  return jnp.where(real_BxL[:, :, None, None], out_BxLxNxD, 0).astype(q_BxLxNxD.dtype)


def _cudnn_packs() -> bool:
  """Whether the GPU compiled for takes cuDNN's packed layout (Hopper or newer)."""
  from jax._src.cudnn import fused_attention_stablehlo as cudnn
  return cudnn.check_compute_capability('9.0')


def packed_layout(doc_ids_BxL, max_docs: int):
  """cuDNN's packed layout of rows of contiguous documents: each document's length
  (B x M) and first position (B x M+1), -1 past a row's last document; M = `max_docs`. A
  row with more documents loses the later ones (the data caps rows at M)."""
  b, length = doc_ids_BxL.shape
  real_BxL = doc_ids_BxL > 0
  previous_BxL = jnp.pad(doc_ids_BxL, ((0, 0), (1, 0)))[:, :-1]
  first_BxL = real_BxL & (doc_ids_BxL != previous_BxL)
  doc_BxL = jnp.cumsum(first_BxL, axis=1) - 1  # the index of each token's document in its row
  rows_Bx1 = jnp.arange(b)[:, None]
  lengths_BxM = jnp.zeros((b, max_docs), jnp.int32).at[
      rows_Bx1, jnp.where(real_BxL, doc_BxL, max_docs)].add(1, mode='drop')
  starts_BxM1 = jnp.full((b, max_docs + 1), -1, jnp.int32).at[
      rows_Bx1, jnp.where(first_BxL & (doc_BxL < max_docs), doc_BxL, max_docs + 1)].set(
          jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (b, length)), mode='drop')
  return jnp.where(lengths_BxM > 0, lengths_BxM, -1), starts_BxM1


def _splash_rows(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, doc_ids_BxL, causal, interpret):
  """Splash attention over the rows and heads on one device."""
  from jax.experimental.pallas.ops.tpu.splash_attention import (
    splash_attention_kernel as splash,
    splash_attention_mask as masks,
  )
  _, length, heads, depth = q_BxLxNxD.shape
  block = max(b for b in range(SPLASH_TILE, min(SPLASH_BLOCK, length) + 1, SPLASH_TILE)
              if length % b == 0)
  shape = (length, length)
  head_mask = masks.CausalMask(shape) if causal else masks.FullMask(shape)
  kernel = splash.make_splash_mha(
      masks.MultiHeadMask([head_mask] * heads), head_shards=1, q_seq_shards=1,
      block_sizes=splash.BlockSizes(
          block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
          block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block),
      interpret=interpret)
  heads_first = lambda t: t.transpose(0, 2, 1, 3)  # B x N x L x D, as splash reads them
  q_BxNxLxD = heads_first(q_BxLxNxD * jnp.asarray(depth ** -0.5, q_BxLxNxD.dtype))
  segments = splash.SegmentIds(q=doc_ids_BxL, kv=doc_ids_BxL)
  out_BxNxLxD = jax.vmap(kernel)(q_BxNxLxD, heads_first(k_BxLxNxD), heads_first(v_BxLxNxD),
                                 segments)
  return heads_first(out_BxNxLxD)


def _splash(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask: DocMask, rows, interpret):
  """Splash over a mesh: each device runs the kernel on its rows and heads. Padding (doc
  id 0) is a segment of its own, which real tokens never see."""
  local = functools.partial(_splash_rows, causal=mask.causal, interpret=interpret)
  return _per_device(local, q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask.doc_ids_BxL, rows)


def _per_device(local, q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, doc_ids_BxL, rows):
  """`local` (q, k, v, doc ids) on each device's rows and heads of the mesh in use."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return local(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, doc_ids_BxL)
  qkv, doc_ids = sharding.per_device_specs(rows)  # inside a shard_map over data: the rest
  return jax.shard_map(local, mesh=mesh, in_specs=(qkv, qkv, qkv, doc_ids),
                       out_specs=qkv, check_vma=False)(
                           q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, doc_ids_BxL)
