"""ssljax: self-supervised BERT/ALBERT/GPT pretraining and evaluation on JAX."""

__version__ = '0.1.0'


def from_pretrained(path):
  """An ssljax workdir, a checkpoints/STEP directory or a Hugging Face model folder, as a
  `ssljax.pretrained.Pretrained` (model with parameters, tokenizer, config)."""
  from ssljax.inference import loading  # here, not above: keeps `import ssljax` light
  return loading.load(path)


def encoder(path, pooling: str = 'mean', batch_size: int = 64, normalize: bool = False):
  """A sentence encoder over a checkpoint or Hugging Face folder, with the
  `encode(sentences, batch_size=...) -> np.ndarray` interface that sentence-transformers-style
  tools and MTEB call (`ssljax.inference.encoding.SentenceEncoder`)."""
  from ssljax.inference import encoding
  return encoding.SentenceEncoder(from_pretrained(path), pooling, batch_size, normalize)


def generate(pre, prompts, **settings):
  """The text a causal `from_pretrained` model writes after each prompt; settings:
  max_new_tokens, temperature, top_k, top_p, seed, batch_size
  (`ssljax.inference.generation`)."""
  from ssljax.inference import generation
  return generation.generate(pre, prompts, **settings)
