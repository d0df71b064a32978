"""BERT-base (Devlin et al. 2019): 12 layers, hidden 768, 12 heads, MLM + NSP, 110 M params.

Phase 1 of the paper's recipe (sequence 128, batch 256, 1 M steps, AdamW 1e-4, 10 k warmup,
linear decay). Point it at a real corpus and run it on accelerators, e.g. a TPU v4-32:

  ssljax pretrain --config configs/bert_base.py --workdir gs://BUCKET/bert_base \\
      --set data.source=text --set data.path=/data/books_wiki

or with scripts/launch_tpu.py. bf16 compute, scanned and rematerialised layers, FSDP over
all devices. Expected: MLM accuracy ~0.65 and NSP accuracy ~0.98 late in training, as the
paper's setup reports; we have not run it to the end at this size ourselves.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'mlm_nsp'
  m = c.model
  m.arch, m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 'bert', 768, 12, 12, 3072
  m.max_len = 512
  m.dtype = 'bfloat16'
  m.scan_layers = True
  m.remat = True
  c.data.seq_len = 128
  c.tokenizer.vocab_size = 30000
  c.train.batch_size = 256
  c.train.steps = 1_000_000
  c.train.log_every = 100
  c.train.eval_every = 10_000
  c.train.checkpoint_every = 10_000
  o = c.optimizer
  o.learning_rate, o.warmup_steps, o.decay, o.weight_decay = 1e-4, 10_000, 'linear', 0.01
  c.mesh.data, c.mesh.fsdp = 1, -1
  return c
