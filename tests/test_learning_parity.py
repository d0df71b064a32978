"""Learning parity with transformers: ssljax pretraining learns exactly as PyTorch does.

For BERT (MLM, `BertForMaskedLM`) and GPT-2 (CLM, `GPT2LMHeadModel`) one tiny ssljax model
is exported to a Hugging Face folder *before* training, so both sides start from the same
weights. Dropout is off on both sides. Each step both see the same batch from the ssljax
run's own data stream:

* MLM: the masks are the ones the ssljax step draws (`step.prepare` with the step's key,
  `fold_in(key(seed), step)` split, first half); transformers gets the masked ids and labels
  = original id at the chosen positions, -100 elsewhere. Its mean cross-entropy over the
  labelled positions is ssljax's loss (loss sum / count of chosen positions).
* CLM: transformers gets the packed rows with ssljax's positions and an explicit 4-D mask
  (same document, key not padding, causal), and labels = the token where ssljax predicts
  it (`objectives.clm_weights`: the next token of the same document), -100 elsewhere.
  Transformers' own shifted loss then counts exactly ssljax's positions with its
  normalisation (sum / count); nothing is recomputed by hand.

The PyTorch optimizer is benchmarks/torch_twin.py, the one every benchmark's PyTorch side
trains with, written independently of ssljax's optimizer module, in the way a transformers
user would write it: `torch.optim.AdamW` with two parameter groups (weight decay on
Linear/Conv1D weights and embeddings; none on LayerNorm parameters or biases, chosen by
module type), a LambdaLR of ssljax's warmup and decay stepped after each update (update k
uses lr(k), as optax does) and `clip_grad_norm_` (which scales by clip / (norm + 1e-6)
where optax scales by clip / norm: a relative 1e-6, far below the tolerances). So a wrong
loss normalisation, decay mask, schedule off by one step or clipping difference in ssljax
(or the twin) makes the losses or final parameters disagree; the negative checks show each
of those perturbations (made on the torch side) exceeds the tolerances by far. The runs
decay linearly; `test_twin_schedule_is_ssljax_schedule` checks the twin's other schedules
(cosine, constant, warmup as a fraction, warmup past the run) rate by rate.

Tolerances (float32 on CPU; measured max differences are printed, run with -s):
per-step loss relative difference < LOSS_RTOL, pre-clip gradient norm relative difference
< GRAD_NORM_RTOL, final parameters max absolute difference < PARAM_ATOL after STEPS steps.
"""

import dataclasses
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from ssljax import pretrained  # noqa: E402
from ssljax.interop import huggingface as hf  # noqa: E402
from ssljax.pretrain import (  # noqa: E402
  loop as train,
  objectives,
  optimizer as optimizer_lib,
  step as step_lib,
)

from conftest import tiny_config  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'))
import torch_twin  # noqa: E402  the benchmarks' PyTorch optimizer, checked here

pytestmark = pytest.mark.slow  # 60 steps of each architecture in JAX and in torch

STEPS = 60
WARMUP = 5
# Measured on CPU (float32), BERT / GPT-2: loss 1.3e-6 / 1.2e-6, gradient norm 4.6e-6 /
# 4.6e-4, parameters 1.6e-6 / 4.4e-6 after 60 steps (they move by up to ~0.1). GPT-2's
# gradient norm differs by at most 7e-6 on 59 of the 60 steps and by 4.6e-4 on one (step
# 21 of the batch order since examples are built a batch at a time), with losses and
# parameters still within 1e-5 after it: float32 reduction order, so the norm's tolerance
# is 1e-3. The mistakes of the negative checks exceed these tolerances.
LOSS_RTOL = 1e-5
GRAD_NORM_RTOL = 1e-3
PARAM_ATOL = 2e-5

OPTIMIZER = {'optimizer.warmup_steps': WARMUP, 'optimizer.weight_decay': 0.1,
             'optimizer.clip_norm': 0.5, 'optimizer.learning_rate': 3e-3,
             'optimizer.decay': 'linear', 'optimizer.end_learning_rate': 0.0}
