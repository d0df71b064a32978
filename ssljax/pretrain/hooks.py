"""What pretraining runs periodically besides the step: a `Hook` and what it is shown.

The loop knows only `Hook`: every `every` steps (and at the last step) it calls `fn` with a
`HookInfo` and writes the metrics `fn` returns to metrics.jsonl and TensorBoard. The info
holds what a hook may read, not the run: the step, the parameters, the graph and config of
the model and the tokenizer. The hooks ssljax ships are built next to the code they run
(`adapt.hooks.ridge_probe`, `inference.harness.lm_eval_hook`).
"""

import dataclasses
from collections.abc import Callable

import jax
from flax import nnx
from jax.experimental import multihost_utils

from ssljax import models, tokenizers


@dataclasses.dataclass(frozen=True)
class HookInfo:
  """The state of the run a hook sees at `step`; `params` are the host's full copy."""
  step: int
  params: dict
  graphdef: nnx.GraphDef
  model_cfg: models.ModelConfig
  tokenizer: tokenizers.Tokenizer

  def model(self) -> nnx.Module:
    """The model with these parameters, whole on this host."""
    params = self.params
    if jax.process_count() > 1:  # every host holds part of the parameters
      params = multihost_utils.process_allgather(params, tiled=True)
    return nnx.merge(self.graphdef, jax.device_get(params))


@dataclasses.dataclass
class Hook:
  """`fn(info) -> metrics`, called every `every` steps (0: only at the last step)."""
  every: int
  fn: Callable[[HookInfo], dict]
