"""`ssljax compile`: check that a config's train step fits a TPU slice or GPU node before
renting one."""

import json


def in_thread(fn, *args):
  """fn(*args) in a worker thread while the main thread waits in short joins: XLA's
  compiler holds the thread that calls it for tens of seconds, and Python runs a signal
  handler only in the main thread between bytecodes, so Ctrl-C would wait for the compile
  (34 s for gpt_small); waiting here, it exits at once (cli.main's handler)."""
  import threading
  out = {}

  def work():
    try:
      out['value'] = fn(*args)
    except BaseException as e:  # handed to the main thread, which raises it
      out['error'] = e

  worker = threading.Thread(target=work, daemon=True)
  worker.start()
  while worker.is_alive():
    worker.join(0.1)
  if 'error' in out:
    raise out['error']
  return out['value']


def _gib(b):
  return f'{b / 2 ** 30:.2f} GiB'


def _compile(args):
  import jax
  # Before anything compiles (jax decides once per process): a compile-only executable
  # cannot be read back from the persistent cache, so a second compile of the same step
  # warned "PjRtCompiler must be constructed with a Client"; the HLO dump needs a real
  # compile anyway.
  jax.config.update('jax_enable_compilation_cache', False)
  from ssljax import config as config_lib
  from ssljax.aot import compile as compile_lib
  from ssljax.errors import UserError
  config = config_lib.load(args.config, args.set)
  r = in_thread(compile_lib.compile_step, config, args.topology)
  if args.json:
    print(json.dumps(r, default=float))
  if not r['fits'] and 'error' in r:
    raise UserError(r['error'])
  if not args.json:
    print('\n'.join(report_lines(r)))


def report_lines(r) -> list[str]:
  m = r['memory']
  mesh = ' '.join(f'{k}={v}' for k, v in r['mesh'].items())
  shown = ', '.join(f'{k} {_gib(v)}' for k, v in sorted(r['collective_bytes'].items()))
  ratio = sum(r['collective_bytes'].values()) / (2 * r['parameters'])
  bounds = ', '.join(f'{LINKS.get(k, k)} {v * 1e3:.1f}'
                     for k, v in r['roofline_seconds'].items())
  unit = 'chip' if r['platform'] == 'tpu' else 'GPU'
  usable = ('' if r['usable_bytes'] == r['hbm_bytes'] else
            f" ({r['usable_bytes'] / r['hbm_bytes']:.0%} of {_gib(r['hbm_bytes'])}: jax's "
            'allocator, XLA_PYTHON_CLIENT_MEM_FRACTION)')
  return [
      f"{r['topology']}: {r['chips']} x {r['chip']} {unit}s, mesh {mesh}, compiled in "
        f"{r['compile_seconds']:.0f} s",
      f"memory per {unit}: {_gib(r['bytes_per_chip'])} of {_gib(r['usable_bytes'])} HBM"
        f"{usable} ({'fits' if r['fits'] else 'DOES NOT FIT'}): parameters "
        f"{_gib(m['parameters'])}, "
        f"optimizer {_gib(m['optimizer'])}, temporaries {_gib(m['temporaries'])}",
      f"FLOPs per step: {r['flops_per_step']:.3g} compiled, "
        f"{r['model_flops_per_step']:.3g} model",
      f"collectives per step and {unit}: {shown or 'none'} ({ratio:.1f}x the parameters' "
        "bf16 bytes)",
      f"attention: {r['attention']} (kernels in the program: "
        f"{', '.join(r['attention_kernels']) or 'none, XLA fusions'}); random bits: "
        f"{r['random_bit_ops']:.3g} uint32 ops",
      f"roofline: step >= {r['roofline_step_seconds'] * 1e3:.1f} ms ({bounds} ms): "
        f"MFU <= {r['roofline_mfu']:.0%}",
      f"train.steps={r['train_steps']:,} at that bound: >= {r['run_hours_bound']:.1f} h of "
        f"the {'slice' if unit == 'chip' else 'GPUs'} (its hourly price x these hours is the "
        "cost floor; a real step is slower)"] + [f'approximate: {a}' for a in r['approximate']]


LINKS = {'compute': 'compute', 'hbm': 'HBM', 'ici': 'ICI', 'nvlink': 'NVLink',
         'network': 'network'}


def add_commands(sub):
  from ssljax.cli.pretrain import config_args
  q = sub.add_parser(
      'compile', help='compile the train step for a TPU slice or GPU node on this machine',
      description='Compiles the train step that pretrain runs for the compile-only devices '
      "of a TPU topology (libtpu: pip install -e '.[tpu]') or of NVIDIA GPUs (the CUDA "
      "plugin's compiler, no GPU needed: pip install -e '.[gpu-compile]'), reading no "
      'corpus (a series config reads its data for the channels, unless model.channels '
      'gives them), and prints memory per chip against HBM, FLOPs, collective bytes per step '
      '(loops counted as they run), the attention kernel and a roofline bound on step time '
      'and MFU.')
  config_args(q)
  q.add_argument('--topology', required=True,
                 help="v5p-128 (a slice's name: TensorCores) or v5p:4x4x4 (chips); GPUs: "
                 'h100:8 (one host of 8), h100:2x8 (2 hosts), h100:1; a100, h200, b200')
  q.add_argument('--json', action='store_true', help='print one JSON object')
  q.set_defaults(run=_compile)
