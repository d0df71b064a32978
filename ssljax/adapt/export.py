"""A fine-tuned model (the WORKDIR/model folder `ssljax finetune` saves) out to Hugging
Face as a task model: its base model and head through `interop.hf_heads`, imported only
to export (safetensors is the `hf` extra; loading a model for use needs none of it)."""

import ml_collections
import numpy as np
from flax import nnx, traverse_util

from ssljax import paths, pretrained
from ssljax.adapt import finetune


def is_finetuned(folder) -> bool:
  """Whether `folder` holds a model `finetune.save` wrote (and `predict` reads)."""
  return (paths.path(folder) / 'meta.json').is_file()


def head_to_hf(tuned, spec, meta, tokenizer, out) -> tuple[paths.Path, str]:
  """Writes a loaded fine-tuned model (`finetune.load`) as a Hugging Face folder `out`;
  returns `out` and the transformers class that loads it."""
  from ssljax.interop import hf_heads
  head = nnx.to_pure_dict(nnx.state(tuned.head))
  transform = (None if tuned.transform is None else
               traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(tuned.transform))))
  task = hf_heads.TaskHead(spec.kind, spec.name, tuple(spec.labels), meta['pooling'],
                           np.asarray(head['kernel']), head.get('bias'), transform,
                           spec.pair)
  return hf_heads.export(as_pretrained(tuned, tokenizer), task, out)


def as_pretrained(tuned, tokenizer) -> pretrained.Pretrained:
  """A fine-tuned model's encoder (or decoder) without its head, as every command that
  takes a checkpoint takes it: `encode` its features, `probe` or fine-tune it again."""
  return pretrained.Pretrained(ml_collections.ConfigDict(), tuned.model.cfg, tuned.model,
                               tokenizer, 0)


def to_hf(model_dir, out) -> tuple[paths.Path, str]:
  """`head_to_hf` for the model saved in `model_dir`."""
  tuned, spec, meta, tokenizer = finetune.load(model_dir)
  return head_to_hf(tuned, spec, meta, tokenizer, out)
