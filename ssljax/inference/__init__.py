"""A pretrained model in, numbers out: loading, sentence encoding, continuation scores,
generation and lm-evaluation-harness's `ssljax` model. Imports models, never tasks or adapt."""
