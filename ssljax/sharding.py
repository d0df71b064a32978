"""Where arrays lie on the device mesh: its axes, and one table from the logical names that
parameters and activations carry to those axes.

The mesh is (data, fsdp, tensor). Rows of the batch ('batch') are split over data x fsdp;
fsdp also splits parameters along 'embed' (FSDP); tensor splits attention heads, MLP units
and the vocabulary. No other module names a mesh axis: models constrain activations by
logical name here, `pretrain.parallel` builds the mesh and the shardings from `AXES` and
`RULES`. Each constraint is a no-op without such a mesh (one device, pmap).
"""

import jax
from jax.sharding import PartitionSpec as P

AXES = ('data', 'fsdp', 'tensor')
BATCH: tuple[str, ...] = ('data', 'fsdp')  # the axes that split the rows
RULES: dict[str, str | tuple[str, ...] | None] = {
    'batch': BATCH,
    'embed': 'fsdp',
    'heads': 'tensor',
    'mlp': 'tensor',
    'vocab': 'tensor',  # the embedding and the logits over vocab are split too
    'layers': None,
}
# Gradient accumulation over micro-batches runs per device as a shard_map over this axis
# when it has more than one device (pretrain/step.py: it saves an all-reduce per micro-batch).
ACCUMULATION = 'data'


def to_mesh(spec: P) -> P:
  """A PartitionSpec of logical names as one of mesh axes."""
  return P(*(RULES.get(name) if isinstance(name, str) else name for name in spec))


def _mesh_with_rows():
  """The abstract mesh in use where it has the row axes, else None."""
  mesh = jax.sharding.get_abstract_mesh()
  return None if mesh.empty or not set(BATCH) <= set(mesh.axis_names) else mesh


def constrain_rows(x, axis=0):
  """Under a (data, fsdp, ...) mesh, keeps `x` split by rows (dim `axis`) over data x fsdp.

  Without it GSPMD may follow the fsdp-sharded weights instead and all-reduce whole-batch
  activations in every layer; with it weights are all-gathered per layer and gradients
  reduce-scattered (FSDP).
  """
  mesh = _mesh_with_rows()
  if mesh is None:
    return x
  axes = tuple(a for a in BATCH if a not in mesh.manual_axes)  # a shard_map split those
  return jax.lax.with_sharding_constraint(x, P(*(None,) * axis, axes)) if axes else x


def gather_whole(w):
  """Under a mesh that splits nothing but rows, `w` whole on every chip (FSDP gathers it).

  Else XLA may keep the kernel split over its contraction dim and run the matmul as a
  windowed loop, one trip per shard, that reads and writes whole activations each trip
  (issue 20: 394 of 470 GB of HBM traffic per chip and step, gpt_small on v5p-64).
  """
  mesh = _mesh_with_rows()
  if (mesh is None or mesh.size == 1 or mesh.manual_axes
      or any(n > 1 for a, n in mesh.shape.items() if a not in BATCH)):
    return w
  return jax.lax.with_sharding_constraint(w, P())


def per_device_specs(rows=BATCH) -> tuple[P, P]:
  """(q/k/v as B x L x N x D, doc ids as B x L) split by `rows` and heads over the mesh axes
  in use that a shard_map has not taken: how a per-device attention kernel sees them."""
  mesh = jax.sharding.get_abstract_mesh()
  auto = set(mesh.axis_names) - set(mesh.manual_axes)
  batch = tuple(a for a in rows if a in auto) or None
  heads = RULES['heads'] if RULES['heads'] in auto else None
  return P(batch, None, heads, None), P(batch, None)


def splits_params() -> bool:
  """Whether the mesh in use splits parameters (has the FSDP axis)."""
  mesh = jax.sharding.get_abstract_mesh()
  return not mesh.empty and RULES['embed'] in mesh.axis_names


def vocab_only(names) -> P:
  """The spec of a parameter with logical `names` split by its vocab dim alone, whole along
  the rest, on the mesh in use."""
  mesh = jax.sharding.get_abstract_mesh()
  vocab = RULES['vocab'] if RULES['vocab'] in mesh.axis_names else None
  return P(*(vocab if name == 'vocab' else None for name in names))
