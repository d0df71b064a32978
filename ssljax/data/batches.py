"""The batches of a run: an endless shuffled, resumable stream per process, and the fixed
evaluation batches."""

import functools

import grain
import numpy as np

from ssljax.errors import UserError

# Batches are built in background threads; a short queue bounds host memory.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)
_ENDLESS = 2**62  # local batches in the stream: more than any run reads


class Batches:
  """Endless shuffled batches of one process, resumable from `get_state()`.

  Step t's global batch is rows [t*B, (t+1)*B) of an endless stream that visits the
  examples in a fresh permutation every epoch; process p of P gets the p-th of its P
  equal slices, so the processes' local batches concatenate, in process order, to the
  global batch. Grain reads the local batches ahead in background threads; each is built
  at once by `Examples.batch`.
  """

  def __init__(self, examples, global_batch_size: int, seed: int,
               process_index: int = 0, process_count: int = 1):
    if global_batch_size % process_count:
      raise UserError(f'train.batch_size={global_batch_size} is not divisible by the '
                      f'{process_count} processes; make it a multiple of {process_count}')
    if len(examples) < global_batch_size:
      raise UserError(f'corpus too small: {len(examples)} examples for batch '
                      f'{global_batch_size}; add text or lower train.batch_size')
    self._examples, self._seed = examples, seed % 2**32
    self._local = global_batch_size // process_count
    local_batches = grain.MapDataset.range(_ENDLESS)[process_index::process_count]
    self._iterator = iter(local_batches.map(self._local_batch).to_iter_dataset(_READ_OPTIONS))
    self._permutation = functools.lru_cache(maxsize=4)(self._epoch_permutation)

  def _epoch_permutation(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self._seed, epoch]).permutation(len(self._examples))

  def _local_batch(self, number: int) -> dict[str, np.ndarray]:
    """Local batch `number`: stream rows [number * local, (number + 1) * local)."""
    rows = np.arange(number * self._local, (number + 1) * self._local)
    epochs, at = np.divmod(rows, len(self._examples))
    index = np.concatenate([self._permutation(int(e))[at[epochs == e]]
                            for e in np.unique(epochs)])
    return self._examples.batch(index)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iterator)

  def get_state(self) -> dict:
    """JSON-serialisable position: the number of batches already returned."""
    return self._iterator.get_state()

  def set_state(self, state: dict):
    self._iterator.set_state(state)


def eval_batches(examples, batch_size: int, num_batches: int) -> list[dict[str, np.ndarray]]:
  """The first `batch_size * num_batches` examples in order, wrapping around."""
  return [examples.batch(np.arange(b * batch_size, (b + 1) * batch_size) % len(examples))
          for b in range(num_batches)]
