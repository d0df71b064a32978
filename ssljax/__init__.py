"""ssljax: self-supervised BERT/ALBERT/GPT pretraining and evaluation on JAX."""

__version__ = '0.1.0'


def from_pretrained(path):
  """An ssljax workdir, a checkpoints/STEP directory or a Hugging Face model folder, as a
  `ssljax.pretrained.Pretrained` (model with parameters, tokenizer, config)."""
  from ssljax import pretrained  # pylint: disable=g-import-not-at-top  (keeps `import ssljax` light)
  return pretrained.load(path)
