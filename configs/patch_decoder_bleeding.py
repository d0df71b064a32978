"""Next-patch forecasting with a causal patch decoder on InternalBleeding16, a physiological
recording of 7,501 steps from the UCR anomaly archive that the aeon wheel ships (period
about 183 steps). Each window is 24 patches of 16 steps; position t predicts patch t + 1.
The last 30 % of the series (after its labelled anomaly) is held out: pretraining never
sees it, and `ssljax series forecast` scores the forecasts there.

  pip install --no-deps aeon   # its wheel ships the data; ssljax reads the files only
  ssljax pretrain --config configs/patch_decoder_bleeding.py --workdir runs/bleeding
  ssljax series forecast runs/bleeding

Expected figures: docs/beyond_text.md.
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
  c.train.update(dict(steps=300, batch_size=16, log_every=20, eval_every=100, eval_batches=2,
                      checkpoint_every=100))
  c.optimizer.update(dict(learning_rate=1e-3, warmup_steps=20))
  return c
