"""Next-patch forecasting with a causal patch decoder on InternalBleeding16, a physiological
recording of 7,501 steps from the UCR anomaly archive that the aeon wheel ships (period
about 184 steps). Each window is 24 patches of 16 steps; position t predicts patch t + 1.
The last 30 % of the series (after its labelled anomaly) is held out: pretraining never
sees it, and `ssljax series forecast` scores the forecasts there.

  pip install --no-deps aeon   # its wheel ships the data; ssljax reads the files only
  ssljax pretrain --config configs/patch_decoder_bleeding.py --workdir runs/bleeding
  ssljax series forecast runs/bleeding

Expected, measured on 2 shared cores of an AMD EPYC host (benchmarks/results/series_cpu.md,
train.steps=1000: 20 to 30 s): forecasts of 32 steps from 139 origins score MSE 2.66 /
2.81 / 3.22 (MAE 0.95 / 0.99 / 1.04) for train.seed 0 / 1 / 2, against 7.09 (1.97) for
the seasonal-naive forecast (period 184) and 105 (6.89) for the naive one.
"""

from ssljax import config as config_lib

SERIES = 'aeon:KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv'


def get_config():
  c = config_lib.base()
  c.objective = 'next_patch'
  c.model.update(dict(arch='patch_decoder', patch_len=16, hidden_size=64, num_layers=2,
                      num_heads=4, mlp_dim=128, max_len=64, dropout_rate=0.0,
                      attention_dropout_rate=0.0))
  c.data.update(dict(source='series', path=SERIES, seq_len=24, eval_fraction=0.3))
  c.train.update(dict(steps=1000, batch_size=16, log_every=20, eval_every=100, eval_batches=2,
                      checkpoint_every=100))
  c.optimizer.update(dict(learning_rate=1e-3, warmup_steps=20))
  return c