ARCHS = {
    # Each clip norm leaves some steps clipped and some not.
    'bert': ({'objective': 'mlm', 'optimizer.clip_norm': 1.0}, 'BertForMaskedLM'),
    'gpt2': ({'model.arch': 'gpt', 'objective': 'clm', 'model.activation': 'gelu_tanh',
              'model.layer_norm_eps': 1e-5}, 'GPT2LMHeadModel'),
}


@dataclasses.dataclass
class Trace:
  """What one run did: per-step loss and pre-clip gradient norm, final HF-named weights."""
  losses: np.ndarray
  grad_norms: np.ndarray
  weights: dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------
# The ssljax side: its own training step, on its own data stream.


def _torch_inputs(config, prepare, batch, step):
  """The model inputs and labels that make transformers' loss the ssljax step's loss."""
  ids = np.asarray(batch['input_ids'])
  doc = np.asarray(batch['doc_ids'])
  if config.objective == 'clm':
    labels = np.full_like(ids, -100)
    predicted = np.asarray(objectives.clm_weights(jnp.asarray(doc))) > 0  # t predicts t+1
    labels[:, 1:] = np.where(predicted, ids[:, 1:], -100)
    allowed = ((doc[:, :, None] == doc[:, None, :]) & (doc[:, None, :] > 0)
               & np.tril(np.ones((ids.shape[1],) * 2, bool)))
    mask = np.where(allowed, 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None]
    return {'input_ids': torch.tensor(ids, dtype=torch.long),
            'position_ids': torch.tensor(batch['positions'], dtype=torch.long),
            'attention_mask': torch.tensor(mask)}, torch.tensor(labels, dtype=torch.long)
  inputs, masks, counts = prepare(batch, step)  # the masks the ssljax step draws
  chosen = np.asarray(masks['chosen'])
  labels = np.where(chosen, ids, -100)
  assert chosen.sum() == float(counts['mlm'])  # HF's mean divides by ssljax's count
  return {'input_ids': torch.tensor(np.asarray(inputs['input_ids']), dtype=torch.long),
          'token_type_ids': torch.tensor(batch['segment_ids'], dtype=torch.long),
          'position_ids': torch.tensor(batch['positions'], dtype=torch.long),
          'attention_mask': torch.tensor(doc > 0, dtype=torch.long)}, torch.tensor(
              labels, dtype=torch.long)


def _export(run, params, folder):
  model = nnx.merge(run.graphdef, jax.tree.map(jnp.asarray, params))
  hf.export(pretrained.Pretrained(run.config, run.model_cfg, model, run.tokenizer, 0), folder)
  return folder


def _ssljax_run(config, workdir):
  """(start folder, torch batches, Trace) of STEPS ssljax training steps."""
  run = train.setup(config, workdir / 'run')
  try:
    state = run.strategy.init(config.train.seed)
    start = _export(run, jax.device_get(run.strategy.to_save(state).params), workdir / 'start')
    spec = run.strategy.spec

    @jax.jit
    def prepare(batch, step):
      key = jax.random.fold_in(jax.random.key(spec.seed), step)  # as step_lib.train_step
      return step_lib.prepare(spec, batch, jax.random.split(key)[0])

    batches, losses, norms = [], [], []
    for step in range(STEPS):
      batch = next(run.batches)
      batches.append(_torch_inputs(config, prepare, batch, step))
      state, metrics = run.strategy.step(state, run.strategy.put_batch(batch))
      losses.append(float(metrics['loss']))
      norms.append(float(metrics['grad_norm']))
    end = _export(run, jax.device_get(run.strategy.to_save(state).params), workdir / 'end')
  finally:
    run.manager.close()
  weights = safetensors.numpy.load_file(end / 'model.safetensors')
  return start, batches, Trace(np.array(losses), np.array(norms), weights)


# ---------------------------------------------------------------------------------------
# The PyTorch side: benchmarks/torch_twin.py, from the same config values.


