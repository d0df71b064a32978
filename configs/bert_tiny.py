"""BERT-tiny (2 layers, hidden 128) with MLM + NSP on the embedded corpus: quick on CPU.

  ssljax pretrain --config configs/bert_tiny.py --workdir runs/bert_tiny

Expected on 2 CPU cores: ~3 min for 300 steps; MLM loss falls from ~9.0 to ~6, NSP
accuracy rises above 0.6, eval MLM accuracy ~0.15.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'mlm_nsp'
  c.model.arch = 'bert'
  c.train.steps = 300
  c.optimizer.learning_rate = 1e-3
  return c
