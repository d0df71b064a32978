"""`ssljax compile`: check that a config's train step fits a TPU slice before renting one."""

import json


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
  from ssljax.errors import UserError
  from ssljax.pretrain import compile as compile_lib
  config = config_lib.load(args.config, args.set)
  r = compile_lib.compile_step(config, args.topology)
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
  t = r['roofline_seconds']
  return [
      f"{r['topology']}: {r['chips']} x {r['chip']} chips, mesh {mesh}, compiled in "
        f"{r['compile_seconds']:.0f} s",
      f"memory per chip: {_gib(r['bytes_per_chip'])} of {_gib(r['hbm_bytes'])} HBM "
        f"({'fits' if r['fits'] else 'DOES NOT FIT'}): parameters {_gib(m['parameters'])}, "
        f"optimizer {_gib(m['optimizer'])}, temporaries {_gib(m['temporaries'])}",
      f"FLOPs per step: {r['flops_per_step']:.3g} compiled, "
        f"{r['model_flops_per_step']:.3g} model",
      f"collectives per step and chip: {shown or 'none'} ({ratio:.1f}x the parameters' "
        "bf16 bytes)",
      f"attention: {r['attention']} (kernels in the program: "
        f"{', '.join(r['attention_kernels']) or 'none, XLA fusions'}); random bits: "
        f"{r['random_bit_ops']:.3g} uint32 ops",
      f"roofline: step >= {r['roofline_step_seconds'] * 1e3:.1f} ms (compute "
        f"{t['compute'] * 1e3:.1f}, HBM {t['hbm'] * 1e3:.1f}, ICI {t['ici'] * 1e3:.1f} ms): "
        f"MFU <= {r['roofline_mfu']:.0%}",
      f"train.steps={r['train_steps']:,} at that bound: >= {r['run_hours_bound']:.1f} h of "
        f"the slice (its hourly price x these hours is the cost floor; a real step is slower)"]


def add_commands(sub):
  from ssljax.cli.pretrain import config_args
  q = sub.add_parser(
      'compile', help='compile the train step for a TPU slice on this machine',
      description='Compiles the train step that pretrain runs for the compile-only devices '
      "of a TPU topology (libtpu: pip install -e '.[tpu]'), reading no corpus, and prints "
      'memory per chip against HBM, FLOPs, collective bytes per step (loops counted as '
      'they run), the attention kernel and a roofline bound on step time and MFU.')
  config_args(q)
  q.add_argument('--topology', required=True,
                 help="v5p-128 (a slice's name: TensorCores) or v5p:4x4x4 (chips)")
  q.add_argument('--json', action='store_true', help='print one JSON object')
  q.set_defaults(run=_compile)