def _torch_run(folder, class_name, batches, config, *, lr_shift=0, decay_everything=False,
               clip=True, per_row_mean=False) -> Trace:
  """STEPS steps in transformers with the benchmarks' twin optimizer; the keyword arguments
  are the negative checks' deliberate mistakes, made on the twin's optimizer."""
  torch.manual_seed(0)
  model = getattr(transformers, class_name).from_pretrained(
      folder, attn_implementation='eager', dtype=torch.float32)
  model.train()  # dropout probabilities are 0 in the exported config
  assert all(v == 0.0 for k, v in model.config.to_dict().items()
             if k.endswith(('dropout_prob', 'pdrop')))
  o = config.optimizer
  opt, sched = torch_twin.adamw(model, o, config.train.steps)
  if lr_shift:  # a schedule off by lr_shift steps
    lr_k = torch_twin.lr_factor(o, config.train.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_k(k + lr_shift))
  if decay_everything:  # weight decay on LayerNorm parameters and biases too
    for group in opt.param_groups:
      group['weight_decay'] = o.weight_decay
  losses, norms = [], []
  for inputs, labels in batches:
    out = model(**inputs, labels=None if per_row_mean else labels)
    loss = out.loss if not per_row_mean else _per_row_mean(out.logits, labels, class_name)
    loss.backward()
    norms.append(float(torch_twin.update(opt, sched, o.clip_norm if clip else 0.0)))
    losses.append(loss.item())
  weights = {k: p.detach().numpy().copy() for k, p in model.named_parameters()}
  return Trace(np.array(losses), np.array(norms), weights)


def _per_row_mean(logits, labels, class_name):
  """A wrong normalisation: the mean over rows of each row's mean token loss."""
  if class_name == 'GPT2LMHeadModel':
    logits, labels = logits[:, :-1], labels[:, 1:]
  xent = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction='none',
                                           ignore_index=-100)
  count = (labels != -100).sum(1)
  keep = count > 0
  return (xent.sum(1)[keep] / count[keep]).mean()


# ---------------------------------------------------------------------------------------
# Comparison


def _loss_diff(a: Trace, b: Trace) -> float:
  return float(np.max(np.abs(a.losses - b.losses) / np.abs(b.losses)))


def _grad_norm_diff(a: Trace, b: Trace) -> float:
  return float(np.max(np.abs(a.grad_norms - b.grad_norms) / b.grad_norms))


def _param_diff(ours: Trace, theirs: Trace, trained_names) -> float:
  return max(float(np.abs(ours.weights[k] - theirs.weights[k]).max()) for k in trained_names)


@pytest.fixture(scope='module', autouse=True)
def quiet_single_thread_torch():
  """One torch thread: with the tiny model, threads that spin for busy cores cost 100x.
  transformers' load report (the unused pooler and NSP head of the export) stays quiet."""
  threads, verbosity = torch.get_num_threads(), transformers.logging.get_verbosity()
  torch.set_num_threads(1)
  transformers.logging.set_verbosity_error()
  yield
  torch.set_num_threads(threads)
  transformers.logging.set_verbosity(verbosity)


@dataclasses.dataclass
class Runs:
  arch: str
  class_name: str
  config: object
  start: object  # the exported initial weights
  batches: list  # (transformers inputs, labels) per step
  ours: Trace
  theirs: Trace
  seconds: tuple[float, float]


@pytest.fixture(scope='module', params=list(ARCHS))
def runs(request, corpus_file, tokenizer_file, tmp_path_factory) -> Runs:
  overrides, class_name = ARCHS[request.param]
  config = tiny_config(corpus_file, **{
      'tokenizer.path': tokenizer_file, 'model.dropout_rate': 0.0,
      'model.attention_dropout_rate': 0.0, 'train.steps': STEPS, **OPTIMIZER, **overrides})
  began = time.perf_counter()
  start, batches, ours = _ssljax_run(config, tmp_path_factory.mktemp(request.param))
  middle = time.perf_counter()
  theirs = _torch_run(start, class_name, batches, config)
  seconds = (middle - began, time.perf_counter() - middle)
  return Runs(request.param, class_name, config, start, batches, ours, theirs, seconds)


