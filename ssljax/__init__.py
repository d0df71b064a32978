"""ssljax: self-supervised BERT/ALBERT/GPT pretraining and evaluation on JAX."""

__version__ = '0.1.0'
