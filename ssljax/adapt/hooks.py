"""Adaptation as pretraining hooks: a closed-form ridge probe on a downstream task.

Set `probe.task` (and its data) and every `probe.every` steps the current encoder is frozen,
features of a fixed subset of the task are pooled, and a ridge probe (no learning rate to
tune) is fitted and scored: `probe_TASK_SPLIT_METRIC` lands in metrics.jsonl and
TensorBoard, so a user watches the representations improve, not only the loss fall. The
pretraining loop knows only `Hook`; the CLI (or a notebook) builds this one and passes it.
"""

import jax
from flax import nnx
from jax.experimental import multihost_utils

from ssljax.adapt import probe, run as adapt_run
from ssljax.pretrain.loop import Hook

_SETTINGS = ('data_dir', 'train_file', 'eval_file', 'max_train_examples',
             'max_eval_examples')


def from_config(config) -> list[Hook]:
  """The hooks a pretraining config asks for: the ridge probe when probe.task is set."""
  return [ridge_probe(config)] if config.probe.task else []


def ridge_probe(config) -> Hook:
  """Loads the task once; the hook returns the probe's metrics at the current params."""
  cfg = config.probe
  settings = adapt_run.load_settings([f'{k}={cfg[k]}' for k in _SETTINGS])
  task = adapt_run.load_task(cfg.task, settings)
  split, examples = next(iter(task.evals.items()))

  def fn(run, params) -> dict:
    if jax.process_count() > 1:  # every host holds part of the parameters
      params = multihost_utils.process_allgather(params, tiled=True)
    model = nnx.merge(run.graphdef, jax.device_get(params))
    values = probe.ridge_probe_eval(model, run.tokenizer, task.train, examples, task.spec,
                                    pooling=cfg.pooling, max_len=config.data.seq_len)
    return {f'probe_{task.spec.name}_{split}_{k}': float(v) for k, v in values.items()}

  return Hook(every=cfg.every or config.train.eval_every, fn=fn)
