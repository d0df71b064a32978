"""PatchTST-style masked patch modelling on GunPoint (UCR), the series the aeon wheel ships:
40 % of each series' 15 patches of 10 steps are masked and reconstructed.

  pip install --no-deps aeon   # its wheel ships the UCR/UEA sets; ssljax reads the files only
  ssljax pretrain --config configs/patchtst_gunpoint.py --workdir runs/patchtst_gunpoint
  ssljax series probe runs/patchtst_gunpoint --data ucr:GunPoint

Pretraining reads the 50 training series only (the test split is never seen before
scoring). Expected figures: docs/beyond_text.md.
"""

from ssljax import config as config_lib


def get_config():
  c = config_lib.base()
  c.objective = 'masked_patch'
  c.model.update(dict(arch='patch_encoder', patch_len=10, hidden_size=64, num_layers=2,
                      num_heads=4, mlp_dim=128, max_len=64, pre_ln=True, dropout_rate=0.0,
                      attention_dropout_rate=0.0))
  c.mlm.rate = 0.4
  c.data.update(dict(source='series', path='ucr:GunPoint', seq_len=15, eval_fraction=0.1))
  c.train.update(dict(steps=300, batch_size=16, log_every=20, eval_every=100, eval_batches=2,
                      checkpoint_every=100))
  c.optimizer.update(dict(learning_rate=1e-3, warmup_steps=20))
  return c
