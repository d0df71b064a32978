"""Fine-tuning from Python: `ssljax.finetune(checkpoint, task='sst2', data_dir=..., lr=...)`
runs what `ssljax finetune` runs and returns the chosen model as a `Finetuned`, which
predicts, saves and exports; `ssljax.from_pretrained(WORKDIR/model)` loads one back.

Settings are keywords: any key of `run.defaults()` (`data_dir`, `seeds`, `max_len`, ...),
a key of its `finetune` section (`lr`, `epochs`, ...), or a section as a dict
(`finetune={'lr': 1e-4}`); they are checked as `--set` values are.
"""

import dataclasses
import tempfile
import types

from flax import nnx

from ssljax import paths
from ssljax.adapt import export, finetune as finetune_lib, predict as predict_lib, run
from ssljax.errors import UserError
from ssljax.inference import loading
from ssljax.pretrained import Pretrained
from ssljax.tasks import catalog, readers


def overrides(settings: dict) -> list[str]:
  """Keyword settings as `--set` items: `lr=1e-4` is finetune.lr where the top level has
  no `lr`, and a dict sets keys of its section."""
  known, items = run.defaults(), []
  for key, value in settings.items():
    if isinstance(value, dict):
      items += [f'{key}.{k}={v}' for k, v in value.items()]
    elif key not in known and key in known.finetune:
      items.append(f'finetune.{key}={value}')
    else:
      items.append(f'{key}={value}')
  return items


def _example(item, spec) -> readers.Example:
  """A text, a (text, text_b) pair, a list of words (token tasks) or a dict with question
  and context (QA), as the task reads them."""
  if spec.kind == 'tokens':
    words = item.split() if isinstance(item, str) else list(item)
    return readers.Example(words=words)
  if spec.kind == 'span':
    if not isinstance(item, dict) or not {'question', 'context'} <= item.keys():
      raise UserError(f'{spec.name} answers questions: pass dicts with "question" and '
                      f'"context", not {item!r:.60}')
    return readers.Example(question=item['question'], context=item['context'])
  if isinstance(item, str):
    if spec.pair:
      raise UserError(f'{spec.name} compares two texts: pass (text, text_b) pairs')
    return readers.Example(text=item)
  text, text_b = item
  return readers.Example(text=text, text_b=text_b)


@dataclasses.dataclass(repr=False)
class Finetuned:
  """A fine-tuned model with its task, tokenizer and (after `ssljax.finetune`) the results
  of its run."""
  model: finetune_lib.Tuned
  spec: readers.TaskSpec
  meta: dict  # what finetune.save wrote: pooling, max_len, doc_stride, ...
  tokenizer: object
  results: dict | None = None  # results.json of the run that made it
  workdir: paths.Path | None = None

  @classmethod
  def load(cls, model_dir, results=None, workdir=None) -> 'Finetuned':
    model, spec, meta, tokenizer = finetune_lib.load(model_dir)
    return cls(model, spec, meta, tokenizer, results, workdir)

  def __repr__(self):
    cfg = self.model.model.cfg
    labels = f' {"/".join(self.spec.labels)}' if self.spec.kind == 'classification' else ''
    return (f'ssljax fine-tuned {cfg.arch} ({cfg.num_layers} layers, hidden '
            f'{cfg.hidden_size}, pooling {self.meta["pooling"]}): {self.spec.name} '
            f'{self.spec.kind}{labels}')

  def predict(self, inputs, batch_size: int = 32, show_progress: bool = True) -> list[dict]:
    """`ssljax predict`'s output for each input: texts, (text, text_b) pairs, lists of
    words or {'question', 'context'} dicts, as the task takes."""
    items = [inputs] if isinstance(inputs, str | dict) else list(inputs)
    examples = [_example(item, self.spec) for item in items]
    return predict_lib.predictions(self.model, self.spec, self.meta, self.tokenizer, examples,
                                   batch_size, show_progress)

  def save(self, path) -> paths.Path:
    """The folder `ssljax predict --model` and `ssljax export-hf` read."""
    saved = types.SimpleNamespace(**{k: self.meta[k] for k in ('pooling', 'max_len',
                                                               'doc_stride')},
                                  head=self.meta.get('head', 'linear'))
    return finetune_lib.save(path, nnx.to_pure_dict(nnx.state(self.model)),
                             self.model.model.cfg, self.spec, saved, self.tokenizer)

  def export_hf(self, out) -> paths.Path:
    """A Hugging Face folder for the task's AutoModelFor... class (`ssljax export-hf`)."""
    return export.head_to_hf(self.model, self.spec, self.meta, self.tokenizer, out)[0]


def load_model(path) -> Pretrained:
  """`inference.loading.load(path)`, and for a fine-tuned model folder its model without
  the head (`export.as_pretrained`)."""
  if export.is_finetuned(path):
    tuned, _, _, tokenizer = finetune_lib.load(path)
    return export.as_pretrained(tuned, tokenizer)
  return loading.load(path)


def finetune(checkpoint, task: str, workdir=None, **settings) -> Finetuned:
  """Fine-tunes `checkpoint` (a path, or a model `ssljax.from_pretrained` loaded) on `task`
  as `ssljax finetune` does, writing results.json, report.md and model/ into `workdir` (a
  new temporary folder when None); returns the model of the best seed."""
  s = run.load_settings(overrides(settings))
  if isinstance(checkpoint, Pretrained):
    pre, name = checkpoint, ''
  else:
    pre, name = load_model(checkpoint), str(checkpoint)
  workdir = paths.path(workdir or tempfile.mkdtemp(prefix=f'ssljax-finetune-{task}-'))
  results = run.run(pre, catalog.load_task(task, s), 'finetune', workdir, s, name)
  return Finetuned.load(workdir / 'model', results, workdir)
