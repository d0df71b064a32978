"""Where numbers go: `metrics.jsonl`, TensorBoard events, and a loss plot.

`metrics.jsonl` holds one JSON object per logged step ({"step", "loss", ...}; evaluation
rows carry "eval_" keys), readable with plain Python or pandas. FLOP accounting for the MFU
estimate lives here too.
"""

import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np


class Writer:
  """Appends metrics to WORKDIR/metrics.jsonl and WORKDIR/tensorboard (process 0 only)."""

  def __init__(self, workdir, enabled=True):
    self.enabled = enabled
    self.path = pathlib.Path(workdir) / 'metrics.jsonl'
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter  # imported here: slow, and process 0 only
      self._tb = SummaryWriter(str(pathlib.Path(workdir) / 'tensorboard'))

  def write(self, step: int, values: dict):
    if not (self.enabled and values):
      return
    row = {'step': int(step)} | {k: float(v) for k, v in values.items()}
    with self.path.open('a') as f:
      f.write(json.dumps(row) + '\n')
    for k, v in row.items():
      if k != 'step' and math.isfinite(v):
        self._tb.add_scalar(k, v, int(step))

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot(workdir, out=None) -> pathlib.Path:
  """Training (and eval) loss against step, as a PNG beside the metrics."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  rows = read(workdir)
  out = pathlib.Path(out or pathlib.Path(workdir) / 'loss.png')
  keys = sorted({k for r in rows for k in r if k.endswith('_loss') or k == 'loss'})
  fig, ax = plt.subplots(figsize=(7, 4))
  for key in keys:
    points = [(r['step'], r[key]) for r in rows if key in r]
    ax.plot(*zip(*points), label=key, marker='o' if key.startswith('eval_') else None)
  ax.set_xlabel('step')
  ax.set_ylabel('loss')
  ax.set_title(pathlib.Path(workdir).name)
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def flops_per_token(model_cfg, seq_len, num_params_matmul, mlm_positions_fraction=1.0):
  """Training FLOPs per token: 6 N for matmul params plus attention's QK^T and AV.

  The MLM head's vocabulary projection counts only on the positions where it runs
  (`mlm_positions_fraction` = K / L when the head runs on masked positions only).
  """
  h, layers, v = model_cfg.hidden_size, model_cfg.num_layers, model_cfg.vocab_size
  e = model_cfg.embed_size or h
  head = 6 * v * e * mlm_positions_fraction
  attention = 12 * layers * seq_len * h  # fwd 2*(2 L H), times 3 for fwd+bwd
  return 6 * num_params_matmul + head + attention


def matmul_params(params) -> int:
  """Parameters that multiply activations: kernels, excluding the tied word embedding."""
  flat = jax.tree_util.tree_leaves_with_path(params)
  return sum(int(np.prod(x.shape)) for path, x in flat
             if getattr(path[-1], 'key', None) == 'kernel')


def measure_peak_flops(size=2048, repeats=5, dtype=jnp.float32) -> float:
  """The device's f32 matmul FLOP/s as XLA runs it: the denominator of MFU."""
  a = jnp.ones((size, size), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    out = f(a)
  out.block_until_ready()
  return 2 * size ** 3 * repeats / (time.perf_counter() - start)
