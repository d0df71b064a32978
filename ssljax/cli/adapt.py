"""The `probe`, `finetune`, `fewshot`, `evaluate` and `predict` subcommands of `ssljax`.

Imports stay inside the commands, so that building the parser loads no JAX.
"""

from ssljax.adapt import settings

# What the settings' one-line meanings leave out: how finetune.lr=auto and the search work.
NOTES = '''\
  finetune.lr=auto: 3e-5,1e-4,3e-4,1e-3 (BERT-base's range up to a 1.5 M-parameter model's;
    scaled up by 384 / width below 384 wide: 9e-5..3e-3 at 128), keeping the rate and epoch
    best on the validation split carved from train. finetune.search=halving: the rates train
    side by side; after each epoch but the last, a rate in neither the better half by
    validation score (ties kept) nor the better half by validation loss stops (4 rates, 3
    epochs: 4+2+1 epochs or a few more, costs 2.3 x the time of one rate per seed); grid:
    every rate for every epoch (costs 4 x)
'''
SETTINGS_HELP = ('settings (--set KEY=VALUE, repeatable; ssljax/adapt/settings.py, '
                 f'docs/adaptation.md):\n{settings.help_text()}{NOTES}')
TASKS_HELP = ('cola sst2 mrpc stsb qqp mnli qnli rte wnli (GLUE folder or tfds), pos (CoNLL-U), '
              'ner (CoNLL BIO), squad (SQuAD v1.1 JSON), table (CSV/TSV/JSONL columns)')


def _load(args):
  from ssljax.adapt import api, run
  overrides = list(args.set)
  if args.data_dir:
    overrides.insert(0, f'data_dir={args.data_dir}')
  return api.load_model(args.checkpoint), run.load_settings(overrides)


def _method(name):
  def command(args):
    from ssljax.adapt import run
    from ssljax.tasks import catalog
    pre, s = _load(args)
    results = run.run(pre, catalog.load_task(args.task, s), name, args.workdir, s, args.checkpoint)
    print(f'wrote {args.workdir}/results.json and report.md')
    print(_summary(results['metrics']))
    print('\n'.join(f'  baseline ({results["baseline_name"]}) {split}: ' +
                    ', '.join(f'{name} {v:.4f}' for name, v in metrics.items())
                    for split, metrics in results['baseline'].items()))
  return command


def _summary(metrics) -> str:
  return '\n'.join(f'  {group} {split}: ' + ', '.join(
      f'{name} {v["median"]:.4f}' + (f' ± {v["std"]:.4f}' if len(v['values']) > 1 else '')
      for name, v in stats.items())
                   for group, splits in metrics.items() for split, stats in splits.items())


def _evaluate(args):
  from ssljax.adapt import suite as suite_lib
  pre, s = _load(args)
  names = [t.strip() for t in args.tasks.split(',') if t.strip()]
  methods = [m.strip() for m in args.methods.split(',') if m.strip()]
  suite = suite_lib.run_suite(pre, names, methods, args.workdir, s, args.checkpoint)
  print(f'wrote {args.workdir}/results.json, report.md and methods.png')
  for column, score in suite['glue_average'].items():
    print(f'  GLUE average {column}: {score["value"]:.4f} over {score["tasks"]} tasks')


def _predict(args):
  from ssljax.adapt import predict
  predictions = predict.predict(args.model, input_path=args.input, show_progress=True)
  if args.output:
    print(f'wrote {predict.write(predictions, args.output)}: {len(predictions)} predictions')
  else:
    import json
    for p in predictions:
      print(json.dumps(p, ensure_ascii=False))


