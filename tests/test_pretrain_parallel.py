"""Every parallel layout follows the single-device run (8 simulated CPU devices).

Tolerance: losses within rtol 2e-5 and parameters within atol 1e-5 after 4 AdamW steps in
float32; the sums differ only in reduction order.
"""

import jax
import numpy as np
import pytest

from conftest import run_steps, tiny_config

pytestmark = pytest.mark.slow  # each layout compiles its own 8-device program

STEPS = 4


@pytest.fixture(scope='module')
def reference(corpus_file, tokenizer_file, tmp_path_factory):
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file})
  return run_steps(config, tmp_path_factory.mktemp('single'), STEPS)


LAYOUTS = {
    'mesh_8x1x1': {'mesh.data': 8},
    'mesh_2x2x2': {'mesh.data': 2, 'mesh.fsdp': 2, 'mesh.tensor': 2},
    'mesh_1x8x1_scan': {'mesh.data': 1, 'mesh.fsdp': 8, 'model.scan_layers': True},
    'pmap_8': {'parallel.strategy': 'pmap'},
    'grad_accum_2': {'train.grad_accum': 2, 'mesh.data': 2, 'mesh.fsdp': 2},
}


@pytest.mark.parametrize('layout', LAYOUTS)
def test_layout_follows_single_device(layout, reference, corpus_file, tokenizer_file, tmp_path):
  assert jax.device_count() == 8
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file}, **LAYOUTS[layout])
  losses, params = run_steps(config, tmp_path / 'run', STEPS)
  if 'model.scan_layers' in LAYOUTS[layout]:  # stacked parameters start from other draws
    single = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file,
                                         'model.scan_layers': True})
    reference = run_steps(single, tmp_path / 'single', STEPS)
  ref_losses, ref_params = reference
  np.testing.assert_allclose(losses, ref_losses, rtol=2e-5)
  assert ref_losses[-1] < ref_losses[0]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params, ref_params)


@pytest.mark.parametrize('objective, arch', [('clm', 'gpt'), ('mlm_sop', 'albert')])
@pytest.mark.parametrize('layout', ['mesh_2x2x2', 'pmap_8'])
def test_other_objectives_follow_single_device(objective, arch, layout, corpus_file,
                                               tokenizer_file, tmp_path):
  """CLM (packed documents, causal masks) and SOP (a shared ALBERT block) too."""
  overrides = {'tokenizer.path': tokenizer_file, 'objective': objective, 'model.arch': arch}
  if arch == 'albert':
    overrides |= {'model.share_layers': True, 'model.embed_size': 16}
  ref_losses, ref_params = run_steps(tiny_config(corpus_file, **overrides), tmp_path / 'one',
                                     STEPS)
  losses, params = run_steps(tiny_config(corpus_file, **overrides, **LAYOUTS[layout]),
                             tmp_path / 'many', STEPS)
  np.testing.assert_allclose(losses, ref_losses, rtol=2e-5)
  assert ref_losses[-1] < ref_losses[0]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params, ref_params)
