"""Where numbers go: `metrics.jsonl`, TensorBoard events, and a loss plot.

`metrics.jsonl` holds one JSON object per logged step ({"step", "loss", ...}; evaluation
rows carry "eval_" keys), readable with plain Python or pandas. FLOP accounting for the MFU
estimate lives here too.
"""

import json
import logging
import math
import os
import pathlib
import shutil
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import paths
from ssljax.errors import UserError
from ssljax.pretrain import masking, series_objectives

log = logging.getLogger(__name__)


class Writer:
  """Appends metrics to WORKDIR/metrics.jsonl and WORKDIR/tensorboard (process 0 only).

  A local workdir gets each row at once. Object storage has no append, so for a gs:// or
  s3:// workdir rows are flushed every `remote_flush_s` seconds and at close, and the
  TensorBoard events are written to a local folder and copied up at each flush.
  `before_write()` runs before each flush: the workdir lock's check (`lock.Lock.check`).
  """

  def __init__(self, workdir, enabled=True, remote_flush_s: float = 30.0,
               before_write=lambda: None, tracker=None):
    self.enabled = enabled
    self._before_write = before_write
    self._tracker = tracker  # also logs each row (wandb_log.Run), or None
    workdir = paths.path(workdir)
    self.path = workdir / 'metrics.jsonl'
    self._events = workdir / 'tensorboard'
    self._remote = paths.is_remote(workdir)
    self._flush_s = remote_flush_s if self._remote else 0.0
    self._rows: list[str] = []
    self._flushed = time.monotonic()
    self._first: int | None = None  # the first step this writer logs; set by write
    self._cleaned = False
    self._tb: Any = None  # a tensorboardX SummaryWriter where enabled
    self._spool: str | None = None
    if enabled:
      from tensorboardX import SummaryWriter  # imported here: slow, and process 0 only
      self._spool = tempfile.mkdtemp(prefix='ssljax-events-') if self._remote else None
      self._tb = SummaryWriter(self._spool or os.fspath(self._events))

  def write(self, step: int, values: dict):
    if not (self.enabled and values):
      return
    if self._first is None:
      self._first = int(step)
    row = {'step': int(step)} | {k: float(v) for k, v in values.items()}
    self._rows.append(json.dumps(row))
    for k, v in row.items():
      if k != 'step' and math.isfinite(v):
        self._tb.add_scalar(k, v, int(step))
    if self._tracker is not None:
      self._tracker.log(int(step), {k: v for k, v in row.items() if k != 'step'})
    if time.monotonic() - self._flushed >= self._flush_s:
      self.flush()

  def flush(self):
    if self._rows or self._spool:
      self._before_write()
    if self._rows and not self._cleaned and self._first is not None:
      self._cleaned = True
      _keep_before(self.path, self._first)
    paths.append_lines(self.path, self._rows)
    self._rows, self._flushed = [], time.monotonic()
    if self._spool:
      self._tb.flush()
      paths.upload(self._spool, self._events)

  def close(self):
    if self._tb is not None:
      self._tb.close()
      try:
        self.flush()
      finally:
        if self._spool:
          shutil.rmtree(self._spool, ignore_errors=True)
    if self._tracker is not None:
      self._tracker.finish()
      self._tracker = None


def _text(path) -> str:
  """The file's text; bytes that are not UTF-8 (a torn or overwritten block) become U+FFFD,
  which no row holds, so that their lines count as torn instead of stopping the run."""
  return path.read_bytes().decode('utf-8', errors='replace')


def _parse(text: str) -> tuple[list[dict], int]:
  """(rows, lines that are not a row): a crash mid-write leaves a torn last line."""
  rows, bad = [], 0
  for line in text.splitlines():
    if not line.strip():
      continue
    try:
      row = json.loads(line) if '\ufffd' not in line else None
    except ValueError:
      row = None
    if isinstance(row, dict) and isinstance(row.get('step'), int):
      rows.append(row)
    else:
      bad += 1
  return rows, bad


def _keep_before(path, first: int):
  """Before a run appends from step `first`: rows of that step and later (a resumed run logs
  them again) and torn lines are cut away, so that each step has one row."""
  if not path.exists():
    return
  text = _text(path)
  rows, bad = _parse(text)
  kept = [r for r in rows if r['step'] < first]
  if bad or len(kept) < len(rows) or (text and not text.endswith('\n')):
    log.info('%s: kept the %d rows before step %d (%d torn lines cut)', path, len(kept),
             first, bad)
    paths.write_whole(path, ''.join(json.dumps(r) + '\n' for r in kept))