def _compare(args):
  from ssljax import paths
  from ssljax.adapt import api, compare, run, suite as suite_lib
  from ssljax.errors import UserError
  names = [n.strip() for n in args.names.split(',')]
  if len(names) != 2 or not all(names) or names[0] == names[1]:
    raise UserError(f'--names {args.names!r}: give two different names split by a comma')
  sides = []
  for name, source in zip(names, (args.a, args.b)):
    if (paths.path(source) / 'results.json').is_file():
      sides.append(source)
      continue
    if not args.tasks:
      raise UserError(f'{source} holds no results.json: pass --tasks (and --methods) to '
                      'evaluate it here, or the --workdir of an earlier evaluation')
    overrides = ([f'data_dir={args.data_dir}'] if args.data_dir else []) + list(args.set)
    workdir = paths.path(args.workdir) / name
    suite_lib.run_suite(api.load_model(source), [t for t in args.tasks.split(',') if t],
                        [m for m in args.methods.split(',') if m], workdir,
                        run.load_settings(overrides), source)
    sides.append(workdir)
  out = compare.compare(sides[0], sides[1], args.workdir, names)
  print(f'wrote {args.workdir}/compare.md, compare.json and compare.png')
  for row in out['rows']:
    if row['main']:
      print(f'  {row["task"]} {row["method"]} {row["group"]} {row["split"]} {row["metric"]}: '
            f'{names[0]} {row["a"]["median"]:.4f}, {names[1]} {row["b"]["median"]:.4f}, '
            f'delta {row["delta"]:+.4f}' +
            (f', paired p = {row["paired"]["p"]:.3g}' if row['paired'] else ''))


