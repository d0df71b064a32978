"""GPT 1.3B (the size of GPT-3 XL, Brown et al. 2020): 24 layers, hidden 2048, 16 heads of
128, context 2048; batch 512 x 2048 tokens (1 M), AdamW 2e-4, cosine decay to 2e-5.

  ssljax compile --config configs/gpt_1b.py --topology v5p-128
  ssljax pretrain --config configs/gpt_1b.py --workdir gs://BUCKET/gpt_1b \\
      --set data.source=prepared --set data.path=gs://BUCKET/openwebtext_prepared

FSDP over every chip (weights all-gathered per layer in bfloat16, gradients
reduce-scattered), scanned and rematerialised layers, splash attention on TPU. On a v5p:4x4x4
(64 chips, fsdp=64) `ssljax compile` gives memory per chip, collective bytes and the
roofline bound (benchmarks/results/tpu_compile.md); we have not trained it ourselves.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'clm'
  m = c.model
  m.arch, m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 'gpt', 2048, 24, 16, 8192
  m.max_len = 2048
  m.activation = 'gelu_tanh'
  m.layer_norm_eps = 1e-5
  m.dropout_rate = m.attention_dropout_rate = 0.0
  m.dtype = 'bfloat16'
  m.scan_layers = True
  m.remat = True
  c.data.seq_len = 2048
  c.tokenizer.vocab_size = 32000
  c.train.batch_size = 512
  c.train.steps = 150_000
  c.train.log_every = 100
  c.train.eval_every = 5_000
  c.train.checkpoint_every = 2_000
  o = c.optimizer
  o.learning_rate, o.end_learning_rate, o.warmup_steps = 2e-4, 2e-5, 2000
  o.decay, o.weight_decay, o.b2 = 'cosine', 0.1, 0.95
  c.mesh.data, c.mesh.fsdp = 1, -1
  return c
