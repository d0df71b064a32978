"""Adaptation as pretraining hooks: a ridge probe on a downstream task, lm-eval tasks.

Set `probe.task` (and its data) and every `probe.every` steps the current encoder is frozen,
features of a fixed subset of the task are pooled, and a ridge probe (no learning rate to
tune) is fitted and scored: `probe_TASK_SPLIT_METRIC` lands in metrics.jsonl and
TensorBoard, so a user watches the representations improve, not only the loss fall. Set
`eval.lm_eval_tasks` (a causal LM) and every `eval.lm_eval_every` steps lm-evaluation-harness
runs those tasks on the current model: `lm_eval_TASK_METRIC`. The pretraining loop knows
only `Hook`; the CLI (or a notebook) builds these and passes them.
"""

import jax
from flax import nnx
from jax.experimental import multihost_utils

from ssljax import pretrained
from ssljax.adapt import probe, run as adapt_run
from ssljax.inference import encoding
from ssljax.pretrain.loop import Hook
from ssljax.tasks import catalog

# The probe.* keys that locate the task, as the adaptation settings name them.
_SETTINGS = ('data_dir', 'train_file', 'eval_file', 'max_train_examples',
             'max_eval_examples')


def from_config(config) -> list[Hook]:
  """The hooks a pretraining config asks for: the ridge probe when probe.task is set,
  lm-eval when eval.lm_eval_tasks is."""
  return (([ridge_probe(config)] if config.probe.task else []) +
          ([lm_eval(config)] if config.eval.lm_eval_tasks else []))


def _model(run, params) -> nnx.Module:
  """The model with `params` on this host."""
  if jax.process_count() > 1:  # every host holds part of the parameters
    params = multihost_utils.process_allgather(params, tiled=True)
  return nnx.merge(run.graphdef, jax.device_get(params))


def ridge_probe(config) -> Hook:
  """Loads the task once; the hook returns the probe's metrics at the current params."""
  cfg = config.probe
  settings = adapt_run.settings()
  settings.update({k: cfg[k] for k in _SETTINGS})
  adapt_run.check_settings(settings)
  task = catalog.load_task(cfg.task, settings)
  split, examples = next(iter(task.evals.items()))

  def fn(run, params) -> dict:
    model = encoding.truncate(_model(run, params), cfg.layer)
    values = probe.ridge_probe_eval(model, run.tokenizer, task.train, examples, task.spec,
                                    pooling=cfg.pooling, max_len=config.data.seq_len)
    return {f'probe_{task.spec.name}_{split}_{k}': float(v) for k, v in values.items()}

  return Hook(every=cfg.every or config.train.eval_every, fn=fn)


def lm_eval(config) -> Hook:
  """Finds the tasks once; the hook returns their lm-eval metrics at the current params."""
  from ssljax.inference import harness  # lm-eval is the eval extra: only when asked for
  cfg = config.eval
  tasks = harness.resolve_tasks(cfg.lm_eval_tasks)

  def fn(run, params) -> dict:
    pre = pretrained.Pretrained(run.config, run.model_cfg, _model(run, params), run.tokenizer,
                                step=0)
    results = harness.run_tasks(pre, tasks, limit=cfg.lm_eval_limit or None,
                               batch_size=cfg.lm_eval_batch_size)
    return harness.metrics(results)

  return Hook(every=cfg.lm_eval_every or config.train.eval_every, fn=fn)
