"""ALBERT-base (Lan et al. 2020): E=128, H=768, 12 shared layers, MLM + SOP, LAMB, 12 M params.

The paper's recipe: sequence 512, batch 4096, 125 k steps, LAMB at 1.76e-3, 3125 warmup.

  ssljax pretrain --config configs/albert_base.py --workdir gs://BUCKET/albert_base \\
      --set data.source=text --set data.path=/data/books_wiki

Expected: SOP accuracy ~0.9 and MLM accuracy ~0.55 at the end (the paper's base model);
we have not run it to the end at this size ourselves.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'mlm_sop'
  m = c.model
  m.arch, m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 'albert', 768, 12, 12, 3072
  m.embed_size = 128
  m.share_layers = True
  m.max_len = 512
  m.activation = 'gelu_tanh'
  m.dropout_rate = m.attention_dropout_rate = 0.0
  m.dtype = 'bfloat16'
  m.remat = True
  c.data.seq_len = 512
  c.tokenizer.vocab_size = 30000
  c.train.batch_size = 4096
  c.train.grad_accum = 8  # 8 micro-batches of 512 rows: fits 4 v5e chips (ssljax compile)
  c.train.steps = 125_000
  c.train.log_every = 100
  c.train.eval_every = 5_000
  c.train.checkpoint_every = 5_000
  o = c.optimizer
  o.name, o.learning_rate, o.warmup_steps, o.decay = 'lamb', 1.76e-3, 3125, 'linear'
  return c
