"""ssljax: self-supervised BERT/ALBERT/GPT pretraining and evaluation on JAX."""

__version__ = '0.1.0'


def from_pretrained(path):
  """A Hugging Face model folder, or an ssljax workdir or checkpoints/STEP directory, as a
  `ssljax.pretrained.Pretrained` (model with parameters, tokenizer, config)."""
  from ssljax import hf  # pylint: disable=g-import-not-at-top  (keeps `import ssljax` light)
  return hf.from_pretrained(path)
