"""A closed-form ridge probe on a downstream task while pretraining runs.

Set `probe.task` (and its data) and every `probe.every` steps the current encoder is frozen,
features of a fixed subset of the task are pooled, and a ridge probe (no learning rate to
tune) is fitted and scored: `probe_TASK_METRIC` lands in metrics.jsonl and TensorBoard, so
a user watches the representations improve, not only the loss fall.
"""

import jax
from flax import nnx
from jax.experimental import multihost_utils

from ssljax.adapt import probe, run as adapt_run

_SETTINGS = ('data_dir', 'train_file', 'eval_file', 'max_train_examples',
             'max_eval_examples')


class ProbeHook:
  """Loads the task once; `__call__(params)` returns the probe's metrics at those params."""

  def __init__(self, config, graphdef, tokenizer):
    cfg = config.probe
    settings = adapt_run.load_settings([f'{k}={cfg[k]}' for k in _SETTINGS])
    self.task = adapt_run.load_task(cfg.task, settings)
    self.every = cfg.every or config.train.eval_every
    self.graphdef, self.tokenizer = graphdef, tokenizer
    self.pooling, self.max_len = cfg.pooling, config.data.seq_len

  def due(self, step: int, last: int) -> bool:
    return bool(self.every) and step % self.every == 0 or step == last

  def __call__(self, params) -> dict:
    if jax.process_count() > 1:  # every host holds part of the parameters
      params = multihost_utils.process_allgather(params, tiled=True)
    model = nnx.merge(self.graphdef, jax.device_get(params))
    split, examples = next(iter(self.task.evals.items()))
    values = probe.ridge_probe_eval(model, self.tokenizer, self.task.train, examples,
                                    self.task.spec, pooling=self.pooling,
                                    max_len=self.max_len)
    return {f'probe_{self.task.spec.name}_{split}_{k}': float(v) for k, v in values.items()}