def read(workdir) -> list[dict]:
  """Every readable row of WORKDIR/metrics.jsonl; a torn line is skipped with a warning."""
  path = paths.path(workdir) / 'metrics.jsonl'
  if not path.exists():
    raise UserError(f'{path} does not exist; pass the --workdir of `ssljax pretrain`')
  rows, bad = _parse(_text(path))
  if bad:
    log.warning('%s: skipped %d unreadable lines', path, bad)
  return rows


def _repeats_total(rows, keys) -> dict[str, str]:
  """{head loss: total} where a run has one objective head, so that its total `loss` (and
  `eval_loss`) is that head's loss step for step: drawn once, as the head's."""
  out = {}
  for total in ('loss', 'eval_loss'):
    prefix = total[:-len('loss')]
    heads = [k for k in keys if k != total and k.endswith('_loss') and k.startswith(prefix)
             and (prefix or not k.startswith('eval_'))]
    pairs = [(r[total], r[heads[0]]) for r in rows if heads and total in r and heads[0] in r]
    if total in keys and len(heads) == 1 and pairs and all(
        abs(a - b) <= 1e-6 * max(1.0, abs(a)) for a, b in pairs):
      out[heads[0]] = total
  return out


def _perplexities(rows) -> dict[str, list]:
  """{name: [(step, perplexity)]}: the logged *_perplexity, else exp of each *clm_loss."""
  keys = {k for r in rows for k in r}
  out = {k: [(r['step'], r[k]) for r in rows if k in r]
         for k in sorted(keys) if k.endswith('_perplexity')}
  for k in sorted(keys):
    if k.endswith('clm_loss') and k.replace('_loss', '_perplexity') not in out:
      out[k.replace('_loss', '_perplexity')] = [(r['step'], float(np.exp(r[k])))
                                                for r in rows if k in r]
  return out


