"""Adaptation during pretraining: the ridge probe on a downstream task, as a pretraining hook.

Set `probe.task` (and its data) and every `probe.every` steps the current encoder is frozen,
features of a fixed subset of the task are pooled, and a ridge probe (no learning rate to
tune) is fitted and scored: `probe_TASK_SPLIT_METRIC` lands in metrics.jsonl and
TensorBoard, so a user watches the representations improve, not only the loss fall.
`from_config` adds lm-evaluation-harness's tasks when `eval.lm_eval_tasks` asks for them
(`inference.harness.lm_eval_hook`). The pretraining loop knows only `Hook`; the CLI (or a
notebook) builds these and passes them.
"""

import dataclasses

import ml_collections

from ssljax import config as config_lib
from ssljax.adapt import probe, run as adapt_run
from ssljax.inference import encoding
from ssljax.pretrain.hooks import Hook, HookInfo
from ssljax.tasks import catalog


def from_config(config: ml_collections.ConfigDict) -> list[Hook]:
  """The hooks a pretraining config asks for: the ridge probe when probe.task is set,
  lm-eval when eval.lm_eval_tasks is."""
  hooks = [ridge_probe(config)] if config.probe.task else []
  if config.eval.lm_eval_tasks:
    from ssljax.inference import harness  # lm-eval is the eval extra: only when asked for
    hooks.append(harness.lm_eval_hook(config))
  return hooks


def ridge_probe(config: ml_collections.ConfigDict) -> Hook:
  """Loads the task once; the hook returns the probe's metrics at the current params."""
  section = config.probe
  settings = adapt_run.defaults()
  settings.update({f.name: section[f.name] for f in dataclasses.fields(config_lib.TaskData)})
  adapt_run.check_settings(settings)
  task = catalog.load_task(section.task, settings)
  split, examples = next(iter(task.evals.items()))

  def fn(info: HookInfo) -> dict:
    model = encoding.truncate(info.model(), section.layer)
    values = probe.ridge_probe_eval(model, info.tokenizer, task.train, examples, task.spec,
                                    pooling=section.pooling, max_len=config.data.seq_len)
    return {f'probe_{task.spec.name}_{split}_{k}': float(v) for k, v in values.items()}

  return Hook(every=section.every or config.train.eval_every, fn=fn)
