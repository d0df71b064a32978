"""Predictions for new inputs from a model that `ssljax finetune` saved (WORKDIR/model).

Inputs, one per line: plain text (a sentence pair split by a tab) or JSONL with `text`
and `text_b` for classification and regression; words split by spaces for token tasks;
JSONL with `question` and `context` for extractive QA. Outputs are JSONL, one object per
input line, with its `line` number and `input` text: the label and each label's
probability, the score, the tag of each word, or the answer span (a blank line: `skipped`).
"""

import functools
import json

import jax
import numpy as np
from flax import nnx

from ssljax import paths, progress
from ssljax.adapt import finetune
from ssljax.errors import UserError
from ssljax.tasks import kinds, readers, task_rows


def read_inputs(path, spec) -> list[tuple[int, str, readers.Example | None]]:
  """(line number, line, example) for every line; a blank line has no example, so that the
  outputs still line up with the inputs."""
  path = paths.path(path)
  if not path.is_file():
    raise UserError(f'--input {path} does not exist')
  lines = list(enumerate(paths.read_utf8(path).splitlines(), start=1))
  if not any(line.strip() for _, line in lines):
    raise UserError(f'--input {path} has no inputs')
  return [(n, line, _example(line, spec, f'{path}:{n}', path.suffix == '.jsonl')
           if line.strip() else None) for n, line in lines]


def _example(line, spec, where, is_json) -> readers.Example:
  if spec.kind == 'tokens':
    return readers.Example(words=line.split(), where=where)
  if spec.kind == 'span' or is_json:
    try:
      record = json.loads(line)
      if spec.kind == 'span':
        return readers.Example(question=record['question'], context=record['context'],
                             where=where)
      return readers.Example(text=record['text'], text_b=record.get('text_b'), where=where)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      wanted = '"question" and "context"' if spec.kind == 'span' else '"text" (and "text_b")'
      raise UserError(f'{where} is not a JSON object with {wanted} ({e}); fix that '
                      'line') from None
  text, _, text_b = line.partition('\t')
  if spec.pair and not text_b:
    raise UserError(f'{where}: {spec.name} compares two texts; separate them with a tab')
  return readers.Example(text=text, text_b=text_b or None, where=where)


def predict(model_dir, examples=None, input_path=None, batch_size: int = 32,
            show_progress: bool = False) -> list[dict]:
  """One dict per example, or per line of `input_path` with its line number and text (a
  blank line is marked skipped), from the model in `model_dir`."""
  model, spec, meta, tokenizer = finetune.load(model_dir)
  if examples is not None:
    return predictions(model, spec, meta, tokenizer, examples, batch_size, show_progress)
  lines = read_inputs(input_path, spec)
  found = iter(predictions(model, spec, meta, tokenizer,
                           [e for _, _, e in lines if e is not None], batch_size, show_progress))
  return [{'line': n, 'input': text} | (next(found) if e is not None else
                                        {'skipped': 'blank line'}) for n, text, e in lines]


def outputs_and_decoded(model, spec, meta, tokenizer, examples, batch_size: int = 32,
                        show_progress: bool = False) -> tuple[np.ndarray, list]:
  """The head's outputs (`kinds.collect`) and each example's decoded prediction (a class
  id, score, tag list or answer text) from a loaded fine-tuned model (`finetune.load`); a
  bar on stderr with `show_progress` when there is more than one batch."""
  rows = task_rows.build(tokenizer, spec, examples,
                        task_rows.max_length(model.model.cfg, meta['max_len']), meta['doc_stride'])
  graphdef, state = nnx.split(model)
  forward = jax.jit(functools.partial(finetune.outputs, graphdef))
  batches = -(-len(rows) // batch_size)
  with progress.bar(show_progress and batches > 1, batches, 'predict', unit='batch') as bar:
    def step(batch):
      bar.update(1)
      return forward(state, batch)
    outputs = kinds.collect(step, rows, batch_size, spec)
  return outputs, kinds.KINDS[spec.kind].decode(spec, rows, outputs, examples)


def predictions(model, spec, meta, tokenizer, examples, batch_size: int = 32,
                show_progress: bool = False) -> list[dict]:
  """One dict per example (see the module docstring) from a loaded fine-tuned model."""
  outputs, decoded = outputs_and_decoded(model, spec, meta, tokenizer, examples, batch_size,
                                         show_progress)
  if spec.kind == 'classification':
    probs = np.asarray(jax.nn.softmax(outputs, axis=-1))
    return [{'label': spec.labels[i], 'probabilities': dict(zip(spec.labels, p.round(6).tolist()))}
            for i, p in zip(decoded, probs)]
  key = {'regression': 'score', 'tokens': 'tags', 'span': 'answer'}[spec.kind]
  return [{key: value} for value in decoded]


def write(predictions, out) -> paths.Path:
  out = paths.path(out)
  paths.write_whole(out, ''.join(json.dumps(p, ensure_ascii=False) + '\n'
                                 for p in predictions))
  return out
