"""BERT-tiny (2 layers, hidden 128) with MLM + NSP on the embedded corpus: learns in minutes
on a CPU.

  ssljax pretrain --config configs/bert_tiny.py --workdir runs/bert_tiny

The small-budget recipe (see configs/bert_cpu30.py): pre-LN, rotary positions, gated GELU,
no dropout, 25 % masking, learning rate 3e-3. With BERT's own choices (post-LN, learned
positions, dropout 0.1, 15 % masking, 1e-3) the same run sits on the unigram plateau, MLM
accuracy ~0.07. Block 0 reads the embedding norm's output without a norm of its own, so
that the model is exactly ModernBERT: `ssljax export-hf runs/bert_tiny --out hf` writes a
folder transformers loads with AutoModelForMaskedLM (docs/interop.md).

Expected on 2 CPU cores: ~2 min for 600 steps (1 min 46 s measured on an idle machine with
a plain GELU MLP; GeGLU's wider input layer adds half again the MLP's FLOPs); eval MLM
accuracy 0.11 at step 200, 0.17 at 400, 0.186 at 600 (eval MLM loss 5.78; train loss 9.3 at
step 10); NSP stays near chance (0.39) at this budget. Before GeGLU and the skipped block-0
norm: 0.11 / 0.14 / 0.183, loss 5.84, NSP 0.45. The same command gives the same numbers
every time.
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
