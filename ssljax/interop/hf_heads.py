"""Fine-tuned models out to Hugging Face: the base model `huggingface.export` writes, with
the task head in the place transformers' task class reads it.

ssljax's head is one linear layer (finetune.head=linear), after a dense layer, activation
and norm where finetune.head=mlp: on the pooled vector (classification, regression), on
every position (token classification) or on every position with a start and an end output
(extractive QA). It maps exactly where transformers' class computes the same:

  BERT, ALBERT   *ForSequenceClassification: classifier(tanh(pooler([CLS]))), so the
                 model must have been fine-tuned with pooling=cls (the default)
  RoBERTa        classifier.out_proj(tanh(classifier.dense(<s>))): the pooler moves to
                 classifier.dense; again pooling=cls
  GPT-2, GPT-NeoX, Llama   *ForSequenceClassification: score, without a bias, at the last
                 token that is not config.pad_token_id: pooling=last (the default), with
                 the bias-free head fine-tuning gives a decoder (`finetune.head_bias`)
  encoders, GPT-2, GPT-NeoX, Llama   *ForTokenClassification and *ForQuestionAnswering:
                 one linear layer on every position, the pooler dropped
  ModernBERT     every task class: classifier(head(x)), head = ModernBertPredictionHead
                 (dense, GELU, LayerNorm), so finetune.head=mlp; the sequence classifier's
                 x is the first token (pooling=first, config classifier_pooling=cls) or the
                 mean over real tokens (pooling=mean)

and is refused in one line where it does not: another pooling or head, a GPT sequence head
saved with a nonzero bias (before fine-tuning dropped it), a tokenizer that pads with the
[SEP] ending each row (transformers would read the token before it). A GPT's task rows are
`[CLS] text [SEP]` (GPT-2's end-of-text token stands in for both): a sequence classifier's
exported tokenizer adds them, so that transformers' pipeline feeds the ids ssljax reads;
for token and QA heads it adds none, and transformers gives ssljax's outputs for the same
ids.
"""

import dataclasses
import functools

import numpy as np

from ssljax import paths, pretrained
from ssljax.errors import UserError
from ssljax.interop import huggingface
from ssljax.interop.families import FAMILIES

# ssljax task kind -> the transformers class suffix (a key of `Family.task_heads`).
_TASK_CLASS = {'classification': 'ForSequenceClassification',
               'regression': 'ForSequenceClassification',
               'tokens': 'ForTokenClassification', 'span': 'ForQuestionAnswering'}
# What a sequence classifier reads: the pooling it computes (the fine-tuning default).
_READS = {'cls': 'reads the first token through the tanh pooler',
          'last': 'reads the last token that is not padding',
          'first': 'reads the first token\'s last hidden state',
          'mean': 'reads the mean over the real tokens'}


@dataclasses.dataclass(frozen=True)
class TaskHead:
  """What a fine-tuned model adds to its base model."""
  kind: str  # classification | regression | tokens | span (tasks.kinds)
  name: str  # the task's name: the one label of a regression
  labels: tuple[str, ...]  # class or tag names, in output order
  pooling: str  # how a sequence head pooled the last hidden states
  kernel_HxC: np.ndarray
  bias_C: np.ndarray | None  # None: a decoder's last-token head (finetune.head_bias)
  transform: dict | None = None  # finetune.head=mlp: its flat params, ('dense', 'kernel'): ..
  pair: bool = False  # two texts per row, the second in segment 1


def task_class(model_type: str, head: TaskHead) -> str:
  """The transformers class that computes what `head` does on this family, or one line
  saying why none does."""
  family, suffix = FAMILIES[model_type], _TASK_CLASS[head.kind]
  name = family.class_prefix
  if family.task_transform and head.transform is None:
    raise UserError(f'{name}{suffix} puts a dense layer, an activation and a norm '
                    f'({name}PredictionHead) before its classifier, and this model was '
                    'fine-tuned with one linear layer: fine-tune again with --set '
                    'finetune.head=mlp')
  if not family.task_transform and head.transform is not None:
    raise UserError(f'this model was fine-tuned with finetune.head=mlp, but {name}{suffix} '
                    'has one linear layer: fine-tune again with --set finetune.head=linear '
                    '(the default)')
  if suffix != 'ForSequenceClassification':
    return name + suffix
  poolings = list(family.poolings)
  if head.pooling not in poolings:
    default = ' (the fine-tuning default)' if family.sequence_poolings is None else ''
    raise UserError(f'this model was fine-tuned with pooling={head.pooling}, but '
                    f'{name}{suffix} {" or ".join(_READS[p] for p in poolings)}; only '
                    f'pooling={" or ".join(poolings)}{default} exports exactly: fine-tune '
                    f'again with --set pooling={poolings[0]}')
  if _bias_free(model_type, head.kind) and head.bias_C is not None and np.any(head.bias_C):
    raise UserError(f'this model\'s {head.kind} head has a bias (it was fine-tuned before '
                    f'ssljax dropped it from a decoder\'s last-token head), and '
                    f'{name}{suffix} scores without one: fine-tune again')
  return name + suffix


