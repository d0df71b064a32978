"""PatchTST-style masked patch modelling on GunPoint (UCR), the series the aeon wheel ships:
40 % of each series' 15 patches of 10 steps are masked and reconstructed.

  pip install --no-deps aeon   # its wheel ships the UCR/UEA sets; ssljax reads the files only
  ssljax pretrain --config configs/patchtst_gunpoint.py --workdir runs/patchtst_gunpoint
  ssljax series probe runs/patchtst_gunpoint --data ucr:GunPoint

Pretraining reads the 50 training series only (the test split is never seen before
scoring). Expected, measured on 2 shared cores of an AMD EPYC host (benchmarks/results/
series_cpu.md, train.steps=600: 22 to 37 s): held-out masked-patch loss (normalised units)
0.056 / 0.075 / 0.135 for train.seed 0 / 1 / 2; ridge-probe test accuracy 0.893 / 0.900 /
0.887 against 0.920 / 0.880 / 0.873 from a random init, fine-tuned 0.833 / 0.873 / 0.933
against 0.900 / 0.827 / 0.880; majority 0.493, 1-NN 0.913. The same run with
data.path=ucr:ItalyPowerDemand model.patch_len=4 data.seq_len=6, or ucr:BasicMotions
model.patch_len=10 data.seq_len=10: docs/beyond_text.md.
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
  c.train.update(dict(steps=600, batch_size=16, log_every=20, eval_every=100, eval_batches=2,
                      checkpoint_every=100))
  c.optimizer.update(dict(learning_rate=1e-3, warmup_steps=20))
  return c
