"""ssljax causal LMs in EleutherAI's lm-evaluation-harness (lm-eval 0.4): the `ssljax` model.

lm-eval 0.4 finds third-party models only when they are registered in the same process
(it reads no entry points), so importing this module registers `ssljax`, and
`ssljax lm-eval ARGS` runs lm-eval's own command line after that import
(`--model ssljax --model_args checkpoint=CKPT --tasks ...`). `run_tasks` runs tasks on a
model in memory, and `lm_eval_hook` does so every `eval.lm_eval_every` steps of pretraining.

Requests are handled as lm-eval's `hf` model handles them, so a checkpoint and its
`export-hf` folder give the same numbers: an empty context is the end-of-text token,
inputs longer than the model keep their last tokens, rolling log-likelihoods use
lm-eval's disjoint windows, generation reads the last `max_length - max_gen_toks` tokens of
the context and its text is cut at the first `until` string. Scoring is batched with rows
batched by length (`scoring.continuation_scores`); generation is `generation.generate_ids`.
"""

import dataclasses
import json
import sys

import ml_collections
import numpy as np

from ssljax import progress, tokenizers
from ssljax.errors import MissingExtra, UserError
from ssljax.inference import generation, loading, scoring
from ssljax.pretrain.hooks import Hook, HookInfo
from ssljax.pretrained import Pretrained

try:
  from lm_eval import evaluator, utils as lm_eval_utils
  from lm_eval.api.model import TemplateLM
  from lm_eval.api.registry import register_model
  from lm_eval.config.evaluate_config import EvaluatorConfig
  from lm_eval.models import utils as lm_eval_models
except ImportError:
  raise MissingExtra('lm_eval', "lm-evaluation-harness's ssljax model") from None

DEFAULT_BATCH_SIZE = 16


def _batch_size(value: int | str | None) -> int:
  """lm-eval's --batch_size: a number, or auto (here: the default)."""
  if value is None or str(value).startswith('auto'):
    return DEFAULT_BATCH_SIZE
  if not str(value).isdigit() or int(value) < 1:
    raise UserError(f'--batch_size {value} must be a positive number or auto')
  return int(value)


