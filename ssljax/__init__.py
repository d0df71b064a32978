"""ssljax: self-supervised BERT/ALBERT/GPT pretraining and evaluation on JAX."""

__version__ = '0.1.0'


def from_pretrained(path):
  """An ssljax workdir, a checkpoints/STEP directory or a Hugging Face model folder, as a
  `ssljax.inference.api.Model`: a `Pretrained` (model with parameters, tokenizer, config)
  with `.logits(texts)`, `.score(texts)` and `.encode(texts)`. A fine-tuned model folder
  (WORKDIR/model of `ssljax finetune`) loads as an `ssljax.adapt.api.Finetuned`, with
  `.predict(texts)`."""
  from ssljax.adapt import api as adapt_api, export  # here, not above: `import ssljax` stays light
  from ssljax.inference import api, loading
  from ssljax.interop import sentence_transformers
  if export.is_finetuned(path):
    return adapt_api.Finetuned.load(path)
  return api.Model.of(loading.load(path), sentence_transformers.encode_settings(path))


def finetune(checkpoint, task: str, workdir=None, **settings):
  """Fine-tunes `checkpoint` (a path or a `from_pretrained` model) on `task` as `ssljax
  finetune` does and returns the chosen model (`ssljax.adapt.api.Finetuned`: `.predict`,
  `.save`, `.export_hf`, `.results`). Settings are keywords: `data_dir='GLUE', seeds=1,
  lr=1e-4, epochs=3`, ... (`ssljax finetune --help`); workdir None: a temporary folder."""
  from ssljax.adapt import api
  return api.finetune(checkpoint, task, workdir, **settings)


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
