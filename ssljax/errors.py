"""The one exception type users see: a message that names the thing and the fix."""


class UserError(Exception):
  """Bad input (config, files, corpus, checkpoint). The CLI prints it without a traceback."""


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