def _bias_free(model_type: str, kind: str) -> bool:
  """transformers' GPT-2, GPT-NeoX and Llama sequence classifiers score without a bias."""
  return FAMILIES[model_type].causal and _TASK_CLASS[kind] == 'ForSequenceClassification'


def _with_head(model_type: str, head: TaskHead, config: dict, weights: dict):
  """The base model's tensors (pretraining heads left out) and config, made a task model."""
  family = FAMILIES[model_type]
  module, pooler_to = family.task_heads[_TASK_CLASS[head.kind]]
  prefix, pooler = family.prefix + '.', family.pooler
  out = {}
  for name, value in weights.items():
    if pooler and name.startswith(pooler + '.'):
      if pooler_to:
        out[pooler_to + name[len(pooler):]] = value
    elif name.startswith(prefix):
      out[name] = value
  out[f'{module}.weight'] = np.ascontiguousarray(np.asarray(head.kernel_HxC, np.float32).T)
  if not _bias_free(model_type, head.kind):
    out[f'{module}.bias'] = np.asarray(head.bias_C, np.float32)
  if family.task_transform:
    assert head.transform is not None  # task_class refuses a model without one
    out |= huggingface.hf_tensors(huggingface.row_tensors((
        (f'{family.task_transform}.dense', 'dense', 'linear'),
        (f'{family.task_transform}.norm', 'norm', 'norm'))), head.transform)
  labels = {'classification': head.labels, 'tokens': head.labels,
            'regression': (head.name,), 'span': ('start', 'end')}[head.kind]
  config = config | {'architectures': [task_class(model_type, head)],
                     'id2label': dict(enumerate(labels)),
                     'label2id': {label: i for i, label in enumerate(labels)}}
  if head.kind in ('classification', 'regression'):
    config['problem_type'] = ('regression' if head.kind == 'regression'
                              else 'single_label_classification')
    config |= family.poolings[head.pooling]
  return config, out


def export(pre: pretrained.Pretrained, head: TaskHead, out) -> tuple[paths.Path, str]:
  """Writes the fine-tuned model `pre` + `head` as a folder that transformers' Auto class
  for the task loads (AutoModelForSequenceClassification, ...ForTokenClassification,
  ...ForQuestionAnswering), with the labels named; returns it and the class. Refused in
  one line where the head has no exact twin."""
  model_type = huggingface.check_twin(pre.model_cfg)
  name = task_class(model_type, head)
  family = FAMILIES[model_type]
  cfg = pre.model_cfg
  reads_segments = cfg.arch != 'gpt' and cfg.type_vocab_size > 0  # a decoder has no table
  if head.pair and reads_segments and not family.token_types:
    raise UserError(f'{family.name} has no token types, and this {head.kind} model reads the '
                    'second text of each pair through segment 1\'s embedding: a pair task '
                    'exports exactly only from a model with model.type_vocab_size=0 (as an '
                    f'imported {family.name} has)')
  last_token = _bias_free(model_type, head.kind)
  if last_token and pre.tokenizer.pad_id == pre.tokenizer.sep_id:
    raise UserError(f'this {name} model\'s tokenizer pads with the token that ends each of '
                    'ssljax\'s task rows, so transformers, which reads the last token that is '
                    'not padding, would read the one before it: a tokenizer whose pad token '
                    'is its [SEP] (GPT-2\'s <|endoftext|>) has no exact twin')
  return huggingface.export(pre, out, functools.partial(_with_head, model_type, head),
                            cls_sep=last_token), name
