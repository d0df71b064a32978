"""The Hugging Face subcommands: `import-hf` and `export-hf`.

Imports stay inside the commands, so that building the parser loads neither JAX nor the
Hugging Face libraries.
"""


def _refuse_mixing(out, command: str):
  """One line when --out holds files of something else, which the command's files would
  mix with: import-hf writes a new workdir (a new or empty folder); export-hf writes a new
  model folder or replaces an earlier export (a folder with config.json). A folder that
  holds a run is refused by the command itself, naming the run."""
  from ssljax import paths, pretrained
  from ssljax.errors import UserError
  out = paths.path(out)
  if not out.is_dir() or pretrained.holds_run(out):
    return
  names = sorted(p.name for p in out.iterdir())
  if not names or command == 'export-hf' and 'config.json' in names:
    return
  listing = ', '.join(names[:3]) + (f' and {len(names) - 3} more' if len(names) > 3 else '')
  what = ('a new workdir' if command == 'import-hf' else
          'a model folder (it replaces only an earlier export, a folder with config.json)')
  raise UserError(f'--out {out} holds other files ({listing}); {command} writes {what}, '
                  'and its files would mix with those: give a new or empty folder')


def _import(args):
  from ssljax.interop import huggingface
  _refuse_mixing(args.out, 'import-hf')
  report = huggingface.import_folder(args.folder, args.out)
  print(f'wrote {args.out}/checkpoints/0 from {args.folder}')
  if report.missing:
    print(f'newly initialized (not in the checkpoint): {report.missing}')
  if report.unexpected:
    print(f'not used (no ssljax parameter takes them): {report.unexpected}')


def _export(args):
  from ssljax.adapt import export
  if export.is_finetuned(args.checkpoint):
    out, task_class = export.to_hf(args.checkpoint, args.out)
    print(f'wrote {out}: load it with transformers.{task_class}.from_pretrained({str(out)!r}) '
          'or the matching AutoModelFor... class')
    return
  from ssljax.inference import loading
  from ssljax.interop import huggingface
  _refuse_mixing(args.out, 'export-hf')
  out = huggingface.export(loading.load(args.checkpoint), args.out)
  print(f'wrote {out}: load it with transformers.AutoModel.from_pretrained({str(out)!r})')


def add_commands(subparsers):
  """Adds import-hf and export-hf to the `ssljax` subcommands."""
  q = subparsers.add_parser(
      'import-hf',
      help='import a Hugging Face BERT/RoBERTa/ALBERT/GPT-2/ModernBERT/Llama/GPT-NeoX folder',
      description='Reads a Hugging Face model folder (config.json, model.safetensors or '
      'pytorch_model.bin, tokenizer files) and writes OUT/checkpoints/0 with a fresh '
      'optimizer state, the matching config and the tokenizer. Continue pretraining with '
      '`ssljax pretrain --set train.init_from=OUT --workdir NEW`; load it in Python with '
      'ssljax.from_pretrained(OUT). Tensors the folder lacks or has extra are listed.')
  q.add_argument('folder', help='a folder written by save_pretrained')
  q.add_argument('--out', required=True, help='the ssljax workdir to create')
  q.set_defaults(run=_import)

  q = subparsers.add_parser(
      'export-hf', help='write a checkpoint as a Hugging Face model folder',
      description='Writes config.json, model.safetensors and the tokenizer (tokenizer.json; '
      'a sentencepiece tokenizer also as spiece.model) into OUT, loadable with '
      'transformers.AutoModel and with BertForPreTraining, RobertaForMaskedLM, '
      'AlbertForPreTraining or GPT2LMHeadModel. A fine-tuned model (the WORKDIR/model '
      'folder of `ssljax finetune`) exports with its head and labels, loadable with '
      'AutoModelForSequenceClassification, AutoModelForTokenClassification or '
      'AutoModelForQuestionAnswering.')
  q.add_argument('checkpoint', help='an ssljax workdir, a checkpoints/STEP directory, a '
                 'fine-tuned model/ folder, or a Hugging Face folder')
  q.add_argument('--out', required=True, help='the folder to write')
  q.set_defaults(run=_export)
