"""A 4 x 128 BERT for a 2-core CPU and 30 minutes: the small-budget recipe of Cramming
(Geiping & Goldstein 2022) plus rotary positions, sized to the budget.

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
load ~2.5 with tests running beside it, while block 0 still had a norm of its own, see
below): ~11,000 tokens/s, 3,861 steps in the budget, eval MLM accuracy 0.10 at step 500,
0.16 at 1,000, 0.20 at 2,500 and 0.231 at the end (loss 5.14); NSP 0.82; a ridge probe on
POS rises 0.60 -> 0.70 -> 0.78. The 4 x 256 model of the same recipe at lr 1e-3 saw a
quarter of the tokens and ended at 0.17 / 0.71 / 0.70. Short of 0.30 MLM accuracy: see
benchmarks/results/pretrain_gain_cpu.md. On a host 3x slower the budget holds 1,211 steps.

Block 0 reads the embedding norm's output without a norm of its own
(model.first_attention_norm=False), so that `ssljax export-hf` writes a
ModernBertForMaskedLM folder (docs/interop.md). Same 1,211-step schedule, data and seed,
with and without that norm (benchmarks/results/pretrain_mlm_nsp_cpu{_block0_norm,}.md):
eval MLM accuracy 0.076 / 0.097 / 0.114 -> 0.075 / 0.098 / 0.105 at steps 500 / 1,000 /
1,211 (loss 6.64 -> 6.66), NSP 0.71 -> 0.75, POS probe 0.573 -> 0.603: 0.009 lower MLM
accuracy at the end, higher NSP and probe (one seed each; the spread between seeds is not
measured).
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'mlm'
  c.model.update(dict(arch='bert', hidden_size=128, num_layers=4, num_heads=4, mlp_dim=512,
                      pre_ln=True, positions='rope', activation='geglu', use_bias=False,
                      first_attention_norm=False, dropout_rate=0.0,
                      attention_dropout_rate=0.0))
  c.mlm.rate = 0.25
  c.tokenizer.vocab_size = 8000
  c.data.seq_len = 128
  c.train.update(dict(batch_size=32, time_budget=30.0, steps=100_000, log_every=25,
                      eval_every=500, eval_batches=8, checkpoint_every=500))
  c.optimizer.update(dict(learning_rate=3e-3, b2=0.98, eps=1e-12, clip_norm=0.5,
                          warmup_fraction=0.1, decay='linear', weight_decay=0.01))
  return c
