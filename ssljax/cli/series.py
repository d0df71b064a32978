"""`ssljax series probe|forecast`: evaluating what a series run pretrained.

Imports stay inside the commands, so that building the parser loads no JAX.
"""


def _probe(args):
  from ssljax.adapt import series
  from ssljax.inference import loading
  if args.train or args.test:
    if not (args.train and args.test):
      from ssljax.errors import UserError
      raise UserError('--train and --test go together: both labelled series files')
    train, test = args.train, args.test
  else:
    train, test = series.split_names(loading.load(args.checkpoint).config.data.path)
  results = series.probe(args.checkpoint, train, test, tuple(range(args.seeds)), args.method)
  series.write(results, args.out)
  print(series.markdown(results), end='')
  print(f'wrote {args.out}/results.json and report.md')


def _forecast(args):
  from ssljax.adapt import series
  results = series.forecast(args.checkpoint, args.horizon, args.period)
  series.write(results, args.out)
  print(series.markdown(results), end='')
  print(f'wrote {args.out}/results.json, report.md and forecast.png')


def _anomaly(args):
  from ssljax.adapt import series
  results = series.anomaly(args.checkpoint, args.data, args.period,
                           tuple(a for a in args.anomalous.split(',') if a))
  series.write(results, args.out)
  print(series.markdown(results), end='')
  print(f'wrote {args.out}/results.json and report.md')


def add_commands(sub):
  q = sub.add_parser('series', help='probe or forecast with a pretrained series model',
                     description='Evaluates a run of objective=masked_patch (probe) or '
                     'next_patch (forecast); see docs/beyond_text.md.')
  actions = q.add_subparsers(dest='series_command', required=True, metavar='ACTION')
  for method, text in (('probe', 'ridge probe on frozen encoder features'),
                       ('finetune', 'fine-tune the encoder with a linear head')):
    p = actions.add_parser(
        method, help=f'{text}: pretrained vs random init',
        description=f'Test accuracy of a {text} (mean-pooled over patches), from the '
        'pretrained encoder and from a random init (one per seed), beside the majority '
        'class and 1-nearest-neighbour on the raw series. Example: ssljax series '
        f'{method} runs/patchtst_gunpoint --out out/gunpoint')
    p.add_argument('checkpoint', help='the --workdir of ssljax pretrain')
    p.add_argument('--train', help='labelled series to fit on (default: the ucr: set\'s '
                   'train split that the run pretrained on)')
    p.add_argument('--test', help='labelled series to score on (default: its test split)')
    p.add_argument('--seeds', type=int, default=3, help='random inits and CV folds (3)')
    p.add_argument('--out', required=True, help='folder for results.json and report.md')
    p.set_defaults(run=_probe, method='finetune' if method == 'finetune' else 'ridge')
  f = actions.add_parser(
      'forecast', help='rolling forecasts on the held-out end of the run\'s series',
      description='MSE and MAE of the patch decoder\'s forecasts from every patch boundary '
      'of the part of the series that pretraining held out (data.eval_fraction), beside the '
      'naive and seasonal-naive forecasts. Example: ssljax series forecast runs/bleeding '
      '--out out/bleeding')
  f.add_argument('checkpoint', help='the --workdir of ssljax pretrain')
  f.add_argument('--horizon', type=int, default=2, help='patches to forecast (2)')
  f.add_argument('--period', type=int, default=0,
                 help='seasonal period in steps (0: the autocorrelation peak)')
  f.add_argument('--out', required=True, help='folder for results.json, report.md, forecast.png')
  f.set_defaults(run=_forecast)
  a = actions.add_parser(
      'anomaly', help='AUROC of forecast or reconstruction errors as anomaly scores',
      description='A patch decoder (next_patch) scores each step of --data by the squared '
      'error of its one-patch forecast, beside the naive and seasonal-naive forecasts\' '
      'errors: AUROC against the labelled steps, and whether the top score lies within 100 '
      'steps of an anomaly. A patch encoder (masked_patch) pretrained on normal series or '
      'images scores each of --data by its masked-patch reconstruction error, beside PCA\'s '
      'and the distance to the nearest pretraining series: AUROC of the --anomalous labels '
      'against the rest. Example: ssljax series anomaly runs/bleeding_normal --data '
      'aeon:KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv --out out/anomaly')
  a.add_argument('checkpoint', help='the --workdir of ssljax pretrain')
  a.add_argument('--data', required=True, help='decoder: one series with a label per step '
                 '(CSV); encoder: labelled series or images')
  a.add_argument('--anomalous', default='', help='encoder: the labels that are anomalies, '
                 'comma-separated (e.g. 9)')
  a.add_argument('--period', type=int, default=0,
                 help='seasonal period in steps (0: the autocorrelation peak)')
  a.add_argument('--out', required=True, help='folder for results.json and report.md')
  a.set_defaults(run=_anomaly)
