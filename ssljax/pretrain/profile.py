"""Where a compiled step's time goes, from XLA's own trace (`jax.profiler`), summed by op.

`op_seconds(step, steps)` runs `step` (one call = one blocking training step) under
`jax.profiler.trace` and reads the trace back with `jax.profiler.ProfileData`: each XLA
op that ran (a fusion, a dot, a library call such as `ynn_fusion`) with its self seconds
per step (less the ops nested in it, as a `while` body's are). An op's event spans its run
on the thread that launched it, the pool threads it splits its work over included; ops that
XLA runs side by side on different threads each count, so the total is the ops' wall time
when they run one at a time and more when they overlap. `by_kind` folds
`fusion.12`, `fusion.3`, ... into one row. `Window` does this inside a pretraining run
(`train.profile_steps`).
"""

import glob
import os
import re
import shutil
import tempfile

import jax

from ssljax import paths

# Lines of the host plane that run XLA's compiled ops (CPU: the client's threads and the
# intra-op pool's) and the device planes' op lines (GPU/TPU, by the profiler's naming; only
# the CPU lines are tested). Runtime events (`ThunkExecutor::...`, thread-pool waits) carry
# C++ names; HLO op names never do.
_OP_LINES = ('tf_XLAPjRtCpuClient', 'tf_XLAEigen', 'XLA Ops')


def _is_op(name: str) -> bool:
  return '::' not in name and not name.startswith('end: ')


def op_seconds(step, steps: int = 3) -> dict[str, float]:
  """{XLA op name: seconds per step}, largest first, over `steps` traced calls of `step`.

  Call `step` once before, so that compiling is not traced.
  """
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        step()
    return read(trace_dir, steps)


def read(trace_dir, steps: int) -> dict[str, float]:
  """`op_seconds` of the newest trace that `jax.profiler` wrote under `trace_dir`."""
  trace = max(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True),
              key=os.path.getmtime)
  profile = jax.profiler.ProfileData.from_file(trace)
  return _summed((name, self_ns * 1e-9 / steps)
                 for plane in profile.planes for line in plane.lines
                 if line.name.startswith(_OP_LINES)
                 for name, self_ns in _self_times(
                     [(e.name, e.start_ns, e.end_ns) for e in line.events if _is_op(e.name)]))


def _summed(pairs) -> dict[str, float]:
  """Seconds summed by name, largest first (ties in the order the names came)."""
  sums: dict[str, float] = {}
  for name, s in pairs:
    sums[name] = sums.get(name, 0.0) + s
  return dict(sorted(sums.items(), key=lambda kv: -kv[1]))


def compile_only_libtpu() -> bool:
  """Whether libtpu.so is loaded but does not run this process's arrays (`ssljax compile`
  loaded it, or jax tried a TPU on a machine without one): `jax.profiler` then dies in
  start_trace (segfault, jax 0.10.2 / libtpu 0.0.52)."""
  if jax.default_backend() == 'tpu':  # first: choosing the backend is what loads libtpu
    return False
  try:
    with open('/proc/self/maps') as f:
      return 'libtpu' in f.read()
  except OSError:  # not Linux: there is no libtpu
    return False


class Window:
  """`train.profile_steps` steps of a pretraining run traced after step `train.profile_from`.

  The trace goes where TensorBoard's profile tab finds it (WORKDIR/tensorboard/plugins/
  profile; for a gs:// or s3:// workdir it is written locally and copied up), and the ops
  by kind go to WORKDIR/profile.md. Steps inside the window log lower tokens/s: tracing
  and the syncs at its ends cost time; what the steps compute does not change.
  """

  def __init__(self, workdir, start: int, steps: int):
    self.workdir, self.start, self.steps = paths.path(workdir), start, steps
    self._local: str | None = None  # where jax.profiler writes: a local folder

  def at(self, step: int, state) -> str | None:
    """Starts or stops the trace after `step`; at the stop returns a line to print."""
    if step != self.start and (step != self.start + self.steps or self._local is None):
      return None  # outside the window, or a resumed run that began inside it
    if step == self.start and compile_only_libtpu():
      return (f'profile window after step {step} skipped: libtpu is loaded but this run is '
              f'on {jax.default_backend()} (ssljax compile in this process, or jax tried a TPU '
              "here), and jax's profiler crashes then; profile in a fresh process with "
              'JAX_PLATFORMS=cpu (or cuda)')
    jax.block_until_ready(state)  # the window holds exactly its steps' work
    if step == self.start:
      self._local = (tempfile.mkdtemp(prefix='ssljax-profile-') if paths.is_remote(self.workdir)
                     else os.fspath(self.workdir / 'tensorboard'))
      jax.profiler.start_trace(self._local)
      return None
    jax.profiler.stop_trace()
    assert self._local is not None  # the window started (checked above)
    seconds = read(self._local, self.steps)
    kinds = by_kind(seconds)
    paths.write_whole(self.workdir / 'profile.md', '\n'.join([
        f'# XLA ops of steps {self.start + 1}-{step}, by kind (self time; ops that ran side '
        'by side on different threads each count)', '', table(kinds), '',
        '## By op', '', table(seconds, top=30), '']))
    if paths.is_remote(self.workdir):
      paths.upload(self._local, self.workdir / 'tensorboard')
      shutil.rmtree(self._local, ignore_errors=True)
    top = ', '.join(f'{name} {100 * s / sum(kinds.values()):.0f} %'
                    for name, s in list(kinds.items())[:3])
    return (f'profiled steps {self.start + 1}-{step}: {top}; {self.workdir}/profile.md, '
            'trace in the TensorBoard profile tab')


def _self_times(ops):
  """(name, duration less that of the ops nested in it) of each (name, start, end): the
  ops of a `while` or `call` body run inside the loop's own event."""
  ops = sorted(ops, key=lambda op: (op[1], -op[2]))
  inner = [0.0] * len(ops)
  open_ops: list[int] = []  # indices of the ops that enclose the current one, outermost first
  for i, (_, start, end) in enumerate(ops):
    while open_ops and ops[open_ops[-1]][2] <= start:
      open_ops.pop()
    if open_ops:
      inner[open_ops[-1]] += end - start
    open_ops.append(i)
  return [(name, end - start - inner[i]) for i, (name, start, end) in enumerate(ops)]


def by_kind(seconds: dict[str, float]) -> dict[str, float]:
  """Sums ops that differ only in XLA's numeric suffix (`fusion.12` -> `fusion`)."""
  return _summed((re.sub(r'(\.\d+)+$', '', name), s) for name, s in seconds.items())


def table(seconds: dict[str, float], top: int = 12) -> str:
  """A Markdown table of the `top` rows with their share of the total."""
  total = sum(seconds.values())
  rows = [f'| {name} | {1e3 * s:.1f} | {100 * s / total:.1f} % |'
          for name, s in list(seconds.items())[:top]]
  rest = total - sum(list(seconds.values())[:top])
  return '\n'.join(['| op | ms per step | share |', '|---|---:|---:|', *rows,
                    f'| (the other {max(0, len(seconds) - top)}) | {1e3 * rest:.1f} | '
                    f'{100 * rest / total:.1f} % |', f'| total | {1e3 * total:.1f} | 100 % |'])