@register_model('ssljax')
class SsljaxLM(TemplateLM):
  """An ssljax causal LM: `checkpoint` (a path, from --model_args) or `pre` (in memory).

  lm-eval also passes `device` and `max_batch_size` to every model; JAX places the model
  on its default device and batches are `batch_size` rows, so both are ignored.
  """

  def __init__(self, checkpoint: str = '', pre: Pretrained | None = None,
               batch_size: int | str | None = DEFAULT_BATCH_SIZE,
               max_gen_toks: int = 256, seed: int = 0, device=None, max_batch_size=None,
               **unknown):
    super().__init__()
    del device, max_batch_size
    if unknown:
      raise UserError(f'--model_args {", ".join(unknown)}: the ssljax model takes checkpoint, '
                      'max_gen_toks and seed (rows per batch: --batch_size)')
    if pre is None:
      if not checkpoint:
        raise UserError('the ssljax model needs --model_args checkpoint=CKPT (an ssljax '
                        'workdir, a checkpoints/STEP directory or a Hugging Face folder)')
      pre = loading.load(checkpoint)
    if pre.model_cfg.arch != 'gpt':
      raise UserError(f'lm-eval scores text with a causal LM; this checkpoint is a '
                      f'{pre.model_cfg.arch} encoder: pass a gpt checkpoint')
    self.pre = pre
    self.batch_size = _batch_size(batch_size)
    self.max_gen_toks = int(max_gen_toks)
    self.seed = int(seed)

  @property
  def eot_token_id(self) -> int:
    return self.pre.tokenizer.sep_id

  @property
  def prefix_token_id(self) -> int:
    """What an empty context reads, as lm-eval's hf model does on the exported folder."""
    return tokenizers.causal_start_id(self.pre.tokenizer)

  @property
  def max_length(self) -> int:
    return self.pre.model_cfg.context_length

  @property
  def tokenizer_name(self) -> str:
    return f'ssljax-{self.pre.tokenizer.kind}-{self.pre.tokenizer.vocab_size}'

  def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
    del add_special_tokens, kwargs  # ssljax tokenizers add no special tokens
    return self.pre.tokenizer.encode([string])[0].tolist()

  def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
    """(log p(continuation | context), whether greedy decoding gives it) per request."""
    del kwargs
    rows, lengths = [], []
    for _, context, continuation in requests:
      if len(continuation) > self.max_length:
        raise UserError(f'a continuation of {len(continuation)} tokens is longer than the '
                        f'model\'s {self.max_length} positions')
      rows.append(np.asarray(context + continuation, np.int32)[-(self.max_length + 1):])
      lengths.append(len(continuation))
    bar = progress.bar(not disable_tqdm, -(-len(rows) // self.batch_size),
                       'loglikelihood requests', 'batch')
    logp, greedy = scoring.continuation_scores(self.pre, rows, lengths, self.batch_size, bar,
                                               greedy=True)
    bar.close()
    results = [(float(s), bool(g)) for s, g in zip(logp, greedy)]
    for (request, _, _), result in zip(requests, results):
      if request is not None:
        self.cache_hook.add_partial('loglikelihood', request, result)
    return results

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
    """log p(text) per request, over windows of the model's length that each score new
    tokens only."""
    windows, owners = [], []
    for i, (text,) in enumerate(request.args for request in requests):
      for context, continuation in map(lm_eval_utils.make_disjoint_window,
                                       lm_eval_utils.get_rolling_token_windows(
                                           token_list=self.tok_encode(text),
                                           prefix_token=self.prefix_token_id,
                                           max_seq_len=self.max_length, context_len=1)):
        windows.append((None, context, continuation))
        owners.append(i)
    totals = np.zeros(len(requests), np.float64)
    np.add.at(totals, owners, [s for s, _ in self._loglikelihood_tokens(windows, disable_tqdm)])
    for request, total in zip(requests, totals):
      self.cache_hook.add_partial('loglikelihood_rolling', request.args, float(total))
    return totals.tolist()

  def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
    """The text after each context until an `until` string, end-of-text or max_gen_toks;
    requests with the same generation settings are generated together."""
    del disable_tqdm
    groups: dict[str, list[int]] = {}
    for i, request in enumerate(requests):
      groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
    out = [''] * len(requests)
    for members in groups.values():
      settings = lm_eval_models.normalize_gen_kwargs(requests[members[0]].args[1],
                                                     self.max_gen_toks)
      contexts = [requests[i].args[0] for i in members]
      for i, text in zip(members, self._generate(contexts, settings)):
        out[i] = text
        self.cache_hook.add_partial('generate_until', requests[i].args, text)
    return out

  def _generate(self, contexts: list[str], settings: dict) -> list[str]:
    steps = settings['max_gen_toks']
    room = self.max_length - steps
    if room < 1:
      raise UserError(f'max_gen_toks {steps} leaves no room for a context in the model\'s '
                      f'{self.max_length} positions; lower it (--gen_kwargs max_gen_toks=N)')
    until = [s for s in settings['until'] if s]
    sampling = generation.Sampling(
        float(settings.get('temperature') or 0.0) if settings.get('do_sample') else 0.0,
        int(settings.get('top_k') or 0), float(settings.get('top_p') or 1.0))
    rows = [row[-room:] for row in generation.prompt_rows(self.pre, contexts)]
    new = generation.generate_ids(self.pre, rows, max_new_tokens=steps, sampling=sampling,
                                seed=self.seed, batch_size=self.batch_size,
                                stop_ids=self._stop_ids(until))
    return [lm_eval_models.postprocess_generated_text(self.pre.tokenizer.decode(ids), until,
                                                      None) for ids in new]

  def _stop_ids(self, until: list[str]) -> list[int]:
    """End-of-text, and the tokens that are an `until` string by themselves: generation can
    stop at them, since the text is cut there anyway."""
    tok = self.pre.tokenizer
    single = [ids[0] for ids in tok.encode(until) if len(ids) == 1]
    return [tok.sep_id] + [int(i) for i in single if tok.decode([i]) in until]


@dataclasses.dataclass(frozen=True)
class Tasks:
  """lm-eval tasks found once (finding them indexes lm-eval's own tasks: seconds)."""
  configs: list  # names and task configs, as simple_evaluate takes them
  manager: object  # lm-eval's TaskManager


def resolve_tasks(tasks: str | list[str]) -> Tasks:
  """lm-eval task names, YAML files or a folder of YAML files (a list, or one string split
  by commas), read as lm-eval's --tasks reads them."""
  config = EvaluatorConfig(tasks=tasks)
  try:
    manager = config.process_tasks()
  except ValueError as e:
    raise UserError(f'lm-eval tasks {tasks!r}: {e}') from None
  return Tasks(config.tasks, manager)


def run_tasks(pre: Pretrained, tasks: str | list[str] | Tasks, *, limit: int | None = None,
              batch_size: int = DEFAULT_BATCH_SIZE, log_samples: bool = False) -> dict:
  """simple_evaluate's results for `pre` (a causal LM) on `tasks`
  (as `resolve_tasks` takes them, or its `Tasks`); `limit` examples per task."""
  tasks = tasks if isinstance(tasks, Tasks) else resolve_tasks(tasks)
  return evaluator.simple_evaluate(model=SsljaxLM(pre=pre, batch_size=batch_size),
                                   tasks=tasks.configs, task_manager=tasks.manager,
                                   limit=limit, log_samples=log_samples,
                                   torch_random_seed=None)


def metrics(results: dict) -> dict[str, float]:
  """`lm_eval_TASK_METRIC` numbers from simple_evaluate's results, for metrics.jsonl and
  TensorBoard: the default filter's name (none) is dropped, standard errors left out."""
  out = {}
  for task, values in results['results'].items():
    for key, value in values.items():
      metric, _, filter_name = key.partition(',')
      if (isinstance(value, (int, float)) and not isinstance(value, bool) and filter_name
          and not metric.endswith('_stderr')):
        name = metric if filter_name == 'none' else f'{metric}_{filter_name}'
        out[f'lm_eval_{task}_{name}'] = float(value)
  return out


def cli(argv: list[str]) -> None:
  """lm-eval's command line (`lm-eval run ...`, `lm-eval ls tasks`, or the bare
  `--model ... --tasks ...`) with the ssljax model registered."""
  from lm_eval.__main__ import cli_evaluate  # slow to import: only for the command line
  saved, sys.argv = sys.argv, ['lm-eval', *argv]  # lm-eval's parser reads sys.argv
  try:
    cli_evaluate()
  except ValueError as e:  # lm-eval's word for bad arguments (e.g. a task it cannot find)
    raise UserError(f'lm-eval: {e}') from None
  finally:
    sys.argv = saved


def lm_eval_hook(config: ml_collections.ConfigDict) -> Hook:
  """Finds `eval.lm_eval_tasks` once; the hook returns their `metrics` at the current
  parameters, every `eval.lm_eval_every` steps of pretraining."""
  section = config.eval
  tasks = resolve_tasks(section.lm_eval_tasks)

  def fn(info: HookInfo) -> dict:
    pre = Pretrained(config, info.model_cfg, info.model(), info.tokenizer, info.step)
    return metrics(run_tasks(pre, tasks, limit=section.lm_eval_limit or None,
                             batch_size=section.lm_eval_batch_size))

  return Hook(every=section.lm_eval_every or config.train.eval_every, fn=fn)
