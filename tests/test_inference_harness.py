"""lm-evaluation-harness: `--model ssljax` on a checkpoint gives `--model hf`'s numbers on
its export-hf folder (multiple choice, rolling log-likelihood, generation), the in-process
pretraining hook logs lm-eval metrics, and bad input is one line."""

import functools
import glob
import json
import sys

import pytest
from flax import nnx

pytest.importorskip('lm_eval')
pytest.importorskip('accelerate')  # lm-eval's hf model needs it
pytest.importorskip('transformers')

import ssljax  # noqa: E402
from ssljax import cli, config as config_lib, models, pretrained, tokenizers as tokenizer_lib  # noqa: E402
from ssljax.adapt import hooks  # noqa: E402
from ssljax.errors import UserError  # noqa: E402
from ssljax.inference import harness  # noqa: E402
from ssljax.pretrain import loop, metrics  # noqa: E402

from conftest import tiny_config  # noqa: E402
from test_inference_generation import tiny_gpt2  # noqa: E402

QUESTIONS = [('The quick brown', [' fox', ' dog', ' cat'], 0),
             ('def f(x):', [' return', ' pass'], 1),
             ('Hello', [' world', ' there', ' you', ' all'], 2),
             ('', [' Python', ' is'], 0)]  # an empty context reads end-of-text
TEXTS = ['The quick brown fox jumps over the lazy dog.', 'a',
         'Python is a programming language that lets you work quickly. ' * 10]  # > 64 tokens
TASK = '''task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: {output_type}
'''
KINDS = {
    'mc': ('multiple_choice', 'questions', 'doc_to_text: "{{question}}"\n'
           'doc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
           'metric_list:\n  - metric: acc\n'),
    'ppl': ('loglikelihood_rolling', 'texts', 'doc_to_text: ""\ndoc_to_target: "{{text}}"\n'
            'metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n'),
    'gen': ('generate_until', 'questions', 'doc_to_text: "{{question}}"\n'
            'doc_to_target: "{{choices[answer]}}"\n'
            'generation_kwargs:\n  until: ["\\n", "o"]\n  max_gen_toks: 8\n  do_sample: false\n'
            'metric_list:\n  - metric: exact_match\n'),
}


@pytest.fixture(autouse=True)
def local_tasks_only(monkeypatch):
  """lm-eval indexes its thousands of built-in tasks (~10 s) for every run; these tests use
  only their own YAML files."""
  from lm_eval.tasks import TaskManager
  monkeypatch.setattr(TaskManager, '__init__',
                      functools.partialmethod(TaskManager.__init__, include_defaults=False))


@pytest.fixture(scope='module')
def tasks(tmp_path_factory) -> dict:
  """{kind: YAML file} of local tasks over JSONL files."""
  folder = tmp_path_factory.mktemp('tasks')
  (folder / 'questions.jsonl').write_text(''.join(
      json.dumps({'question': q, 'choices': c, 'answer': a}) + '\n' for q, c, a in QUESTIONS))
  (folder / 'texts.jsonl').write_text(''.join(json.dumps({'text': t}) + '\n' for t in TEXTS))
  files = {}
  for kind, (output_type, data, rest) in KINDS.items():
    files[kind] = folder / f'{kind}.yaml'
    files[kind].write_text(TASK.format(name=f'ssljax_{kind}', data=folder / f'{data}.jsonl',
                                       output_type=output_type) + rest)
  return files


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory) -> tuple[str, str]:
  """(an ssljax checkpoint imported from a tiny GPT-2, its export-hf folder)."""
  root = tmp_path_factory.mktemp('harness')
  tiny_gpt2(root / 'gpt2')
  assert cli.main(['import-hf', str(root / 'gpt2'), '--out', str(root / 'ckpt')]) == 0
  assert cli.main(['export-hf', str(root / 'ckpt'), '--out', str(root / 'hf')]) == 0
  return str(root / 'ckpt'), str(root / 'hf')


def _lm_eval(model, model_args, tasks, out) -> tuple[dict, dict]:
  """`ssljax lm-eval` in this process: (results by task, samples by task and doc id)."""
  assert cli.main(['lm-eval', '--model', model, '--model_args', model_args, '--tasks',
                   *map(str, tasks.values()), '--batch_size', '4', '--log_samples',
                   '--output_path', str(out)]) == 0
  results = json.loads(open(glob.glob(f'{out}/*/results_*.json')[0]).read())['results']
  samples = {}
  for kind in tasks:
    [file] = glob.glob(f'{out}/*/samples_ssljax_{kind}_*.jsonl')
    samples[kind] = {s['doc_id']: s['resps'] for s in map(json.loads, open(file))}
  return results, samples


def _numbers(responses) -> list[float]:
  """The logged values of a request's responses, flattened (is_greedy as 0 or 1)."""
  if isinstance(responses, list):
    return [x for r in responses for x in _numbers(r)]
  return [float(responses == 'True') if responses in ('True', 'False') else float(responses)]


