"""Rows batched by length: one rule for features, continuation scores, generation and heads.

Rows are visited shortest first (a stable sort, so equal lengths keep their order) in
batches of a fixed size; each batch is then padded to its own longest row rounded up
(`data.rows.padded_length`), so short rows run short and a split of any size compiles a
few programs, one per width.
"""

import numpy as np


def by_length(lengths, batch_size: int) -> list[np.ndarray]:
  """The row indices of each batch, shortest rows first; the last batch may be short."""
  order = np.argsort(np.asarray(lengths), kind='stable')
  return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
