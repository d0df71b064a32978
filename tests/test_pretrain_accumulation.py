"""Gradient accumulation under data parallelism (8 simulated CPU devices, mesh data=8): each
device sums its own gradients over the micro-batches and they are all-reduced once per step,
as in MaxText or big_vision.

Left to itself the compiler all-reduces every micro-batch's gradient inside the loop (and
ALBERT's shared block's once per layer): issue 20 measured 63x the bf16 parameter bytes per
step for albert_base on v5e:2x2 (data=4, 8 micro-batches); the CPU program does the same.
"""

import jax
import numpy as np
import pytest

from ssljax.aot import hlo
from ssljax.pretrain import loop as train

from conftest import run_steps, tiny_config

ALBERT = {'model.arch': 'albert', 'model.share_layers': True, 'model.embed_size': 16,
          'objective': 'mlm_sop', 'mesh.data': 8, 'train.batch_size': 64}


def _collective_bytes(config, workdir) -> tuple[int, int]:
  """(bytes a device moves in collectives per step, float32 bytes of all parameters)."""
  strategy = train.setup(config, workdir).strategy
  program = hlo.parse(strategy.lower_step(config).compile().as_text())
  params = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(strategy.abstract.params))
  return sum(program['collectives'].values()), params


def test_accumulated_gradients_are_all_reduced_once_per_step(corpus_file, tokenizer_file,
                                                             tmp_path):
  overrides = ALBERT | {'tokenizer.path': tokenizer_file}
  one, params = _collective_bytes(tiny_config(corpus_file, **overrides), tmp_path / 'one')
  four, _ = _collective_bytes(tiny_config(corpus_file, **overrides, **{'train.grad_accum': 4}),
                              tmp_path / 'four')
  assert four <= 1.02 * one, (four, one)  # was 4.0x
  assert four <= 1.05 * params, (four, params)  # the gradients once, and a few scalars


@pytest.mark.slow  # two runs, one of them an 8-device program
def test_data_parallel_accumulation_follows_one_device(corpus_file, tokenizer_file, tmp_path):
  """2 micro-batches on 8 devices, each summing its own: the single-device big-batch run
  (tests/test_pretrain_parallel.py covers data=2 x fsdp=2)."""
  overrides = {'tokenizer.path': tokenizer_file}
  ref_losses, ref_params = run_steps(tiny_config(corpus_file, **overrides), tmp_path / 'one', 3)
  losses, params = run_steps(
      tiny_config(corpus_file, **overrides, **{'mesh.data': 8, 'train.grad_accum': 2}),
      tmp_path / 'many', 3)
  np.testing.assert_allclose(losses, ref_losses, rtol=2e-5)
  assert ref_losses[-1] < ref_losses[0]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params, ref_params)
