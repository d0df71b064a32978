"""The settings of the adaptation commands (`--set KEY=VALUE`): every key with its default,
values and meaning, written once (`ssljax.schema`). Free of JAX, so that `--help` lists
them without loading it."""

import dataclasses
import textwrap

from ssljax import schema
from ssljax.config import TaskData
from ssljax.schema import key, section

INITS = {'pretrained': ('pretrained',), 'scratch': ('scratch',),
         'both': ('pretrained', 'scratch')}
# Where the [CLS] pooler (dense + tanh) of a fine-tune starts: `fresh` draws it from the
# seed, the same for both inits, so that the pretrained and the scratch model differ only in
# the encoder; `pretrained` keeps the checkpoint's, trained by NSP or SOP. A pooler whose
# sentence-pair objective stayed at chance (NSP in the demo's former mlm_nsp) or never
# trained (MLM only, the demo now) is noise at best: from the mlm_nsp demo checkpoint
# (1,000 SST-2 examples, 3 seeds) the pretrained pooler scored below scratch
# (docs/pretraining.md). Re-drawing it helps few-sample fine-tuning of BERT too (Zhang et
# al. 2021, "Revisiting few-sample BERT fine-tuning").
POOLERS = ('fresh', 'pretrained')


@dataclasses.dataclass(frozen=True)
class Table:
  """task=table: which columns of a CSV/TSV/JSONL file hold what."""
  text: str = key('text', 'the text column')
  text_b: str = key('', 'a second text column for pairs; \'\' = none')
  label: str = key('label', 'the target column')
  kind: str = key('classification', 'classification or regression',
                  choices=('classification', 'regression'))


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
  """`ssljax finetune`."""
  lr: str = key('auto', 'auto (finetune.LR_GRID, scaled by width), a number or numbers split '
                'by commas')
  search: str = key('halving', 'how the rates are searched: halving or grid')
  epochs: int = key(3, 'epochs, or more to reach min_steps updates', at_least=1)
  min_steps: int = key(300, 'at least this many updates', at_least=0)
  warmup: float = key(0.1, 'share of the updates warming up', at_least=0, below=1)
  weight_decay: float = key(0.01, 'decoupled weight decay', at_least=0)
  llrd: float = key(1.0, 'layer-wise rate decay per block down from the top', above=0,
                    at_most=1)
  bucket_by_length: bool = key(True, 'batches of similar-length rows, each cut short')
  pooler: str = key('fresh', 'the [CLS] pooler\'s start: fresh or pretrained',
                    choices=POOLERS)
  head: str = key('', 'the task head: linear, or mlp (dense, activation and norm, started '
                  'from the MLM head\'s, then linear: ModernBERT\'s task heads); \'\' = the '
                  'one the model\'s Hugging Face family has (mlp for ModernBERT)',
                  choices=('', 'linear', 'mlp'))


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
  """`ssljax probe`."""
  kind: str = key('linear', 'a linear head trained with AdamW, or closed-form ridge',
                  choices=('linear', 'ridge'))
  lr: float = key(1e-3, 'the linear head\'s rate', above=0)
  epochs: int = key(30, 'the linear head\'s epochs', at_least=1)
  weight_decay: float = key(1e-4, 'the linear head\'s weight decay', at_least=0)
  layer: str = key('best', 'best (each block, chosen on validation), last, or block N (1..)')


@dataclasses.dataclass(frozen=True)
class FewshotSettings:
  """`ssljax fewshot`."""
  template: str = key('{text}\\nAnswer:', 'the prompt; {text} and {text_b} are filled in, '
                      '\\n is a newline')
  verbalizers: str = key('', 'a verbaliser per label split by |, e.g. \' no| yes\'; \'\' = '
                         'the label names')
  shots: str = key('0,1,4', 'demonstrations per prompt, split by commas')
  normalize: bool = key(False, 'score continuations by their mean log-probability per token')


@dataclasses.dataclass(frozen=True)
class Settings(TaskData):
  """Every key the adaptation commands read (`--set key=value`): where the task's examples
  are (`TaskData`, shared with the probe while pretraining), then how they are read and
  how each method runs."""
  source: str = key('files', 'files, or tfds (GLUE from prepared tensorflow-datasets glue/*)',
                    choices=('files', 'tfds'))
  eval_splits: str = key('', 'GLUE, comma-separated; \'\' = dev (MNLI dev_matched, '
                         'dev_mismatched)')
  data_seed: int = key(0, 'which subset', at_least=0)
  init: str = key('pretrained', 'pretrained, scratch (same architecture, random) or both',
                  choices=tuple(INITS))
  seeds: int = key(3, 'runs with seeds seed, seed + 1, ...', at_least=1)
  seed: int = key(0, 'the first seed', at_least=0)
  max_len: int = key(128, 'tokens per row', at_least=8)
  batch_size: int = key(32, 'rows per step', at_least=1)
  pooling: str = key('', 'cls, first, mean or last; \'\' = to fine-tune, the model\'s Hugging '
                     'Face family\'s (cls; last for a decoder, mean for ModernBERT), else mean')
  val_fraction: float = key(0.1, 'of train, held out to choose epochs and penalties', above=0,
                            below=1)
  doc_stride: int = key(64, 'squad: tokens between window starts', at_least=1)
  progress: bool = key(True, 'a tqdm bar and a line per epoch on stderr')
  table: Table = section(Table)
  finetune: FinetuneSettings = section(FinetuneSettings)
  probe: ProbeSettings = section(ProbeSettings)
  fewshot: FewshotSettings = section(FewshotSettings)


def help_text(width: int = 92) -> str:
  """One line (or a few) per setting for `--help`: key=default, meaning, values."""
  lines = []
  for name, f in schema.fields(Settings):
    choices, interval = f.metadata['choices'], schema.interval(f)
    values = (f' (one of {", ".join(map(str, choices))})' if choices else
              f' (in {interval})' if interval else '')
    text = f'{name}={f.default}  {f.metadata["doc"]}{values}'
    lines += textwrap.wrap(text, width, initial_indent='  ', subsequent_indent='      ')
  return '\n'.join(lines) + '\n'
