"""Reading an optimized HLO module (XLA's dump): collective bytes, HBM traffic and matmul
FLOPs with every loop body counted as often as it runs.

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
_INSTR = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s([\w\-]+)\((.*)$')
_CALLS = re.compile(r'\b(body|condition|calls|to_apply|branch_computations|true_computation|'
                    r'false_computation)=(\{[^}]*\}|%?[\w.\-]+)')
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
# TPU splits an async collective into a chain of fusions (start, continuations, done), each
# holding the whole collective's instruction under one channel and chain id.
_CHAIN = re.compile(r'channel_id=(\d+).*?chain_id="(\d+)"')
# Fused attention as it appears in a program: Pallas splash kernels by name, cuDNN's by target.
_KERNEL = re.compile(r'\bsplash_m[hq]a_\w+|__cudnn\$fmha\w*')
_FMHA = re.compile(r'custom_call_target="__cudnn\$fmha')
# Threefry's rounds are xors and shifts on uint32; XLA's own generator is one instruction.
_RANDOM_BITS = ('xor', 'shift-left', 'shift-right-logical', 'rng-bit-generator')
_BOUND = re.compile(r'[su]32\[\]\{?[^ ]*\s+constant\((\d+)\)')  # u32: windowed matmul loops
# An array and its layout; a layout with S(n) lives in another memory space (VMEM, SMEM).
_LAID = re.compile(r'\b(' + '|'.join(_BYTES) + r')\[([\d,]*)\](\{[^}]*\})?')
_NO_TRAFFIC = ('parameter', 'get-tuple-element', 'tuple', 'constant', 'bitcast', 'while',
               'conditional', 'call', 'after-all', 'opt-barrier', 'partition-id', 'replica-id')


def _arrays(text):
  """[(bytes, dims)] of the array shapes in a result type (one, or a tuple's)."""
  return [(_BYTES[t] * int(np.prod([int(d) for d in dims.split(',') if d])),
           [int(d) for d in dims.split(',') if d]) for t, dims in _SHAPE.findall(text)]


def _hbm(result: str) -> int:
  """Bytes of the arrays of a result type that live in HBM."""
  return sum(_BYTES[t] * int(np.prod([int(d) for d in dims.split(',') if d]))
             for t, dims, layout in _LAID.findall(result) if 'S(' not in layout)


def _fused_traffic(body, hbm) -> tuple[list, int | None]:
  """(bytes read of each fusion parameter, bytes written) where a fusion touches less
  than whole buffers: a parameter only dynamic-sliced is read by its slices, one only
  updated in place is not read; a root dynamic-update-slice writes its update. None: whole."""
  users: dict[str, list] = collections.defaultdict(list)
  ops, params, root = {}, {}, ''
  for op, name, rest, line in body:
    ops[name] = (op, _operands(rest))
    for i, o in enumerate(_operands(rest)):
      users[o].append((op, i, name))
    if op == 'parameter':
      params[int(rest.split(')')[0])] = name
    root = name if line.lstrip().startswith('ROOT') else root

  def uses(name):  # through bitcasts
    return [u for op, i, n in users[name]
            for u in (uses(n) if op == 'bitcast' else [(op, i, n)])]

  reads = []
  for i in sorted(params):
    u = uses(params[i])
    if u and all(op == 'dynamic-slice' and j == 0 for op, j, _ in u):
      reads.append(sum(hbm[n] for _, _, n in u))
    elif u and all(op == 'dynamic-update-slice' and j == 0 for op, j, _ in u):
      reads.append(0)
    else:
      reads.append(None)

  def written(name):
    op, args = ops[name]
    if op == 'bitcast':
      return written(args[0])
    if op == 'dynamic-update-slice':
      return hbm[args[1]]
    if op == 'tuple':
      return sum(hbm[a] if written(a) is None else written(a) for a in args)
    return None

  return reads, written(root) if root else None


def _dims(attr, line):
  m = re.search(attr + r'=\{([\d,]*)\}', line)
  return [int(d) for d in m.group(1).split(',') if d] if m else []


def _operands(rest):
  return re.findall(r'%([\w.\-]+)', rest.split(')')[0])


def _flops(op, out, lhs, rhs, line) -> float:
  """2 x output elements x contraction size, for dot and convolution."""
  out_elems = float(np.prod(out))
  if op == 'dot':
    return 2 * out_elems * float(np.prod([lhs[d] for d in _dims('lhs_contracting_dims', line)]))
  labels = re.search(r'dim_labels=\w+_(\w+)->', line)
  if not labels or 'o' not in labels.group(1) or len(labels.group(1)) != len(rhs):
    return 0.0
  groups = re.search(r'feature_group_count=(\d+)', line)
  o_size = rhs[labels.group(1).index('o')]
  return 2 * out_elems * float(np.prod(rhs)) / o_size / (int(groups.group(1)) if groups else 1)


def _fmha_flops(result, operands, backward: bool) -> float:
  """cuDNN attention's matmul FLOPs: q k^T and p v forward, 4 x B x N x L x S x D; five
  such products backward (scores recomputed, then dv, dp, dq, dk): 2.5 times that. Masked
  and causal blocks counted as computed. Operands: q, k, v as B x L x N x D (bwd: the same
  first three)."""
  if len(operands) < 3 or len(operands[0]) != 4 or len(operands[1]) != 4:
    return 0.0
  batch, length, heads, depth = operands[0]
  keys = operands[1][1]
  forward = 4.0 * batch * heads * length * keys * depth
  return forward * 2.5 if backward else forward


def _traffic(op, name, rest, line, comps, hbm) -> int:
  """HBM bytes one run of an instruction of a loop body or the entry reads and writes: an
  async op's start reads, its done writes; a fusion what `_fused_traffic` says."""
  args = _operands(rest)
  if op in _NO_TRAFFIC or op.endswith('-update'):
    return 0
  if op.endswith('-done'):
    return hbm[name]
  if op.endswith('-start'):
    return sum(hbm.get(a, 0) for a in args)
  if op == 'dynamic-update-slice':
    return 2 * hbm.get(args[1], 0)
  if op == 'dynamic-slice':
    return 2 * hbm[name]
  reads, written = [None] * len(args), None
  fused = re.search(r'calls=%?([\w.\-]+)', line)
  if op == 'fusion' and fused and fused.group(1) in comps:
    reads, written = _fused_traffic(comps[fused.group(1)], hbm)
  return (sum(hbm.get(a, 0) if r is None else r for a, r in zip(args, reads))
          + (hbm[name] if written is None else written))


def parse(text: str) -> dict:
  """{'collectives': {kind: bytes}, 'largest': {kind: bytes}, 'flops': matmul (and cuDNN
  attention) FLOPs with loops unrolled, 'loop_factor': those / with each body once (what
  cost_analysis counts)} of one chip per step. A collective's bytes are its result's (all
  of a combined all-reduce's tuple; of an async start, less the operands it also holds),
  a reduce-scatter's its operand's, a chain of fusions that runs one collective once;
  the TPU's windowed (collective) matmuls are loops with a uint32 counter; a loop runs as
  often as its condition's s32 or u32 bound says (or XLA's known_trip_count)."""
  comps: dict[str, list[tuple[str, str, str, str]]] = {}  # computation -> (op, name, rest, line)
  calls: dict[str, list] = collections.defaultdict(list)  # caller -> (callee, attr, trip count)
  shapes: dict[str, list] = {}
  hbm: dict[str, int] = {}  # instruction -> bytes of its result in HBM
  entry = current = ''  # the ENTRY computation; the one being read
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
    name, result, op, rest = m.groups()
    shapes[name] = _arrays(result)
    hbm[name] = _hbm(result)
    comps[current].append((op, name, rest, line))
    trip = _TRIP.search(line)
    for attr, names in _CALLS.findall(line):
      for callee in names.strip('{}').replace('%', '').split(','):
        if callee.strip():
          calls[current].append((callee.strip(), attr, int(trip.group(1)) if trip else None))
  times: collections.Counter[str] = collections.Counter()
  once: collections.Counter[str] = collections.Counter()

  def trips(condition):
    bounds = [int(b) for _, _, _, line in comps.get(condition, ()) for b in _BOUND.findall(line)]
    return bounds[0] if len(bounds) == 1 else 1

  control = {entry}  # the entry and loop and branch bodies: their instructions touch HBM

  def visit(name, n, k):
    times[name] += n
    once[name] += k
    edges = calls.get(name, ())
    for callee, attr, known in edges:
      if attr != 'calls' and attr != 'to_apply':
        control.add(callee)
      if attr == 'body':
        cond = [c for c, a, _ in edges if a == 'condition']
        visit(callee, n * (known or (trips(cond[0]) if cond else 1)), k)
      else:
        visit(callee, n, k)

  visit(entry, 1, 1)
  total: collections.Counter[str] = collections.Counter()
  largest: collections.Counter[str] = collections.Counter()
  flops, flops_once = 0.0, 0.0
  traffic = 0.0  # HBM bytes read and written by the instructions outside fusions
  random_bits = 0.0  # element-ops of random-bit generation (threefry's integer rounds)
  # (kind, channel, chain) -> (kind, bytes): one collective split over fusions
  chained: dict[tuple, int] = {}
  reduced: set[tuple] = set()  # the shapes that are all-reduced
  for comp, n in times.items():
    for op, name, rest, line in comps.get(comp, ()):
      if comp in control:
        traffic += n * _traffic(op, name, rest, line, comps, hbm)
      kind = op.removesuffix('-start')
      if kind in COLLECTIVES:
        if kind == 'all-reduce' and comp.startswith('all-reduce-scatter'):
          kind = 'reduce-scatter'  # TPU's reduce-scatter: an all-reduce fused with its slice
        arrays = shapes[name]
        if kind == 'reduce-scatter':
          arrays = [a for o in _operands(rest) for a in shapes.get(o, [])]
        sizes = [b for b, _ in arrays]
        size = sum(sizes)
        if op.endswith('-start'):  # its result holds the operands too, except a GPU all-reduce's
          operand_bytes = sum(b for o in _operands(rest) for b, _ in shapes.get(o, []))
          size = size - operand_bytes if size > operand_bytes else size
        chain = _CHAIN.search(line)
        if chain:
          key = (kind, chain.group(1), chain.group(2))
          chained[key] = max(chained.get(key, 0), n * size)
        else:
          total[kind] += n * size
        if kind == 'all-reduce':
          reduced.update(tuple(d) for _, d in arrays)
        largest[kind] = max(largest[kind], max(sizes, default=0))
      elif op in _RANDOM_BITS and shapes[name] and ' u32[' in f" {line.split('=', 1)[1]}"[:8]:
        random_bits += n * float(np.prod(shapes[name][0][1]))
      elif op == 'custom-call' and _FMHA.search(line):
        f = _fmha_flops(shapes[name], [shapes.get(o, [(0, [])])[0][1] for o in _operands(rest)],
                        'Backward' in line)
        flops, flops_once = flops + n * f, flops_once + once[comp] * f
      elif op in ('dot', 'convolution'):
        ops = [shapes.get(o, [(0, [])])[0][1] for o in _operands(rest)[:2]]
        if len(ops) == 2 and shapes[name]:
          f = _flops(op, shapes[name][0][1], ops[0], ops[1], line)
          flops, flops_once = flops + n * f, flops_once + once[comp] * f
  for (kind, _, _), size in chained.items():
    total[kind] += size
  # Windowed (dilated) convolutions make the matmul count approximate; their ratio is not.
  return {'collectives': dict(total), 'largest': dict(largest), 'all_reduced': sorted(reduced),
          'hbm_traffic': traffic,
          'loop_factor': flops / flops_once if flops_once else 1.0, 'flops': flops,
          'kernels': sorted(set(_KERNEL.findall(text))),
          'random_bit_ops': random_bits}
