"""Masked image modelling (MAE-style) on scikit-learn's 8 x 8 digits: each image is 16
patches of 2 x 2 pixels, half of them masked and reconstructed by the patch encoder that
PatchTST uses for series (an image's patches in raster order are its series).

  ssljax pretrain --config configs/mae_digits.py --workdir runs/mae_digits
  ssljax series probe runs/mae_digits --out out/mae_digits_probe

Pretraining reads the 1,258 training digits only (digits:train, a fixed 70 % of the 1,797);
the probe scores the other 539 (scikit-learn comes with the series extra). Expected,
measured on 2 shared cores (about 20 s of pretraining, 17 s per evaluation): held-out
masked-patch loss 0.316 / 0.317 / 0.308 for train.seed 0 / 1 / 2; ridge-probe test
accuracy 0.902 / 0.909 / 0.928 against 0.918 from random encoders; `ssljax series
finetune` (seed 0's run) 0.835 against 0.620 from scratch; majority 0.085, 1-NN on the
pixels 0.985. docs/beyond_text.md ("Images") says what this shows.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'masked_patch'
  c.model.update(dict(arch='patch_encoder', patch_len=2, hidden_size=64, num_layers=2,
                      num_heads=4, mlp_dim=128, max_len=16, pre_ln=True, dropout_rate=0.0,
                      attention_dropout_rate=0.0))
  c.mlm.rate = 0.5
  c.data.update(dict(source='series', path='digits', seq_len=16, eval_fraction=0.1))
  c.train.update(dict(steps=600, batch_size=64, log_every=20, eval_every=100, eval_batches=2,
                      checkpoint_every=200))
  c.optimizer.update(dict(learning_rate=1e-3, warmup_steps=20))
  return c
