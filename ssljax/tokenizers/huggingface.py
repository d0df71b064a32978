"""Hugging Face `tokenizers` behind the `ssljax.tokenizers.base.Tokenizer` protocol.

Covers WordPiece (BERT), byte-level BPE (RoBERTa, GPT-2) and Unigram (ALBERT's sentencepiece
`spiece.model`, converted the way transformers converts it), so token ids match the
tokenizer transformers loads from the same folder.

A tokenizer is its `tokenizer.json` plus the roles of its special tokens (which token is
[CLS], [SEP], ...); `save` writes both as `tokenizer.json` and `special_tokens_map.json`,
the files transformers reads. A role the tokenizer lacks falls back to its end-of-text
token: GPT-2's `<|endoftext|>` ends documents ([SEP]) and also pads.
"""

import json

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from ssljax import paths
from ssljax.errors import UserError
from ssljax.tokenizers import spm_proto
from ssljax.tokenizers.base import SPECIAL_TOKENS

ROLES = ('pad', 'unk', 'cls', 'sep', 'mask')
# Roles to stand in, in order, for a role whose token the tokenizer does not have.
_FALLBACK = {'pad': ('eos',), 'unk': ('eos',), 'cls': ('bos', 'eos'), 'sep': ('eos',),
             'mask': ('eos',)}
# Special tokens when a folder names none, by Hugging Face model_type.
DEFAULT_SPECIAL_TOKENS = {
    'bert': {'pad_token': '[PAD]', 'unk_token': '[UNK]', 'cls_token': '[CLS]',
             'sep_token': '[SEP]', 'mask_token': '[MASK]'},
    'roberta': {'pad_token': '<pad>', 'unk_token': '<unk>', 'cls_token': '<s>',
                'sep_token': '</s>', 'mask_token': '<mask>', 'bos_token': '<s>',
                'eos_token': '</s>'},
    'albert': {'pad_token': '<pad>', 'unk_token': '<unk>', 'cls_token': '[CLS]',
               'sep_token': '[SEP]', 'mask_token': '[MASK]'},
    'gpt2': {'unk_token': '<|endoftext|>', 'bos_token': '<|endoftext|>',
             'eos_token': '<|endoftext|>'},
}
DEFAULT_SPECIAL_TOKENS['modernbert'] = DEFAULT_SPECIAL_TOKENS['bert']
CAUSAL = ('gpt2', 'llama', 'gpt_neox')  # model types whose tokenizers add no [CLS]/[SEP]
_WORD_PREFIXES = ('\u0120', '\u2581')  # 'Ġ' (byte-level BPE), '▁' (sentencepiece)


class HFTokenizer:
  """Batch encoding to int32 arrays plus the per-id tables the data pipeline needs."""

  kind = 'hf'

  def __init__(self, tokenizer_json: str, special_tokens: dict[str, str],
               origin: str = '<json>'):
    try:
      self._tok = tokenizers.Tokenizer.from_str(tokenizer_json)
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
      raise UserError(f'{origin} is not a Hugging Face tokenizer ({e})') from None
    self._tok.no_truncation()
    self._tok.no_padding()
    self.special_tokens = {k: v for k, v in special_tokens.items() if v is not None}
    ids = [self._role_id(role, origin) for role in ROLES]
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    added = [i for i, t in self._tok.get_added_tokens_decoder().items() if t.special]
    self.special_ids = np.unique(np.asarray(ids + added, np.int32))
    self.normal_ids = np.setdiff1d(np.arange(self.vocab_size, dtype=np.int32), self.special_ids)
    self.word_start = self._word_starts()
    self.word_start[self.special_ids] = True

  def _role_id(self, role, origin) -> int:
    for name in (role,) + _FALLBACK[role]:
      token = self.special_tokens.get(f'{name}_token')
      if token is not None and (i := self._tok.token_to_id(token)) is not None:
        return i
    raise UserError(f'{origin} has no {role} token in its vocabulary (special tokens: '
                    f'{self.special_tokens}); name one in special_tokens_map.json')

  def _word_starts(self) -> np.ndarray:
    """Whether each id begins a word: WordPiece marks continuations, BPE/Unigram starts."""
    pieces = [self._tok.id_to_token(i) or '' for i in range(self.vocab_size)]
    model = json.loads(self._tok.to_str())['model']
    if model['type'] == 'WordPiece':
      prefix = model.get('continuing_subword_prefix') or '##'
      return np.array([not p.startswith(prefix) for p in pieces])
    return np.array([p.startswith(_WORD_PREFIXES) for p in pieces])

  @classmethod
  def load(cls, path: str | paths.Path) -> 'HFTokenizer':
    """Reads a `tokenizer.json`, or a folder written by `save` (or by transformers)."""
    path = paths.path(path)
    folder, file = (path, path / 'tokenizer.json') if path.is_dir() else (path.parent, path)
    if not file.is_file():
      raise UserError(f'tokenizer file {file} does not exist')
    specials = _read_json(folder / 'special_tokens_map.json')
    return cls(file.read_text(), _token_strings(specials), origin=f'tokenizer file {file}')

  @classmethod
  def from_proto(cls, proto: bytes, origin: str = '<bytes>') -> 'HFTokenizer':
    try:
      data = json.loads(proto)
      return cls(data['tokenizer'], data['special_tokens'], origin)
    except (ValueError, KeyError, TypeError):
      raise UserError(f'{origin} is not an ssljax Hugging Face tokenizer') from None

  @property
  def model_proto(self) -> bytes:
    """The tokenizer.json and the special-token roles, as one JSON document."""
    return json.dumps({'tokenizer': self._tok.to_str(),
                       'special_tokens': self.special_tokens}).encode('utf-8')

  def save(self, directory: str | paths.Path) -> paths.Path:
    """Writes `tokenizer.json` and `special_tokens_map.json`; `load(directory)` reads them."""
    directory = paths.path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / 'special_tokens_map.json').write_text(
        json.dumps(self.special_tokens, indent=2, ensure_ascii=False))
    path = directory / 'tokenizer.json'
    path.write_text(self._tok.to_str())
    return path

  def encode(self, texts: list[str]) -> list[np.ndarray]:
    """Token ids of each text (int32, no special tokens)."""
    encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
    return [np.asarray(e.ids, np.int32) for e in encodings]

  def decode(self, ids) -> str:
    """Text of `ids`; special tokens decode to nothing."""
    return self._tok.decode([int(i) for i in np.asarray(ids).reshape(-1)],
                            skip_special_tokens=True)


