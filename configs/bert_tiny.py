"""BERT-tiny (2 layers, hidden 128) with MLM + NSP on the embedded corpus: quick on CPU.

  ssljax pretrain --config configs/bert_tiny.py --workdir runs/bert_tiny

Expected on 2 CPU cores: ~80 s for 300 steps (~19 k tokens/s); MLM loss 9.0 -> ~6.7, MLM
accuracy ~0.07; NSP stays near chance (0.5) at this budget: it needs thousands of steps.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'mlm_nsp'
  c.model.arch = 'bert'
  c.train.steps = 300
  c.optimizer.learning_rate = 1e-3
  return c
