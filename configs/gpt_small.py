"""GPT-2 small (Radford et al. 2019): 12 layers, hidden 768, 12 heads, context 1024, 124 M.

  ssljax pretrain --config configs/gpt_small.py --workdir gs://BUCKET/gpt_small \\
      --set data.source=text --set data.path=/data/openwebtext

AdamW 6e-4 with 2 k warmup and cosine decay to 6e-5, batch 512 x 1024 tokens (0.5 M),
weight decay 0.1, as in the nanoGPT reproduction. Expected: validation loss near 2.9 on
OpenWebText after ~300 k steps there; we have not run it to the end ourselves.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'clm'
  m = c.model
  m.arch, m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 'gpt', 768, 12, 12, 3072
  m.max_len = 1024
  m.activation = 'gelu_tanh'
  m.layer_norm_eps = 1e-5
  m.dropout_rate = m.attention_dropout_rate = 0.0
  m.dtype = 'bfloat16'
  # At most 16 documents a row (the rest of a fuller row is padding): on a GPU, cuDNN then
  # takes them as its packed layout instead of a dense B x 1 x L x L mask (docs/pods.md).
  m.max_docs_per_row = 16
  m.scan_layers = True
  m.remat = True
  c.data.seq_len = 1024
  c.tokenizer.vocab_size = 32000
  c.train.batch_size = 512
  c.train.steps = 300_000
  c.train.log_every = 100
  c.train.eval_every = 5_000
  c.train.checkpoint_every = 5_000
  o = c.optimizer
  o.learning_rate, o.end_learning_rate, o.warmup_steps = 6e-4, 6e-5, 2000
  o.decay, o.weight_decay, o.b2 = 'cosine', 0.1, 0.95
  c.mesh.data, c.mesh.fsdp = 1, -1  # FSDP over every chip
  return c
