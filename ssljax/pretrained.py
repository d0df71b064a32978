"""The `Pretrained` type: a model with its parameters, tokenizer and config, ready for use.

A leaf that every layer may import: `inference.loading.load` returns one for a checkpoint,
`interop` for a Hugging Face folder, and `pretrain(init=...)` starts from one. It knows
which files make a folder a pretraining workdir, so that no writer (export-hf, import-hf)
puts its files into a run.
"""

import dataclasses

import ml_collections
from flax import nnx

from ssljax import models, paths, tokenizers

LOCK_FILE = 'lock.json'  # the run's owner (pretrain/lock.py)
# What a pretraining workdir (or an import-hf folder) holds: no other writer may go there.
RUN_FILES = ('checkpoints', 'metrics.jsonl', LOCK_FILE)


@dataclasses.dataclass
class Pretrained:
  config: ml_collections.ConfigDict  # the run's full config
  model_cfg: models.ModelConfig
  model: nnx.Module  # parameters included
  tokenizer: tokenizers.Tokenizer
  step: int


def holds_run(folder) -> bool:
  """Whether `folder` holds a pretraining run (its checkpoints, metrics or lock)."""
  folder = paths.path(folder)
  return any((folder / name).exists() for name in RUN_FILES)
