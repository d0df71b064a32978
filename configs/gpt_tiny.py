"""GPT-tiny: a causal pre-LN decoder with rotary positions and tied embeddings,
next-token prediction on packed text.

  ssljax pretrain --config configs/gpt_tiny.py --workdir runs/gpt_tiny
  ssljax pretrain --config configs/gpt_tiny.py --workdir runs/gpt_shakespeare \
      --set data.source=text --set data.path=../shared/data/tinyshakespeare/input.txt \
      --set train.steps=600

Expected on 2 CPU cores (~10 k tokens/s: the vocabulary projection runs on every position):
on Tiny Shakespeare (8k unigram vocabulary, batch 32 x 128) eval perplexity 204 at step
100, 148 at 200, 134 at 300, then flat at ~135 to step 600 as the 1 MB corpus repeats
(eval next-token accuracy 0.22); `ssljax plot` draws the curve. `ssljax export-hf RUN --out
hf` writes it as a GPTNeoXForCausalLM folder (pre-LayerNorm with biases, rotary, GELU,
sequential residuals, tied embeddings: the same logits; docs/interop.md).
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'clm'
  c.model.update(dict(arch='gpt', activation='gelu_tanh', layer_norm_eps=1e-5,
                      positions='rope', dropout_rate=0.0, attention_dropout_rate=0.0))
  c.optimizer.update(dict(learning_rate=3e-3, decay='cosine'))
  c.train.steps = 300
  return c
