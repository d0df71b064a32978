"""The layers stay apart: each import is checked in a fresh interpreter by what it loaded.

  ssljax.pretrain.loop   nothing of adaptation or interop, no safetensors/transformers/torch
  ssljax.pretrained      no interop (Hugging Face folders import it on demand), no safetensors
  ssljax.cli             building the parser imports no jax (`ssljax --help` is instant)
"""

import json
import subprocess
import sys

import pytest

CASES = {
    'pretrain.loop': ('import ssljax.pretrain.loop',
                      ('ssljax.adapt', 'ssljax.interop', 'safetensors', 'transformers', 'torch')),
    'pretrained': ('import ssljax.pretrained', ('ssljax.interop', 'safetensors')),
    'cli': ('import ssljax.cli; ssljax.cli.parser()', ('jax', 'jaxlib')),
}


def _loaded(statement: str) -> list[str]:
  code = f'import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr
  return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize('case', CASES)
def test_import_loads_nothing_of_the_layers_above(case):
  statement, banned = CASES[case]
  modules = _loaded(statement)
  assert statement.split(';')[0].split()[-1] in modules
  bad = [m for m in modules if any(m == b or m.startswith(b + '.') for b in banned)]
  assert not bad, f'`{statement}` imported {bad}'