def plot(workdir, out=None) -> paths.Path:
  """Losses, a causal LM's perplexity (log scale), and accuracies with any probe scores,
  against step: a PNG beside the metrics. A total loss that only repeats its one head's
  loss is drawn once, labelled with both names."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  rows = read(workdir)
  workdir = paths.path(workdir)
  out = paths.path(out) if out else workdir / 'loss.png'
  losses = sorted({k for r in rows for k in r if k.endswith('_loss') or k == 'loss'})
  same = _repeats_total(rows, losses)
  losses = [k for k in losses if k not in same.values()]
  scores = sorted({k for r in rows for k in r
                   if k.endswith('_accuracy') or k.startswith('probe_') and 'lambda' not in k})
  perplexities = _perplexities(rows)
  series = {k: [(r['step'], r[k]) for r in rows if k in r] for k in losses + scores}
  series |= perplexities
  panels = ([('loss', losses)] + ([('perplexity', list(perplexities))] if perplexities else [])
            + ([('accuracy / probe score', scores)] if scores else []))
  fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), squeeze=False)
  for ax, (label, keys) in zip(axes[0], panels):
    for key in keys:
      marker = 'o' if key.startswith(('eval_', 'probe_')) else None
      name = f'{key} (= {same[key]})' if key in same else key
      ax.plot(*zip(*series[key]), label=name, marker=marker)
    ax.set_xlabel('step')
    ax.set_ylabel(label + (' (log scale)' if label == 'perplexity' else ''))
    if label == 'perplexity':
      ax.set_yscale('log')
    ax.set_title(f'{workdir.name}: {label}')
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
  paths.save_figure(fig, out)
  plt.close(fig)
  return out


def flops_per_token(params, model_cfg, objective, seq_len, mlm_fraction=1.0):
  """Training FLOPs per token (forward + backward) of the weights that actually run.

  6 per weight for each matmul weight applied to the token; ALBERT's shared block counts once
  per layer it runs; the MLM transform and vocabulary projection count on the fraction of
  positions the head runs on; the pooler and sentence head run once per sequence and only
  for NSP/SOP; attention adds QK^T and AV (2 x 2 L H forward per layer, x3 with backward).
  """
  h, layers, v = model_cfg.hidden_size, model_cfg.num_layers, model_cfg.vocab_size
  e = model_cfg.embed_size or h
  stack = matmul_params(params['stack']) * (layers if model_cfg.share_layers else 1)
  other = matmul_params({k: p for k, p in params.items()
                         if k not in ('stack', 'mlm_head', 'pooler', 'sentence_head')})
  per_token = stack + other
  if objective == 'clm':
    per_token += v * h
  else:
    per_token += (matmul_params(params['mlm_head']) + v * e) * mlm_fraction
  if objective in ('mlm_nsp', 'mlm_sop'):
    per_token += matmul_params({k: params[k] for k in ('pooler', 'sentence_head')}) / seq_len
  return 6 * per_token + 12 * layers * seq_len * h


def model_flops_per_token(config, params, model_cfg) -> float:
  """Training FLOPs per token (a patch, for series) of `config`'s step: one count for
  `pretrain`'s MFU and `ssljax compile`'s roofline."""
  seq_len = config.data.seq_len
  if config.objective in series_objectives.OBJECTIVES:
    return patch_flops_per_token(params, model_cfg, config.objective, seq_len,
                                 config.train.batch_size)
  fraction = (masking.num_predictions(seq_len, config.mlm.rate) / seq_len
              if config.mlm.masked_positions_only else 1.0)
  return flops_per_token(params, model_cfg, config.objective, seq_len, fraction)


PER_WINDOW = ('down', 'up', 'projection')  # patch models' weights run once per window


def patch_flops_per_token(params, model_cfg, objective, seq_len, batch_size):
  """Training FLOPs per patch of a patch model (`models.patches`), as `flops_per_token`.

  Per patch: the embedding (4 per weight: no gradient flows on into the data), each block
  stack (the auto-encoder runs two) and the patch head, which contrastive leaves unused; once
  per window: the bottleneck and the projection head. Contrastive runs all of it on two
  views, and NT-Xent compares each view's projection with the 2 x `batch_size` of the
  global batch."""
  h, layers = model_cfg.hidden_size, model_cfg.num_layers
  stacks = [k for k in ('stack', 'decoder') if k in params]
  unused = ('patch_head',) if objective == 'contrastive' else ()
  per_patch = sum(matmul_params(params[k]) for k in stacks) * (
      layers if model_cfg.share_layers else 1)
  per_patch += matmul_params({k: p for k, p in params.items()
                              if k not in (*stacks, *PER_WINDOW, *unused, 'embeddings')})
  per_window = matmul_params({k: p for k, p in params.items() if k in PER_WINDOW})
  flops = (4 * matmul_params(params['embeddings']) + 6 * (per_patch + per_window / seq_len)
           + 12 * len(stacks) * layers * seq_len * h)
  if objective != 'contrastive':
    return flops
  similarities = 24 * batch_size * model_cfg.projection  # 2 views x 2B dot products, x 3
  return 2 * flops + similarities / seq_len


def matmul_params(params) -> int:
  """Weights that multiply activations: kernels (the tied word embedding is counted apart)."""
  flat = jax.tree_util.tree_leaves_with_path(params)
  return sum(int(np.prod(x.shape)) for path, x in flat
             if getattr(path[-1], 'key', None) == 'kernel')


def measure_peak_flops(size=2048, repeats=3, tries=3, dtype=jnp.float32) -> float:
  """The device's f32 matmul FLOP/s as XLA runs it: the denominator of MFU.

  Best of `tries`: on a shared machine the slow tries measure the neighbours, not the chip.
  """
  a = jnp.ones((size, size), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = 0.0
  for _ in range(tries):
    start = time.perf_counter()
    for _ in range(repeats):
      out = f(a)
    out.block_until_ready()
    best = max(best, 2 * size ** 3 * repeats / (time.perf_counter() - start))
  return best


def cache_dir() -> pathlib.Path:
  """ssljax's per-machine cache: compiled programs and the measured peak."""
  return pathlib.Path(os.environ.get('XDG_CACHE_HOME', '~/.cache')).expanduser() / 'ssljax'


def peak_flops() -> float:
  """`measure_peak_flops` of this machine's device kind, measured once and then read from
  the cache (the measurement runs ~170 GFLOP: seconds on a CPU, at every run otherwise).
  TPUs and GPUs in `chips.CHIPS` use their published bf16 peak instead."""
  from ssljax import chips
  device = jax.devices()[0]
  chip = chips.for_device(device) if device.platform != 'cpu' else None
  if chip is not None:
    return chip.peak_flops
  key = f'{device.platform}:{device.device_kind}:{os.cpu_count()}:jax{jax.__version__}'
  path = cache_dir() / 'peak_flops.json'
  try:
    known = json.loads(path.read_text())
  except (OSError, ValueError):
    known = {}
  if key not in known:
    known[key] = measure_peak_flops()
    try:
      path.parent.mkdir(parents=True, exist_ok=True)
      partial = path.with_suffix('.partial')
      partial.write_text(json.dumps(known, indent=1))
      partial.replace(path)
    except OSError:  # a read-only home still gets its MFU, measured each run
      pass
  return known[key]