def add_commands(subparsers, formatter):
  """Adds the adaptation commands to the `ssljax` subcommands."""

  def common(q, *, task=True):
    q.add_argument('--checkpoint', required=True, help='a pretraining workdir (latest '
                   'checkpoint), a checkpoints/STEP directory, a fine-tuned model/ folder '
                   '(its model without the head), or a Hugging Face folder')
    if task:
      q.add_argument('--task', required=True, help=TASKS_HELP)
    q.add_argument('--data-dir', default='', help='the GLUE folder (or a folder holding '
                   'glue/ and UD files); same as --set data_dir=')
    q.add_argument('--workdir', required=True, help='where results.json, report.md and '
                   'the plots go')
    q.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='override a setting (see below)')

  for name, help_text, description, example in (
      ('probe', 'train a linear (or ridge) head on frozen features',
       'Freezes the encoder, computes features once (cached in WORKDIR/features) and trains '
       'only a linear head with AdamW, or fits a closed-form ridge probe '
       '(--set probe.kind=ridge). The epoch or penalty is chosen on a validation split '
       'carved from train; the evaluation split is only scored.',
       'ssljax probe --checkpoint runs/bert_tiny --task sst2 --data-dir GLUE --workdir out/probe'),
      ('finetune', 'fine-tune the whole model with a task head',
       'Fine-tunes the model and a new head (AdamW, warmup then linear decay, optional '
       'layer-wise LR decay finetune.llrd) at each learning rate of the grid '
       '(finetune.lr=auto, the default: 4 rates searched by successive halving, about 2.3 x '
       'the time of one) or at the one given, keeps the rate and epoch best on a validation '
       'split carved from train, and '
       'saves the best seed\'s model in WORKDIR/model for `ssljax predict`. The report sets '
       'the medians beside a trivial baseline (majority class, training mean, most frequent '
       'tag per word, first words of the context) and warns when they do not beat it. '
       '--set init=both adds the from-scratch model.',
       'ssljax finetune --checkpoint runs/bert_tiny --task sst2 --data-dir GLUE '
       '--workdir out/ft --set init=both'),
      ('fewshot', 'zero/few-shot in-context classification with a causal LM',
       'Scores each label\'s verbaliser by log-likelihood after a prompt of k '
       'demonstrations drawn from train by seed (fewshot.shots, fewshot.template, '
       'fewshot.verbalizers) and reports accuracy against k.',
       'ssljax fewshot --checkpoint runs/gpt --task sst2 --data-dir GLUE --workdir out/fs '
       '--set "fewshot.template=Review: {text}\\nSentiment:" --set "fewshot.verbalizers= '
       'negative| positive"')):
    q = subparsers.add_parser(
        name, help=help_text, formatter_class=formatter,
        description=f'{description} Writes WORKDIR/results.json (task, method, seeds, metrics '
        'by name: median, mean, std over seeds), report.md and plots.',
        epilog=f'example:\n  {example}\n\n{SETTINGS_HELP}')
    common(q)
    q.set_defaults(run=_method(name))

  q = subparsers.add_parser(
      'evaluate', help='run a suite of tasks by several methods',
      formatter_class=formatter,
      description='Runs each of --tasks by each of --methods into WORKDIR/TASK/METHOD, then '
      'writes WORKDIR/results.json, report.md (tasks by method, with the GLUE average) and '
      'methods.png.',
      epilog='example:\n  ssljax evaluate --checkpoint runs/bert_tiny --tasks '
      'sst2,cola,rte,stsb --methods probe,finetune --data-dir GLUE --workdir out/eval\n\n' +
      SETTINGS_HELP)
  common(q, task=False)
  q.add_argument('--tasks', required=True, help='comma-separated: ' + TASKS_HELP)
  q.add_argument('--methods', default='probe,finetune', help='comma-separated: probe, '
                 'finetune, fewshot (default probe,finetune)')
  q.set_defaults(run=_evaluate)

  q = subparsers.add_parser(
      'compare', help='two models on the same tasks: deltas, seed spread, paired tests',
      formatter_class=formatter,
      description='Compares A and B: each the --workdir of an earlier probe, finetune, '
      'fewshot or evaluate run, or a checkpoint (workdir, checkpoints/STEP, Hugging Face '
      'folder) that is evaluated here on --tasks by --methods into WORKDIR/NAME. Writes '
      'WORKDIR/compare.md, compare.json and compare.png: per task, method, split and metric '
      'the median and spread over seeds of each side and the delta B - A, with a paired test '
      'on the same evaluation examples where both saved a fine-tuned model (McNemar\'s exact '
      'test for accuracy, a paired bootstrap otherwise).',
      epilog='example:\n  ssljax compare runs/bert_tiny hf_minilm --tasks sst2 --methods '
      'finetune --data-dir GLUE --workdir out/cmp --names ours,minilm\n\n' + SETTINGS_HELP)
  q.add_argument('a', help='a results workdir or a checkpoint')
  q.add_argument('b', help='a results workdir or a checkpoint')
  q.add_argument('--workdir', required=True, help='where compare.md, .json and .png go')
  q.add_argument('--names', default='A,B', help='what to call the two sides (default A,B)')
  q.add_argument('--tasks', default='', help='comma-separated, to evaluate a checkpoint: ' +
                 TASKS_HELP)
  q.add_argument('--methods', default='finetune', help='comma-separated: probe, finetune, '
                 'fewshot (default finetune: the method with a paired test)')
  q.add_argument('--data-dir', default='', help='same as --set data_dir=')
  q.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='override a setting (see below)')
  q.set_defaults(run=_compare)

  q = subparsers.add_parser(
      'predict', help='labels, scores, tags or answers for new inputs',
      formatter_class=formatter,
      description='Predicts with the model `ssljax finetune` saved in WORKDIR/model. Input, '
      'one per line: text (a pair split by a tab) or JSONL {"text", "text_b"}; words split by '
      'spaces for pos/ner; JSONL {"question", "context"} for squad. Output: JSONL.',
      epilog='example:\n  ssljax predict --model out/ft/model --input sentences.txt')
  q.add_argument('--model', required=True, help='the model/ folder of a finetune workdir')
  q.add_argument('--input', required=True, help='the inputs, one per line')
  q.add_argument('--output', help='JSONL file to write (default: print)')
  q.set_defaults(run=_predict)