def test_learning_matches_transformers(runs):
  ours, theirs = runs.ours, runs.theirs
  trained = list(theirs.weights)
  assert set(trained) <= set(ours.weights), set(trained) - set(ours.weights)
  loss_diff, norm_diff = _loss_diff(ours, theirs), _grad_norm_diff(ours, theirs)
  param_diff = _param_diff(ours, theirs, trained)
  initial = hf.read_weights(runs.start)
  moved = max(float(np.abs(ours.weights[k] - initial[k]).max()) for k in trained)
  clipped = int(np.sum(ours.grad_norms > runs.config.optimizer.clip_norm))
  print(f'\n{runs.arch}: {STEPS} steps, loss {ours.losses[0]:.4f} -> {ours.losses[-1]:.4f}, '
        f'{clipped} steps clipped; max relative loss diff {loss_diff:.2e} (tol '
        f'{LOSS_RTOL:.0e}), grad norm {norm_diff:.2e} (tol {GRAD_NORM_RTOL:.0e}), max abs '
        f'param diff {param_diff:.2e} (tol {PARAM_ATOL:.0e}; params moved up to '
        f'{moved:.3f}); ssljax {runs.seconds[0]:.1f} s, torch {runs.seconds[1]:.1f} s')
  assert len(ours.losses) == len(theirs.losses) == STEPS >= 50
  assert ours.losses[-1] < ours.losses[0] - 0.5  # it learns
  assert 10 <= clipped < STEPS  # clipping is exercised, and so is the unclipped path
  assert loss_diff < LOSS_RTOL
  assert norm_diff < GRAD_NORM_RTOL
  assert param_diff < PARAM_ATOL


MISTAKES = {
    'schedule one step late': dict(lr_shift=1),
    'decay on LayerNorm and biases': dict(decay_everything=True),
    'no clipping': dict(clip=False),
    'per-row mean loss': dict(per_row_mean=True),
}


@pytest.mark.parametrize('mistake', list(MISTAKES))
def test_the_comparison_sees_each_mistake(runs, mistake):
  """A deliberate mistake on the torch side exceeds a tolerance at least 5x."""
  wrong = _torch_run(runs.start, runs.class_name, runs.batches, runs.config,
                     **MISTAKES[mistake])
  ratios = {'loss': _loss_diff(runs.ours, wrong) / LOSS_RTOL,
            'params': _param_diff(runs.ours, wrong, list(wrong.weights)) / PARAM_ATOL}
  print(f'\n{runs.arch} {mistake}: loss diff {ratios["loss"]:.0f}x tol, param diff '
        f'{ratios["params"]:.0f}x tol')
  assert max(ratios.values()) > 5, ratios


SCHEDULES = {
    'linear, warmup steps': dict(decay='linear', warmup_steps=7),
    'cosine to a floor': dict(decay='cosine', end_learning_rate=3e-4),
    'constant': dict(decay='constant'),
    'warmup as a fraction': dict(warmup_fraction=0.25, end_learning_rate=1e-4),
    'warmup past the run': dict(warmup_steps=100),
    'no warmup': dict(warmup_steps=0, decay='cosine'),
}


@pytest.mark.parametrize('schedule', list(SCHEDULES))
def test_twin_schedule_is_ssljax_schedule(corpus_file, schedule):
  """The twin's learning rate at every update (and past the end) is optax's."""
  config = tiny_config(corpus_file, **OPTIMIZER | {
      f'optimizer.{k}': v for k, v in SCHEDULES[schedule].items()})
  o, steps = config.optimizer, 40
  model = torch.nn.Linear(2, 2)
  opt, sched = torch_twin.adamw(model, o, steps)
  theirs = []
  for _ in range(steps + 3):
    theirs.append(opt.param_groups[0]['lr'])
    opt.step()
    sched.step()
  ours = np.asarray(optimizer_lib.schedule(o, steps)(np.arange(steps + 3)))
  np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-9)
