"""The batches of a run: an endless shuffled, resumable stream per process, and the fixed
evaluation batches."""

import grain
import numpy as np

from ssljax.errors import UserError

# Batches are built in background threads; a short queue bounds host memory.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


class Batches:
  """Endless shuffled batches of one process, resumable from `get_state()`.

  Step t's global batch is rows [t*B, (t+1)*B) of an endless stream that reshuffles
  the examples every epoch; process p of P gets the p-th of its P equal slices, so
  the processes' local batches concatenate, in process order, to the global batch.
  """

  def __init__(self, examples: grain.MapDataset, global_batch_size: int, seed: int,
               process_index: int = 0, process_count: int = 1):
    if global_batch_size % process_count:
      raise UserError(f'train.batch_size={global_batch_size} is not divisible by the '
                      f'{process_count} processes; make it a multiple of {process_count}')
    if len(examples) < global_batch_size:
      raise UserError(f'corpus too small: {len(examples)} examples for batch '
                      f'{global_batch_size}; add text or lower train.batch_size')
    local = global_batch_size // process_count
    stream = examples.shuffle(seed=seed % 2**32).repeat()
    batches = stream.batch(local, drop_remainder=True)[process_index::process_count]
    self._iterator = iter(batches.to_iter_dataset(_READ_OPTIONS))

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iterator)

  def get_state(self) -> dict:
    """JSON-serialisable position: the number of batches already returned."""
    return self._iterator.get_state()

  def set_state(self, state: dict):
    self._iterator.set_state(state)


def eval_batches(examples: grain.MapDataset, batch_size: int,
                 num_batches: int) -> list[dict[str, np.ndarray]]:
  """The first `batch_size * num_batches` examples in order, wrapping around."""
  batches = []
  for b in range(num_batches):
    rows = [examples[i % len(examples)] for i in range(b * batch_size, (b + 1) * batch_size)]
    batches.append({k: np.stack([r[k] for r in rows]) for k in rows[0]})
  return batches
