"""The layers stay apart, read from the source and checked at run time.

Every `import` of every module under ssljax/, at the top of a file or inside a function, is
read from its AST. Each part of the package has a rank; a module may import modules of its
own rank or below, never above, and the module graph has no cycle, not even through an
import inside a function:

  0 errors paths progress chips sharding schema     1 config tokenizers     2 data models
  3 prepare pretrained checkpoint checksums     4 pretrain     5 aot interop
  6 inference     7 tasks     8 adapt     9 cli     10 ssljax (the Python API functions)

So models know nothing of training, `pretrain` nothing of interop, inference, tasks or
adaptation (a run that starts from a checkpoint is handed the loaded `Pretrained`), and
`pretrained` is the leaf type that interop returns and inference loads.

What an import loads is checked in a fresh interpreter as well: the optional extras
(safetensors for Hugging Face folders, transformers, torch) stay out of pretraining and of
loading an ssljax checkpoint, and building the CLI parser imports no jax.
"""

import ast
import json
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'ssljax'
RANKS = {'errors': 0, 'paths': 0, 'progress': 0, 'chips': 0, 'sharding': 0, 'schema': 0,
         'config': 1, 'tokenizers': 1, 'data': 2, 'models': 2, 'prepare': 3, 'pretrained': 3,
         'checkpoint': 3, 'checksums': 3, 'pretrain': 4, 'aot': 5, 'interop': 5,
         'inference': 6, 'tasks': 7, 'adapt': 8, 'cli': 9, '': 10}


def _module_name(path: pathlib.Path) -> str:
  parts = ('ssljax',) + path.relative_to(PACKAGE).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph() -> dict[str, set[str]]:
  """{module: the ssljax modules it imports}, from the AST of every file of the package."""
  files = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
  graph = {}
  for name, path in files.items():
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        imported.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        # `from ssljax import paths` imports the module ssljax.paths, not ssljax itself
        imported.update(f'{node.module}.{alias.name}' if f'{node.module}.{alias.name}' in files
                        else node.module for alias in node.names)
    graph[name] = {m for m in imported if m in files and m != name}
  return graph


def rank(module: str) -> int:
  part = module.split('.')[1] if '.' in module else ''
  return RANKS[part]


def _cycle(graph: dict[str, set[str]]) -> list[str]:
  """One import cycle as a list of modules, or [] (depth-first search)."""
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (found := visit(nxt)):
        return found
    state[node] = 'done'
    stack.pop()
    return []

  for node in sorted(graph):
    if node not in state and (found := visit(node)):
      return found
  return []


def test_every_part_of_the_package_has_a_rank():
  assert {rank(m) for m in import_graph()} <= set(RANKS.values())


def test_no_import_points_up():
  graph = import_graph()
  upward = sorted(f'{a} (rank {rank(a)}) imports {b} (rank {rank(b)})'
                  for a, imported in graph.items() for b in imported if rank(b) > rank(a))
  assert not upward, '\n'.join(upward)


def test_no_import_cycle():
  assert not (cycle := _cycle(import_graph())), ' -> '.join(cycle)


def test_the_checks_catch_an_upward_import_and_a_cycle():
  graph = {'ssljax.pretrain.loop': {'ssljax.interop.huggingface'},
           'ssljax.interop.huggingface': {'ssljax.pretrain.loop'}}
  assert rank('ssljax.pretrain.loop') < rank('ssljax.interop.huggingface')
  assert _cycle(graph) == ['ssljax.interop.huggingface', 'ssljax.pretrain.loop',
                           'ssljax.interop.huggingface']
  assert 'ssljax.inference.loading' in import_graph()['ssljax']  # lazy imports are read too


CASES = {
    'pretrain.loop': ('import ssljax.pretrain.loop',
                      ('ssljax.adapt', 'ssljax.inference', 'ssljax.interop', 'safetensors',
                       'transformers', 'torch', 'wandb')),
    'inference.loading': ('import ssljax.inference.loading', ('ssljax.interop', 'safetensors')),
    'cli': ('import ssljax.cli; ssljax.cli.parser()', ('jax', 'jaxlib')),
    # what ssljax.from_pretrained imports: the Python API loads an ssljax checkpoint without
    # the hf extra (export-hf imports it when it exports)
    'python api': ('import ssljax.adapt.api, ssljax.inference.api',
                   ('ssljax.interop.huggingface', 'safetensors', 'transformers', 'torch')),
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


def test_only_the_sharding_module_names_a_mesh_axis():
  """'fsdp' and 'tensor' are mesh axes wherever they appear as strings; 'data' is one where
  it indexes a mesh's shape. Every other module asks `ssljax.sharding` by logical name."""
  found = []
  for path in PACKAGE.rglob('*.py'):
    if path.name == 'sharding.py':
      continue
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      axis = isinstance(node, ast.Constant) and node.value in ('fsdp', 'tensor')
      shape_index = (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                     and node.value.attr == 'shape' and isinstance(node.slice, ast.Constant)
                     and isinstance(node.slice.value, str))
      if axis or shape_index:
        found.append(f'{path.relative_to(PACKAGE)}:{node.lineno}')
  assert not found, found