def _read_json(path: paths.Path) -> dict:
  if not path.is_file():
    return {}
  try:
    return json.loads(path.read_text())
  except ValueError as e:
    raise UserError(f'{path} is not valid JSON ({e})') from None


def _token_strings(specials: dict) -> dict[str, str]:
  """`*_token` entries as strings: transformers writes either a string or {'content': ...}."""
  out = {}
  for key, value in specials.items():
    if key.endswith('_token') and value is not None:
      out[key] = value['content'] if isinstance(value, dict) else str(value)
  return out


def from_hf_folder(folder: paths.Path, model_type: str) -> HFTokenizer:
  """The tokenizer of a Hugging Face model folder, as transformers would build it."""
  settings = _read_json(folder / 'tokenizer_config.json')
  specials = (DEFAULT_SPECIAL_TOKENS.get(model_type, {}) | _token_strings(settings)
              | _token_strings(_read_json(folder / 'special_tokens_map.json')))
  if (folder / 'tokenizer.json').is_file():
    tok = tokenizers.Tokenizer.from_str((folder / 'tokenizer.json').read_text())
  elif (folder / 'vocab.txt').is_file():
    tok = _wordpiece(folder / 'vocab.txt', settings, specials['unk_token'])
  elif (folder / 'vocab.json').is_file() and (folder / 'merges.txt').is_file():
    tok = _byte_level_bpe(folder, settings)
  elif (folder / 'spiece.model').is_file():
    tok = unigram_from_sentencepiece(
        (folder / 'spiece.model').read_bytes(), albert_quotes=True,
        lowercase=settings.get('do_lower_case', True),
        strip_accents=not settings.get('keep_accents', False))
  else:
    raise UserError(f'{folder} has no tokenizer: expected tokenizer.json, vocab.txt, '
                    'vocab.json + merges.txt, or spiece.model')
  _mark_special(tok, specials.values())
  if tok.post_processor is None and model_type not in CAUSAL:
    tok.post_processor = _add_cls_sep(tok, specials, roberta=model_type == 'roberta')
  return HFTokenizer(tok.to_str(), specials, origin=f'the tokenizer in {folder}')


def from_sentencepiece(tokenizer, add_cls_sep: bool = True) -> HFTokenizer:
  """An ssljax sentencepiece tokenizer as a Hugging Face one (for export).

  A causal model reads plain text, so its tokenizer adds no [CLS]/[SEP] (`add_cls_sep`).
  """
  tok = unigram_from_sentencepiece(tokenizer.model_proto, albert_quotes=False,
                                   lowercase=False, strip_accents=False)
  specials = dict(zip([f'{r}_token' for r in ROLES], SPECIAL_TOKENS))
  _mark_special(tok, specials.values())
  if add_cls_sep:
    tok.post_processor = _add_cls_sep(tok, specials)
  else:  # a causal model reads [SEP] between texts: tools start, stop and score at it
    specials |= {'bos_token': specials['sep_token'], 'eos_token': specials['sep_token']}
  return HFTokenizer(tok.to_str(), specials, origin='the ssljax sentencepiece tokenizer')


