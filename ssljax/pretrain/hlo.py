"""Reading an optimized HLO module (XLA's dump): collective bytes and matmul FLOPs with
every loop body counted as often as it runs.

`compiled.cost_analysis()` counts a `while` body (a scan over layers or micro-batches)
once, and `compiled.as_text()` fails for v5p/v6e programs, so this reads the text XLA
writes with --xla_dump_to. A body's multiplicity is the product of the trip counts
(`known_trip_count`) of the loops around it.
"""

import collections
import re

import numpy as np

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')
_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4,
          'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'f8e4m3fn': 1, 'f8e5m2': 1}
_SHAPE = re.compile(r'\b(' + '|'.join(_BYTES) + r')\[([\d,]*)\]')
_COMP = re.compile(r'^(ENTRY\s+)?%?([\w.\-]+)\s*(\(.*\))?\s*->.*\{\s*$')
_INSTR = re.compile(r'^\s*(ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s([\w\-]+)\((.*)$')
_CALLS = re.compile(r'\b(body|condition|calls|to_apply|branch_computations|true_computation|'
                    r'false_computation)=\{?([%\w.\-, ]+)\}?')
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"')


def _shapes(text):
  return [(_BYTES[t], [int(d) for d in dims.split(',') if d]) for t, dims in _SHAPE.findall(text)]


def _largest(text) -> int:
  return max((b * int(np.prod(d)) for b, d in _shapes(text)), default=0)


def _dims(attr, line):
  m = re.search(attr + r'=\{([\d,]*)\}', line)
  return [int(d) for d in m.group(1).split(',') if d] if m else []


def _flops(op, result, operands, line) -> float:
  """2 x output elements x contraction size, for dot and convolution."""
  shapes = _shapes(operands)
  out = _shapes(result)
  if not out or len(shapes) < 2:
    return 0.0
  out_elems = float(np.prod(out[0][1]))
  lhs, rhs = shapes[0][1], shapes[1][1]
  if op == 'dot':
    return 2 * out_elems * float(np.prod([lhs[d] for d in _dims('lhs_contracting_dims', line)]))
  labels = re.search(r'dim_labels=\w+_(\w+)->', line)
  if not labels or 'o' not in labels.group(1):
    return 0.0
  groups = re.search(r'feature_group_count=(\d+)', line)
  o_size = rhs[labels.group(1).index('o')]
  return 2 * out_elems * float(np.prod(rhs)) / o_size / (int(groups.group(1)) if groups else 1)


def parse(text: str) -> dict:
  """{'collectives': {kind: bytes}, 'largest': {kind: bytes}, 'flops': float} per step."""
  comps, calls, entry = {}, collections.defaultdict(list), None
  current = None
  for line in text.splitlines():
    m = _COMP.match(line)
    if m and not line.startswith(' '):
      current = m.group(2)
      comps[current] = []
      entry = current if m.group(1) else entry
      continue
    m = _INSTR.match(line) if current else None
    if not m:
      continue
    result, op, rest = m.group(2), m.group(3), m.group(4)
    comps[current].append((op, result, rest, line))
    trip = _TRIP.search(line)
    for attr, names in _CALLS.findall(line):
      times = int(trip.group(1)) if trip and attr == 'body' else 1
      for name in names.replace('%', '').split(','):
        if name.strip():
          calls[current].append((name.strip(), times))
  times = collections.Counter()

  def visit(name, n):
    times[name] += n
    for callee, k in calls.get(name, ()):
      visit(callee, n * k)

  visit(entry, 1)
  total, largest, flops = collections.Counter(), collections.Counter(), 0.0
  for name, n in times.items():
    for op, result, rest, line in comps.get(name, ()):
      kind = op.removesuffix('-start')
      if kind in COLLECTIVES:
        size = max(_largest(result), _largest(rest.split('),')[0]))
        total[kind] += n * size
        largest[kind] = max(largest[kind], size)
      elif op in ('dot', 'convolution'):
        operands = rest.split('),')[0] if op == 'dot' else rest
        flops += n * _flops(op, result, operands, line)
  return {'collectives': dict(total), 'largest': dict(largest), 'flops': flops}
