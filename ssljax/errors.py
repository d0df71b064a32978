"""The one exception type users see: a message that names the thing and the fix."""


class UserError(Exception):
  """Bad input (config, files, corpus, checkpoint). The CLI prints it without a traceback."""


class ResumeMismatch(UserError):
  """A workdir's checkpoint was written under another config. `differences`: one
  'key: stored -> wanted' each; `imported`: the step 0 that import-hf writes."""

  def __init__(self, workdir: str, step: int, differences: list[str]):
    self.workdir, self.step, self.differences = workdir, step, differences
    directory, detail = f'{workdir}/checkpoints/{step}', ', '.join(differences)
    if step == 0:  # only import-hf writes step 0
      super().__init__(f'{directory} is a model import-hf wrote, of another config '
                       f'({detail}); pretrain from it with --set train.init_from={workdir} '
                       '(which takes its architecture) and a new --workdir')
    else:
      super().__init__(f'{directory} holds a run with another config ({detail}); use a new '
                       '--workdir, or the same config to continue that run')


class InexactResume(UserError):
  """Settings that decide the data order, masks and dropout changed on resume.
  `changed`: train key -> (trained with, wanted now)."""

  def __init__(self, directory: str, changed: dict[str, tuple]):
    self.directory, self.changed = directory, changed
    now = ', '.join(f'train.{k}={new!r} (it was trained with {old!r})'
                    for k, (old, new) in changed.items())
    same = ' '.join(f'train.{k}={old}' for k, (old, _) in changed.items())
    super().__init__(f'{directory} cannot continue exactly under {now}: the data order, '
                     f'masks and dropout would change mid-run. Continue with --set {same}, '
                     'or start a new run with a new --workdir (--set '
                     f'train.init_from={directory} starts it from these weights)')


class NonFiniteLoss(UserError):
  """A NaN or infinite loss or gradient norm at `step`; nothing after `saved_step` is saved.

  Right after a resume (no checkpoint saved since, `resumed_from == saved_step`) the
  checkpoint it resumed from is the likelier cause than the learning rate: bytes that
  changed without a checksum to catch them (a step an older ssljax wrote), or a state saved
  as the run began to diverge. Saying so breaks the loop of reruns that resume from it and
  stop again.
  """

  def __init__(self, workdir: str, step: int, loss: float, grad_norm: float,
               resumed_from: int, saved_step: int):
    self.step, self.loss, self.grad_norm = step, loss, grad_norm
    said = (f'loss is {loss} (gradient norm {grad_norm}) at step {step}; stopped without '
            'saving')
    if resumed_from and saved_step == resumed_from:
      where = f'{workdir}/checkpoints/{resumed_from}'
      super().__init__(
          f'{said}, {step - resumed_from} steps after resuming from {where}: that checkpoint '
          f'may be damaged or already diverging. Set it aside (mv {where} '
          f'{workdir}/checkpoints/unreadable-{resumed_from}) and rerun to resume from the '
          'one before, or lower optimizer.learning_rate or set optimizer.clip_norm')
      return
    kept = (f'the last good checkpoint (step {saved_step}) is kept in {workdir}/checkpoints'
            if saved_step else 'no checkpoint was saved yet')
    super().__init__(f'{said}: {kept}. Lower optimizer.learning_rate or set '
                     'optimizer.clip_norm, then rerun')


class Interrupted(KeyboardInterrupt):
  """Ctrl-C that stopped pretraining after it saved a checkpoint; the message says where."""


# An optional module -> the extra of pyproject.toml that installs it.
EXTRAS = {'safetensors': 'hf', 'tokenizers': 'hf', 'libtpu': 'tpu', 'apache_beam': 'prepare',
          'jax_cuda12_plugin': 'gpu-compile',
          'pyarrow': 'prepare', 'lm_eval': 'eval', 'gcsfs': 'gcs', 's3fs': 's3',
          'wandb': 'wandb'}


class MissingExtra(UserError):
  """An optional module is not installed: the message names its extra and the pip command
  that adds it to this installation."""

  def __init__(self, module: str, needed_for: str):
    extra = EXTRAS[module]
    super().__init__(f'{needed_for} needs {module}, from the {extra!r} extra: '
                     f'{install_line(extra)}')


def require(module: str, needed_for: str):
  """Imports the optional `module`, or raises MissingExtra naming its extra."""
  import importlib
  try:
    return importlib.import_module(module)
  except ImportError:
    raise MissingExtra(module, needed_for) from None


def install_line(extra: str) -> str:
  """The pip command that adds `extra` to the ssljax this process runs: the clone's folder
  for an editable install, the wheel or repository it came from otherwise (PEP 610's
  direct_url.json); never a bare index name, as ssljax is not on PyPI."""
  import importlib.metadata
  import json
  import urllib.parse
  import urllib.request
  try:
    origin = json.loads(importlib.metadata.distribution('ssljax').read_text(
        'direct_url.json') or '{}')
  except (importlib.metadata.PackageNotFoundError, ValueError):
    origin = {}
  url = origin.get('url', '')
  if url.startswith('file://') and origin.get('dir_info', {}).get('editable'):
    folder = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    return f"pip install -e '{folder}[{extra}]'"
  if 'vcs_info' in origin:
    url = f"{origin['vcs_info']['vcs']}+{url}@{origin['vcs_info']['commit_id']}"
  if url:
    return f"pip install 'ssljax[{extra}] @ {url}'"
  return f"pip install -e '.[{extra}]' in a clone of ssljax"
