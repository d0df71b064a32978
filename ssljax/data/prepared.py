"""A folder `ssljax prepare` wrote, read lazily: `data.source=prepared`, `data.path=DIR`.

    DIR/manifest.json         written last: the folder is complete when it exists
    DIR/tokenizer.model       the tokenizer every shard was encoded with
    DIR/shards/train-00000    token shards (`data/shards.py`), one per input split
    DIR/shards/eval-00000     the held-out documents of the same split
    DIR/shards/*.chunks-S-M   chunk indexes for the config prepare was given

Opening reads the manifest and one listing of `shards/` (sizes checked); a shard's own
bytes are read when a batch first needs them (its header checked then). Start-up time and
memory therefore grow with the number of shards, not with the corpus.
"""

import dataclasses
import json
import logging
import os

import fsspec

from ssljax import paths, tokenizers
from ssljax.data import examples as examples_lib, shards, store as store_lib
from ssljax.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = 'manifest.json'
FORMAT = 'ssljax-prepared-1'
SPLITS = ('train', 'eval')


@dataclasses.dataclass
class Prepared:
  """The manifest of a prepared folder, its tokenizer and its two document stores."""
  path: paths.Path
  manifest: dict
  tokenizer: tokenizers.Tokenizer

  def store(self, split: str) -> store_lib.Store:
    """`split`'s shards, mapped locally and read by byte range on object storage, with the
    chunk indexes prepare wrote for them."""
    entries = self.manifest['splits'][split]['shards']
    folder = self.path / 'shards'
    keys = [k for k, by_split in self.manifest.get('chunks', {}).items() if split in by_split]
    parts = (shards.RemoteParts if paths.is_remote(folder) else shards.local_parts)(
        folder, entries, self.tokenizer.vocab_size, keys)
    return store_lib.Store([e['documents'] for e in entries], [e['tokens'] for e in entries],
                           parts, [os.fspath(folder / e['name']) for e in entries])

  def examples(self, split: str, objective: str, seq_len: int, seed: int, max_docs: int = 0):
    """One epoch of `split`'s examples, or None when the split has no document; `max_docs`
    caps clm's packed rows."""
    docs = self.manifest['splits'][split]['documents']
    if split == 'eval' and (not docs or objective == 'mlm_nsp' and docs < 2):
      if docs:
        log.warning('%s holds out %d document; NSP pairs need two, so the run has no '
                    'evaluation: prepare with a larger data.eval_fraction', self.path, docs)
      return None
    counts = None
    if (chunking := examples_lib.chunking(objective, seq_len)) is not None:
      key = store_lib.chunk_key(*chunking)
      counts = self.manifest.get('chunks', {}).get(key, {}).get(split)
      if counts is None:
        log.warning('%s has no chunk index for data.seq_len=%d (%s): reading every '
                    "shard's document index to count chunks; run ssljax prepare with "
                    'this config to skip that', self.path, seq_len, objective)
    return examples_lib.from_store(self.store(split), self.tokenizer, objective, seq_len,
                                   seed, counts, max_docs)


def open_folder(path) -> Prepared:
  """Reads DIR's manifest and tokenizer and checks that every shard is there whole."""
  folder = paths.path(path)
  file = folder / MANIFEST
  if not file.exists():
    hint = ('prepare was interrupted: rerun the same ssljax prepare command to finish it'
            if (folder / 'shards').exists() else
            'write it with ssljax prepare --config FILE --out DIR')
    raise UserError(f'data.path {folder} has no {MANIFEST}, so it is not a prepared '
                    f'corpus; {hint}')
  try:
    manifest = json.loads(paths.read_utf8(file))
  except json.JSONDecodeError as e:
    raise UserError(f'{file} is not valid JSON ({e.msg}); {store_lib.REPAIR}') from None
  if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
    found = manifest.get('format') if isinstance(manifest, dict) else None
    raise UserError(f'{file} has format {found!r}, not {FORMAT!r}; '
                    'prepare the corpus again with this ssljax')
  try:
    entries = {split: manifest['splits'][split]['shards'] for split in SPLITS}
    typed = [(entry, key, kind) for entry in entries['train'] + entries['eval']
             for key, kind in (('name', str), ('documents', int), ('tokens', int),
                               ('bytes', int))]
    typed += [(manifest['splits'][split], 'documents', int) for split in SPLITS]
    typed += [(manifest['tokenizer'], key, str) for key in ('file', 'sha256', 'kind')]
    for holder, key, kind in typed:
      if not isinstance(holder[key], kind):
        raise TypeError(key)
  except (KeyError, TypeError) as e:
    raise UserError(f'{file} lacks a key or holds a value of another type ({e}); '
                    f'{store_lib.REPAIR}') from None
  if not entries['train']:
    raise UserError(f'{file} lists no training shard; the source had no document to '
                    'train on: point data.* at a corpus with text and prepare again')
  _check_shards(folder / 'shards', [e for split in SPLITS for e in entries[split]])
  tokenizer = _tokenizer(folder, manifest)
  return Prepared(folder, manifest, tokenizer)


def _check_shards(folder: paths.Path, entries: list[dict]):
  """Every listed shard exists with its size, from one listing of the folder."""
  fs, root = fsspec.core.url_to_fs(os.fspath(folder))
  try:
    listing = {os.path.basename(i['name'].rstrip('/')): i['size']
               for i in fs.ls(root, detail=True)}
  except FileNotFoundError:
    listing = {}
  for entry in entries:
    size = listing.get(entry['name'])
    if size is None:
      raise UserError(f'shard {folder / entry["name"]} is missing; {store_lib.REPAIR}')
    if size != entry['bytes']:
      raise UserError(f'shard {folder / entry["name"]} has {size} bytes where the '
                      f'manifest says {entry["bytes"]}; it is corrupt: {store_lib.REPAIR}')


def _tokenizer(folder: paths.Path, manifest: dict) -> tokenizers.Tokenizer:
  file = folder / manifest['tokenizer']['file']
  if not file.exists():
    raise UserError(f'{file} is missing; {store_lib.REPAIR}')
  data = file.read_bytes()
  if shards.sha256(data) != manifest['tokenizer']['sha256']:
    raise UserError(f'{file} does not match the manifest (sha256); it was changed after '
                    f'prepare: {store_lib.REPAIR}')
  return tokenizers.from_proto(manifest['tokenizer']['kind'], data, f'tokenizer file {file}')


def check_tokenizer(prepared: Prepared, tokenizer: tokenizers.Tokenizer, origin: str):
  """The run's tokenizer must be the one the shards were encoded with."""
  if tokenizer.model_proto != prepared.tokenizer.model_proto:
    raise UserError(f'{origin} is not the tokenizer {prepared.path} was prepared with; '
                    'the token ids would mean other words. Leave tokenizer.path empty to '
                    'use the prepared one, or prepare the corpus with this tokenizer '
                    '(--set tokenizer.path=...)')
