"""Other ecosystems' checkpoints in and out: Hugging Face transformers folders."""
