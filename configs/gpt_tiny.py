"""GPT-tiny: causal pre-LN decoder with tied embeddings, next-token prediction on packed text.

  ssljax pretrain --config configs/gpt_tiny.py --workdir runs/gpt_tiny

Expected on 2 CPU cores: see EXPECTED below (measured with the embedded corpus).
"""

from ssljax import config as config_lib

EXPECTED = 'about 2 min for 300 steps; CLM loss ~9.0 -> ~5, eval perplexity ~200'


def get_config():
  c = config_lib.base()
  c.objective = 'clm'
  c.model.arch = 'gpt'
  c.model.activation = 'gelu_tanh'
  c.model.layer_norm_eps = 1e-5
  c.optimizer.learning_rate = 1e-3
  c.optimizer.decay = 'cosine'
  c.train.steps = 300
  return c
