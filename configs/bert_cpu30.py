"""BERT-mini (4 x 256) for a 2-core CPU and 30 minutes: the small-budget recipe of Cramming
(Geiping & Goldstein 2022) plus rotary positions.

  python scripts/build_corpus.py --out runs/corpus   # needs ../shared/data; else skip it
  ssljax pretrain --config configs/bert_cpu30.py --workdir runs/cpu30 \
      --set data.source=text --set data.path=runs/corpus

Without the two --set flags it pretrains on the embedded corpus. The run measures its step
rate, fixes train.steps so the schedule spans 30 minutes (WORKDIR/budget.json), and stops
with a checkpoint when the time is spent; rerunning continues exactly.

The recipe: pre-LN with a final norm, rotary positions (learned absolute positions keep a
tiny BERT on the unigram plateau for thousands of steps; see tests/test_context_use.py),
gated GELU, no biases, no dropout, MLM only at a 25 % masking rate with the head on the
masked positions only, AdamW (0.9, 0.98), clipping 0.5, warmup over 10 % of the budget then
linear decay to 0. Set objective=mlm_nsp or mlm_sop for the sentence-pair heads.

Expected on 2 CPU cores (measured with objective=mlm_nsp on the corpus above, machine at
load 5-6): ~2,600 tokens/s, 961 steps in the budget, eval MLM accuracy 0.17 (loss 6.2),
NSP 0.71; a ridge probe on POS rises 0.67 -> 0.70. Short of the 0.30 this budget should
give: see benchmarks/results/pretrain_gain_cpu.md for the reading and what to try next.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'mlm'
  c.model.update(dict(arch='bert', hidden_size=256, num_layers=4, num_heads=4, mlp_dim=1024,
                      pre_ln=True, positions='rope', activation='geglu', use_bias=False,
                      dropout_rate=0.0, attention_dropout_rate=0.0))
  c.mlm.rate = 0.25
  c.tokenizer.vocab_size = 8000
  c.data.seq_len = 128
  c.train.update(dict(batch_size=32, time_budget=30.0, steps=100_000, log_every=25,
                      eval_every=500, eval_batches=8, checkpoint_every=500))
  c.optimizer.update(dict(learning_rate=1e-3, b2=0.98, eps=1e-12, clip_norm=0.5,
                          warmup_fraction=0.1, decay='linear', weight_decay=0.01))
  return c
