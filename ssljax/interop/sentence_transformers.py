"""sentence-transformers' folders: the pooling and normalisation their `modules.json`
names, so that `ssljax encode` and `Model.encode` give the embeddings
`SentenceTransformer(folder).encode` gives (all-MiniLM-L6-v2: mean pooling, then unit
length) without being told."""

import json

from ssljax import paths
from ssljax.errors import UserError

# 1_Pooling/config.json's modes that ssljax pools the same way (encoding.POOLINGS).
_POOLINGS = {'pooling_mode_cls_token': 'first', 'pooling_mode_mean_tokens': 'mean',
             'pooling_mode_lasttoken': 'last'}


def _read(file: paths.Path):
  try:
    return json.loads(file.read_text())
  except (ValueError, OSError) as e:
    raise UserError(f'{file} is not readable JSON ({e}); download the model again') from None


def encode_settings(folder, pooling: str | None = None,
                    normalize: bool | None = None) -> tuple[str, bool]:
  """(pooling, normalize): those given, else what the folder's modules.json names (a
  sentence-transformers folder), else mean pooling without normalising. A pooling the
  folder names and ssljax does not have is refused in one line, unless one is given."""
  folder = paths.path(folder)
  file = folder / 'modules.json'
  if not file.is_file() or (pooling is not None and normalize is not None):
    return pooling or 'mean', bool(normalize)
  modules = {str(m.get('type', '')).rsplit('.', 1)[-1]: m.get('path', '') for m in _read(file)}
  if pooling is None and 'Pooling' in modules:
    config = _read(folder / modules['Pooling'] / 'config.json')
    modes = [key for key, on in config.items() if key.startswith('pooling_mode') and on]
    if len(modes) != 1 or modes[0] not in _POOLINGS:
      raise UserError(f'{folder / modules["Pooling"]}/config.json pools by {", ".join(modes)}; '
                      'ssljax pools by one of cls token, mean or last token: pass a pooling '
                      '(--pooling first|mean|last)')
    pooling = _POOLINGS[modes[0]]
  return pooling or 'mean', 'Normalize' in modules if normalize is None else normalize
