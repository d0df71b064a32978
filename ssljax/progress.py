"""Progress of the adaptation commands on stderr: a tqdm bar per loop, a line per epoch.

Bars are transient (they clear when their loop ends), so what stays on the terminal is one
summary line per epoch (or per seed for probes and prompting), the way `ssljax pretrain`
shows its bar; stdout is left to the results. `progress=False` in the settings silences
both, e.g. in tests.
"""

import sys

import tqdm


def enabled(settings) -> bool:
  """`settings` itself when a bool, else settings.progress (a ConfigDict or a namespace),
  True when it does not say."""
  if isinstance(settings, bool):
    return settings
  return bool(getattr(settings, 'progress', True))


def bar(settings, total: int, desc: str, unit: str = 'step', leave: bool = False) -> tqdm.tqdm:
  return tqdm.tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True,
                   disable=not enabled(settings), file=sys.stderr)


def line(settings, text: str) -> None:
  """One summary line above any open bars."""
  if enabled(settings):
    tqdm.tqdm.write(text, file=sys.stderr)


def rate(lr: float) -> str:
  """A learning rate as people write it: 3e-4, 2.5e-5, 1e-3."""
  mantissa, exponent = f'{lr:e}'.split('e')
  return f'{float(mantissa):g}e{int(exponent)}'