def with_cls_sep(tokenizer: HFTokenizer) -> HFTokenizer:
  """`tokenizer` adding its [CLS] and [SEP] as ssljax's task rows have them (`[CLS] A
  [SEP]`, `[CLS] A [SEP] B [SEP]`): a causal model's sequence classifier reads them."""
  tok = tokenizers.Tokenizer.from_str(tokenizer._tok.to_str())
  tok.post_processor = _add_cls_sep(tok, {'cls_token': tok.id_to_token(tokenizer.cls_id),
                                          'sep_token': tok.id_to_token(tokenizer.sep_id)})
  return HFTokenizer(tok.to_str(), tokenizer.special_tokens, origin='the exported tokenizer')


def _add_cls_sep(tok, specials, roberta: bool = False):
  """`[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]`, as transformers' tokenizers add them.

  RoBERTa puts two separators between the segments and has a single segment type.
  """
  cls, sep = specials['cls_token'], specials['sep_token']
  pair = f'{cls} $A {sep} {sep} $B {sep}' if roberta else f'{cls} $A {sep} $B:1 {sep}:1'
  return processors.TemplateProcessing(
      single=f'{cls} $A {sep}', pair=pair,
      special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])


def _mark_special(tok: tokenizers.Tokenizer, tokens):
  """Special tokens are matched whole, before normalisation, as transformers does."""
  present = [t for t in dict.fromkeys(tokens) if tok.token_to_id(t) is not None]
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                          for t in present])


def _wordpiece(vocab_file, settings, unk_token) -> tokenizers.Tokenizer:
  """BERT's WordPiece from vocab.txt, with tokenizer_config.json's casing options."""
  vocab = {line.rstrip('\n'): i for i, line in
           enumerate(vocab_file.read_text(encoding='utf-8').splitlines(keepends=True))}
  tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token=unk_token))
  tok.normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=settings.get('tokenize_chinese_chars', True),
      strip_accents=settings.get('strip_accents'),
      lowercase=settings.get('do_lower_case', True))
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece(prefix='##')
  return tok


def _byte_level_bpe(folder, settings) -> tokenizers.Tokenizer:
  """GPT-2 / RoBERTa byte-level BPE from vocab.json + merges.txt."""
  vocab = json.loads(paths.read_utf8(folder / 'vocab.json'))
  lines = paths.read_utf8(folder / 'merges.txt').splitlines()
  merges = [(a, b) for a, b in (line.split(' ') for line in lines
                                if line and not line.startswith('#version'))]
  tok = tokenizers.Tokenizer(models.BPE(vocab, merges, continuing_subword_prefix='',
                                        end_of_word_suffix='', fuse_unk=False))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(
      add_prefix_space=settings.get('add_prefix_space', False))
  tok.decoder = decoders.ByteLevel()
  return tok


def unigram_from_sentencepiece(proto: bytes, *, albert_quotes: bool, lowercase: bool,
                               strip_accents: bool) -> tokenizers.Tokenizer:
  """A sentencepiece unigram model as a `tokenizers` Unigram, as transformers converts it.

  ALBERT's tokenizer adds quote replacement, accent stripping and lowercasing before the
  model's own normaliser; a plain sentencepiece model (ssljax's) takes none of them.
  """
  spm = spm_proto.parse(proto)
  if spm.model_type != spm_proto.UNIGRAM:
    raise UserError('only unigram sentencepiece models convert to a Hugging Face '
                    'tokenizer; train the tokenizer with tokenizer.model_type=unigram')
  vocab = [(p.piece, p.score) for p in spm.pieces]
  tok = tokenizers.Tokenizer(models.Unigram(vocab, unk_id=spm.unk_id,
                                            byte_fallback=False))
  steps: list[normalizers.Normalizer] = []
  if albert_quotes:
    steps += [normalizers.Replace('``', '"'), normalizers.Replace("''", '"')]
  if strip_accents:
    steps += [normalizers.NFKD(), normalizers.StripAccents()]
  if lowercase:
    steps.append(normalizers.Lowercase())
  if spm.precompiled_charsmap:
    steps.append(normalizers.Precompiled(spm.precompiled_charsmap))
  tok.normalizer = normalizers.Sequence(steps)
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.WhitespaceSplit(),
      pre_tokenizers.Metaspace(replacement='\u2581', prepend_scheme='always')])
  tok.decoder = decoders.Metaspace(replacement='\u2581', prepend_scheme='always')
  control = [p.piece for p in spm.pieces if p.type == spm_proto.CONTROL]
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                          for t in control])
  return tok
