"""GPT 1.3B (the size of GPT-3 XL, Brown et al. 2020): 24 layers, hidden 2048, 16 heads of
128, context 2048; batch 512 x 2048 tokens (1 M), AdamW 2e-4, cosine decay to 2e-5.

  ssljax compile --config configs/gpt_1b.py --topology v5p-128
  ssljax pretrain --config configs/gpt_1b.py --workdir gs://BUCKET/gpt_1b \\
      --set data.source=prepared --set data.path=gs://BUCKET/openwebtext_prepared

FSDP over every chip (weights all-gathered per layer in bfloat16, gradients
reduce-scattered), scanned and rematerialised layers, splash attention on TPU. On a v5p:4x4x4
(64 chips, fsdp=64) `ssljax compile` gives memory per chip, collective bytes and the
roofline bound (benchmarks/results/tpu_compile.md). Expected: it fits with room to spare
(3.5 of 95 GiB per chip there); we have not trained it ourselves, so no loss is promised.
"""

import os

from ssljax import config as config_lib


def get_config():
  """gpt_small's recipe (configs/gpt_small.py), scaled up."""
  c = config_lib.load(os.path.join(os.path.dirname(__file__), 'gpt_small.py'))
  m = c.model
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 2048, 24, 16, 8192
  m.max_len = c.data.seq_len = 2048
  c.train.steps, c.train.checkpoint_every = 150_000, 2_000
  c.optimizer.learning_rate, c.optimizer.end_learning_rate = 2e-4, 2e-5
  return c
