"""BERT-tiny (2 layers, hidden 128) with MLM + NSP on the embedded corpus: learns in minutes
on a CPU.

  ssljax pretrain --config configs/bert_tiny.py --workdir runs/bert_tiny

The small-budget recipe (see configs/bert_cpu30.py): pre-LN, rotary positions, gated GELU,
no dropout, 25 % masking, learning rate 3e-3. With BERT's own choices (post-LN, learned
positions, dropout 0.1, 15 % masking, 1e-3) the same run sits on the unigram plateau, MLM
accuracy ~0.07. Block 0 reads the embedding norm's output without a norm of its own, so
that the model is exactly ModernBERT: `ssljax export-hf runs/bert_tiny --out hf` writes a
folder transformers loads with AutoModelForMaskedLM (docs/interop.md).

Expected, measured on 2 cores of a shared AMD EPYC host (AVX-512 with BF16), sentencepiece
0.2.2: 4 min for 600 steps (1 min 46 s on an idle, faster host before GeGLU). Eval MLM
accuracy 0.10-0.12 at step 200 for every seed; then the run leaves the unigram plateau at a
moment that depends on the seed, so step 600 lands anywhere from 0.14 to 0.22: train.seed
0 / 1 / 2 gave 0.217 / 0.186 / 0.138 (eval MLM loss 5.48 / 5.71 / 5.99). NSP stays at
chance (0.39-0.60 on the 8 held-out batches). MLM alone (--set objective=mlm) is no steadier:
0.191 / 0.129 / 0.209. The same command on the same machine gives the same numbers; another
CPU's float rounding can move the plateau's exit, and with it the result, as much as a seed.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'mlm_nsp'
  c.model.update(dict(arch='bert', pre_ln=True, positions='rope', activation='geglu',
                      first_attention_norm=False, dropout_rate=0.0,
                      attention_dropout_rate=0.0))
  c.mlm.rate = 0.25
  c.train.update(dict(steps=600, eval_every=200, eval_batches=8, checkpoint_every=200))
  c.optimizer.update(dict(learning_rate=3e-3, warmup_steps=30))
  return c