def test_ssljax_model_gives_transformers_numbers(checkpoints, tasks, tmp_path):
  ckpt, exported = checkpoints
  ours, our_samples = _lm_eval('ssljax', f'checkpoint={ckpt}', tasks, tmp_path / 'ssljax')
  theirs, their_samples = _lm_eval('hf', f'pretrained={exported}', tasks, tmp_path / 'hf')
  assert ours['ssljax_mc']['acc,none'] == theirs['ssljax_mc']['acc,none']
  for kind in ('mc', 'ppl'):  # per request: (log-likelihood, is_greedy) per choice; per text
    for doc, responses in their_samples[kind].items():
      assert _numbers(our_samples[kind][doc]) == pytest.approx(_numbers(responses), abs=1e-4)
  empty = len(QUESTIONS) - 1  # hf generates after padding alone, ssljax after end-of-text
  assert {d: r for d, r in our_samples['gen'].items() if d != empty} == {
      d: r for d, r in their_samples['gen'].items() if d != empty}
  assert ours['ssljax_ppl']['bits_per_byte,none'] == pytest.approx(
      theirs['ssljax_ppl']['bits_per_byte,none'], rel=1e-5)


def test_an_imported_llama_reads_an_empty_context_from_its_bos(tasks, tmp_path):
  """Llama's <s> is not its end-of-text: an empty context starts from <s>, as lm-eval's hf
  model starts it, so every request's numbers equal hf's on the folder itself."""
  import torch  # pylint: disable=g-import-not-at-top
  from test_interop_modern import _llama  # pylint: disable=g-import-not-at-top
  torch.manual_seed(4)
  folder = tmp_path / 'llama'
  _llama(folder, bos='<s>').save_pretrained(folder)
  pre = ssljax.inference.loading.load(folder)
  assert pre.tokenizer.cls_id != pre.tokenizer.sep_id
  assert harness.SsljaxLM(pre=pre).prefix_token_id == pre.tokenizer.cls_id
  mc = {'mc': tasks['mc']}
  _, ours = _lm_eval('ssljax', f'checkpoint={folder}', mc, tmp_path / 'ssljax')
  _, theirs = _lm_eval('hf', f'pretrained={folder}', mc, tmp_path / 'hf')
  for doc, responses in theirs['mc'].items():  # the last question's context is empty
    assert _numbers(ours['mc'][doc]) == pytest.approx(_numbers(responses), abs=1e-4), doc


@pytest.mark.slow  # a pretraining run
def test_pretraining_hook_logs_lm_eval_metrics(corpus_file, tokenizer_file, tasks, tmp_path):
  config = tiny_config(corpus_file, **{
      'model.arch': 'gpt', 'objective': 'clm', 'tokenizer.path': tokenizer_file,
      'train.steps': 2, 'train.eval_every': 1, 'eval.lm_eval_every': 2,
      'eval.lm_eval_tasks': f'{tasks["mc"]},{tasks["ppl"]}', 'eval.lm_eval_limit': 2})
  loop.pretrain(config, tmp_path, hooks=hooks.from_config(config))
  logged = [row for row in metrics.read(tmp_path) if 'lm_eval_ssljax_mc_acc' in row]
  assert [row['step'] for row in logged] == [2]
  assert 0 <= logged[0]['lm_eval_ssljax_mc_acc'] <= 1
  assert logged[0]['lm_eval_ssljax_ppl_bits_per_byte'] > 0


def test_bad_input_is_one_line(corpus_file, tokenizer_file, tasks, checkpoints, capsys,
                               monkeypatch):
  with pytest.raises(UserError, match="unknown config key 'eval.lm_eval_task'.*did you mean "
                     'eval.lm_eval_tasks'):
    tiny_config(corpus_file, **{'eval.lm_eval_task': 'x'})
  config = tiny_config(corpus_file)
  with pytest.raises(UserError, match='eval.lm_eval_tasks scores text with a causal LM; '
                     'model.arch=bert is an encoder'):
    config_lib.override(config, [f'eval.lm_eval_tasks={tasks["mc"]}'])
    config_lib.validate(config)
  tok = tokenizer_lib.load(tokenizer_file)
  model_cfg = models.ModelConfig.from_config(config.model, vocab_size=tok.vocab_size)
  encoder = pretrained.Pretrained(config, model_cfg, models.build(model_cfg, nnx.Rngs(0)), tok,
                                  0)
  with pytest.raises(UserError, match='this checkpoint is a bert encoder: pass a gpt'):
    harness.SsljaxLM(pre=encoder)
  for model_args, task, message in (
      ('checkpoint=', tasks['mc'], 'the ssljax model needs --model_args checkpoint=CKPT'),
      (f'checkpiont={checkpoints[0]}', tasks['mc'], '--model_args checkpiont: the ssljax '
       'model takes checkpoint, max_gen_toks and seed'),
      (f'checkpoint={checkpoints[0]}', 'no_such_task', 'lm-eval: Tasks not found: no_such_task')):
    code = cli.main(['lm-eval', '--model', 'ssljax', '--model_args', model_args, '--tasks',
                     str(task)])
    err = capsys.readouterr().err
    assert code == 2 and f'ssljax: error: {message}' in err and 'Traceback' not in err, err
  monkeypatch.setitem(sys.modules, 'lm_eval', None)  # as if the eval extra were missing
  monkeypatch.delitem(sys.modules, 'ssljax.inference.harness')
  monkeypatch.delattr(ssljax.inference, 'harness')
  assert cli.main(['lm-eval', '--tasks', str(tasks['mc'])]) == 2
  err = capsys.readouterr().err
  assert err.startswith("ssljax: error: lm-evaluation-harness's ssljax model needs lm_eval, "
                        "from the 'eval' extra: pip install ") and err.count('\n') == 1, err
