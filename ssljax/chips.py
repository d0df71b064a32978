"""Published per-chip figures, and topology names: what `ssljax compile` judges a program
against and what MFU divides by on TPU and GPU.

Sources (bf16 dense peak, HBM capacity and bandwidth, ICI bandwidth per chip):
- TPU v4, v5e, v5p, v6e: cloud.google.com/tpu/docs/{v4,v5e,v5p,v6e} ("System
  architecture" tables); ICI as in "How to Scale Your Model" (jax-ml.github.io/scaling-book,
  "How to think about TPUs": one-way bandwidth per link x links per chip).
- A100 SXM4 80GB, H100 SXM5, H200 SXM, B200 (HGX B200): NVIDIA data sheets (dense bf16,
  half the "with sparsity" figure; NVLink bandwidth per GPU, halved to one way: 600, 900,
  900, 1800 GB/s both ways). HBM capacity: the device memory of XLA's target config for
  each (gpus/*.txtpb, what the GPU reports: 79.1 GiB on an "80 GB" H100).
- Between hosts, per GPU: DGX A100 has eight 200 Gb/s HDR InfiniBand ports for its eight
  GPUs (25 GB/s each), DGX H100, H200 and B200 eight 400 Gb/s ConnectX-7 (50 GB/s each):
  NVIDIA's DGX user guides, "Hardware overview".
"""

import dataclasses
import glob
import re

from ssljax.errors import UserError

GiB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  kind: str  # substring of jax's device_kind
  peak_flops: float  # bf16 FLOP/s, dense
  hbm_bytes: int
  hbm_bandwidth: float  # bytes/s
  ici_bandwidth: float  # bytes/s per chip, all links
  cores_per_chip: int = 1  # TensorCores MaxText's slice names count (v4-8 = 4 chips)
  dims: int = 2  # torus dimensions of a slice
  # GPUs: XLA's GpuTargetConfig that `ssljax compile` builds compile-only devices from
  # (a file under gpus/), and each GPU's share of its host's network.
  target_config: str = ''
  network_bandwidth: float = 0.0  # bytes/s per GPU, one way

  @property
  def platform(self) -> str:
    return 'gpu' if self.target_config else 'tpu'


CHIPS = {c.name: c for c in (
    Chip('v4', 'TPU v4', 275e12, 32 * GiB, 1228e9, 6 * 45e9, cores_per_chip=2, dims=3),
    Chip('v5e', 'TPU v5 lite', 197e12, 16 * GiB, 819e9, 4 * 45e9),
    Chip('v5p', 'TPU v5', 459e12, 95 * GiB, 2765e9, 6 * 90e9, cores_per_chip=2, dims=3),
    Chip('v6e', 'TPU v6 lite', 918e12, 32 * GiB, 1640e9, 4 * 90e9),
    Chip('a100', 'A100', 312e12, 85100068864, 2039e9, 300e9,
         target_config='a100_sxm_80.txtpb', network_bandwidth=25e9),
    Chip('h100', 'H100', 989e12, 84942979072, 3350e9, 450e9,
         target_config='h100_sxm.txtpb', network_bandwidth=50e9),
    Chip('h200', 'H200', 989e12, 151397597184, 4800e9, 450e9,
         target_config='h200.txtpb', network_bandwidth=50e9),
    Chip('b200', 'B200', 2250e12, 191514411008, 7700e9, 900e9,
         target_config='b200.txtpb', network_bandwidth=50e9),
)}
GPUS_PER_HOST = 8  # an HGX board: the GPUs NVLink joins


def for_device(device) -> Chip | None:
  """The chip of a jax device, or None (CPU, or a kind not in the table)."""
  kind = device.device_kind
  # 'TPU v5 lite' must not be read as v5p: longest matching kind wins.
  found = [c for c in CHIPS.values() if c.kind.lower() in kind.lower()]
  return max(found, key=lambda c: len(c.kind)) if found else None


def _grid(chips: int, dims: int) -> tuple[int, ...] | None:
  """The most cubic grid of `chips` chips with power-of-two sides."""
  if chips < 1 or chips & (chips - 1):
    return None
  sides = [1] * dims
  for i in range(chips.bit_length() - 1):
    sides[i % dims] *= 2
  return tuple(sorted(sides, reverse=dims == 3))  # JAX's names: v5e:2x4, v4:2x2x1


def topology(name: str) -> tuple[Chip, str]:
  """(chip, JAX topology name) from 'v5p:4x4x4' (JAX) or 'v5p-128' (MaxText: TensorCores),
  or for GPUs 'h100:8' (one host of 8) and 'h100:2x8' (2 hosts of 8): '1x2x8' for jax."""
  tpus = ', '.join(c.name for c in CHIPS.values() if c.platform == 'tpu')
  gpus = ', '.join(c.name for c in CHIPS.values() if c.platform == 'gpu')
  usage = ("use e.g. v5e:2x2, v5p:4x4x4 (JAX's names) or v5e-16, v5p-128 (a slice's "
           f"name), chips {tpus}; or h100:8 (GPUs of one host), h100:2x8 (hosts x GPUs), "
           f"GPUs {gpus}")
  m = re.fullmatch(r'([abh]\d+):(?:(\d+)x)?(\d+)', name.strip())
  if m and m.group(1) in CHIPS:
    hosts, per_host = int(m.group(2) or 1), int(m.group(3))
    if not (hosts >= 1 and 1 <= per_host <= GPUS_PER_HOST):
      raise UserError(f'--topology {name!r}: a host has 1 to {GPUS_PER_HOST} GPUs; {usage}')
    return CHIPS[m.group(1)], f'1x{hosts}x{per_host}'
  m = re.fullmatch(r'(v\w+?)(?::(\d+(?:x\d+)+)|-(\d+))', name.strip())
  chip = CHIPS.get(m.group(1)) if m else None
  if m is None or chip is None or chip.platform != 'tpu':
    raise UserError(f'--topology {name!r} is not a TPU or GPU topology; {usage}')
  shape: tuple[int, ...] | None = None
  if m.group(2):
    shape = tuple(int(s) for s in m.group(2).split('x'))
  elif int(m.group(3)) % chip.cores_per_chip == 0:
    shape = _grid(int(m.group(3)) // chip.cores_per_chip, chip.dims)
  if shape is None or len(shape) != chip.dims or min(shape) < 1:
    raise UserError(f'--topology {name!r}: not a {chip.name} slice shape; {usage}')
  return chip, f"{chip.name}:{'x'.join(map(str, shape))}"


# Device files of accelerators on this machine: a TPU VM's chips, an NVIDIA GPU's.
TPU_FILES, GPU_FILES = ('/dev/accel*', '/dev/vfio/[0-9]*'), ('/dev/nvidia[0-9]*',)


def present(patterns) -> bool:
  """Whether any device file of `patterns` (TPU_FILES, GPU_FILES) exists here."""
  return any(glob.glob(pattern) for pattern in patterns)
