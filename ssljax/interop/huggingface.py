"""Hugging Face checkpoints in and out: BERT, RoBERTa, ALBERT, GPT-2, ModernBERT, Llama
and GPT-NeoX.

A Hugging Face model folder (`config.json`, `model.safetensors` or `pytorch_model.bin`, and
a tokenizer) becomes an ssljax model, or a step-0 checkpoint that `ssljax pretrain` can
start from (`train.init_from`) and `pretrained.load` reads. `export` writes the reverse: a
folder transformers loads with `AutoModel` and with the pretraining-head class.

What differs between the families is their record in `families`: config keys, the weight
table both directions read, and their special cases. RoBERTa is the ssljax `bert`
architecture with `position_offset` 2 (its positions start after the padding id); export
writes RoBERTa for a `bert` model with a nonzero offset. A pre-LN `bert` is ModernBERT, a
rotary `gpt` Llama (RMSNorm, SwiGLU) or GPT-NeoX. docs/interop.md has the user's view.
"""

import dataclasses
import io
import json
import logging
import re
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import safetensors
import safetensors.numpy
from flax import nnx, traverse_util

from ssljax import checkpoint, config as config_lib, models, paths, pretrained, tokenizers
from ssljax.errors import UserError
from ssljax.interop.families import FAMILIES, Family, Row, model_type_of, refuse_unless
from ssljax.pretrain import optimizer
from ssljax.pretrain.state import TrainState
from ssljax.tokenizers import huggingface as hf_tokenizer

log = logging.getLogger(__name__)

MODEL_TYPES = tuple(FAMILIES)

# How each kind of module's tensors map: (HF suffix, ssljax leaf, transpose).
# torch Linear weights are (out, in), ssljax kernels and GPT-2's Conv1D weights (in, out).
# A bias ssljax does not have (model.use_bias=False, RMSNorm) maps to no tensor.
_FIELDS = {
    'linear': (('weight', 'kernel', True), ('bias', 'bias', False)),
    'conv1d': (('weight', 'kernel', False), ('bias', 'bias', False)),
    'norm': (('weight', 'scale', False), ('bias', 'bias', False)),
    'embed': (('weight', 'embedding', False),),
    'bias': (('bias', 'bias', False),),
}
# Tensors that checkpoints may carry and transformers ignores: copies of tied weights
# (the output embedding is the input embedding) and buffers.
_IGNORED = re.compile(r'(^|\.)(position_ids|decoder\.weight|decoder\.bias|attn\.bias|'
                      r'attn\.masked_bias|attention\.bias|attention\.masked_bias|inv_freq)$|'
                      r'^(lm_head|embed_out)\.weight$')


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One Hugging Face tensor and the ssljax parameters (flat paths) it fills."""
  hf: str
  ours: tuple[tuple, ...]
  transpose: bool

  def hf_shape(self, our_shapes) -> tuple:
    shape = our_shapes[0][:-1] + (sum(s[-1] for s in our_shapes),)
    return shape[::-1] if self.transpose else shape

  def to_ours(self, array) -> list[np.ndarray]:
    array = array.T if self.transpose else array
    return np.split(array, len(self.ours), axis=-1)

  def to_hf(self, arrays) -> np.ndarray:
    array = np.concatenate(arrays, axis=-1)
    return np.ascontiguousarray(array.T if self.transpose else array)


@dataclasses.dataclass
class Report:
  """What an import did not map, in transformers' terms."""
  missing: list[str]  # HF tensors the ssljax model has but the checkpoint lacks: fresh init
  unexpected: list[str]  # checkpoint tensors that no ssljax parameter takes

  def log(self, source):
    if self.missing:
      log.warning('Some weights of the ssljax model were not initialized from %s and are '
                  'newly initialized: %s', source, self.missing)
    if self.unexpected:
      log.warning('Some weights of the model checkpoint at %s were not used: %s', source,
                  self.unexpected)


def _path(dotted: str) -> tuple:
  return tuple(int(p) if p.isdigit() else p for p in dotted.split('.'))


def _expand(hf_module: str, ours, kind: str) -> list[Tensor]:
  ours = (ours,) if isinstance(ours, str) else ours
  return [Tensor(f'{hf_module}.{suffix}', tuple(_path(m) + (leaf,) for m in ours), transpose)
              for suffix, leaf, transpose in _FIELDS[kind]]


def tensors(model_type: str, cfg: models.ModelConfig, prefixed: bool) -> list[Tensor]:
  """Every Hugging Face tensor of `model_type` with the parameters of `cfg` it maps to."""
  family = FAMILIES[model_type]
  base = f'{family.prefix}.' if prefixed else ''
  rows: list[Row] = [(base + hf, ours, kind) for hf, ours, kind in family.base]
  for i in range(1 if cfg.share_layers else cfg.num_layers):
    block = f'{base}{family.block_name.format(i)}'
    ours = 'stack.shared' if cfg.share_layers else f'stack.layers.{i}'
    for hf, leaf, kind in family.block:
      if i == 0 and leaf == 'attention_norm' and not cfg.first_attention_norm:
        continue  # block 0 reads the embedding norm's output
      leaves = (leaf,) if isinstance(leaf, str) else leaf
      rows.append((f'{block}.{hf}', tuple(f'{ours}.{x}' for x in leaves), kind))
  rows += family.heads
  if not cfg.tie_embeddings and family.output:
    rows.append((family.output, 'output', 'embed'))
  return row_tensors(rows)


def row_tensors(rows: list[Row] | tuple[Row, ...]) -> list[Tensor]:
  """The tensors of (Hugging Face module, ssljax module(s), kind) rows."""
  return [t for row in rows for t in _expand(*row)]


def _present(ts: list[Tensor], flat: dict) -> list[Tensor]:
  """The tensors whose parameters the model has (no biases under model.use_bias=False)."""
  return [t for t in ts if all(p in flat for p in t.ours)]


def hf_tensors(ts: list[Tensor], flat: dict) -> dict[str, np.ndarray]:
  """The Hugging Face tensors of `ts` that the flat ssljax params `flat` fill."""
  return {t.hf: t.to_hf([np.asarray(flat[p], np.float32) for p in t.ours])
          for t in _present(ts, flat)}


# ---------------------------------------------------------------------------------------
# Reading a Hugging Face folder


def read_config(folder: paths.Path) -> tuple[dict, str]:
  """config.json and its model_type, checked to be one ssljax maps."""
  file = folder / 'config.json'
  if not folder.is_dir():
    raise UserError(f'{folder} is not a directory')
  if not file.is_file():
    raise UserError(f'{folder} has no config.json, so it is not a Hugging Face model folder; '
                    'pass the folder that save_pretrained wrote')
  try:
    hf = json.loads(file.read_text())
  except ValueError as e:
    raise UserError(f'{file} is not valid JSON ({e})') from None
  model_type = hf.get('model_type')
  if model_type not in MODEL_TYPES:
    raise UserError(f'{file}: model_type {model_type!r} (architectures '
                    f'{hf.get("architectures")}) is not supported; ssljax imports '
                    f'{", ".join(MODEL_TYPES)}')
  return hf, model_type


def model_values(hf: dict, model_type: str, file='config.json') -> dict:
  """The ssljax `model` section that reproduces the Hugging Face config."""
  family, values = FAMILIES[model_type], {}
  for hf_key, key, default in family.config_keys:
    value = hf.get(hf_key, default)
    if value is None:
      raise UserError(f'{file} has no {hf_key}')
    values[key] = value
  activation = hf.get(family.activation_key, family.default_activation)
  if activation not in family.activations:
    raise UserError(f'{file}: activation {activation!r} is not supported; ssljax has '
                    f'{", ".join(family.activations)} for {model_type}')
  values |= {'arch': family.arch, 'activation': family.activations[activation]}
  refuse_unless(hf, family.refused, file)
  values |= family.import_values(hf, values, file)
  for key in ('dropout_rate', 'attention_dropout_rate', 'layer_norm_eps'):
    values[key] = float(values[key])
  return values


def read_weights(folder: paths.Path) -> dict[str, np.ndarray]:
  """All tensors of the folder: model.safetensors, its shards, or pytorch_model.bin."""
  index = folder / 'model.safetensors.index.json'
  if (folder / 'model.safetensors').is_file():
    files = [folder / 'model.safetensors']
  elif index.is_file():
    files = [folder / f for f in sorted(set(json.loads(index.read_text())['weight_map'].values()))]
  elif (folder / 'pytorch_model.bin').is_file():
    return _read_torch(folder / 'pytorch_model.bin')
  else:
    raise UserError(f'{folder} has no weights: expected model.safetensors, '
                    'model.safetensors.index.json or pytorch_model.bin')
  weights: dict[str, np.ndarray] = {}
  for file in files:
    try:
      weights |= safetensors.numpy.load(file.read_bytes())
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as e:
      raise UserError(f'{file} is not a readable safetensors file ({e}); it may be '
                      'truncated or unfinished: download or save it again') from None
  _refuse_non_finite(weights, folder)
  return weights


def _refuse_non_finite(weights: dict[str, np.ndarray], folder: paths.Path):
  """NaN or inf weights would give NaN features or losses without a word: one line."""
  for name, w in weights.items():
    if w.dtype.kind not in 'biu' and (bad := int(w.size - np.isfinite(
        w.astype(np.float32)).sum())):
      raise UserError(f'{folder}: tensor {name} holds {bad} non-finite values (NaN or inf); '
                      'the file is damaged or the model diverged: download or export it again')


def _read_torch(file: paths.Path) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError:
    raise UserError(f'{file} is a PyTorch pickle: install torch to read it, or save the '
                    'model as model.safetensors') from None
  try:
    state = torch.load(io.BytesIO(file.read_bytes()), map_location='cpu', weights_only=True)
  except Exception as e:  # torch raises many types for a damaged pickle
    raise UserError(f'{file} could not be read by torch ({type(e).__name__}: {e})') from None
  weights = {k: v.float().numpy() if v.is_floating_point() else v.numpy()
             for k, v in state.items()}
  _refuse_non_finite(weights, file.parent)
  return weights


def load_params(weights: dict, model_type: str, cfg: models.ModelConfig, fresh: dict,
                source) -> tuple[dict, Report]:
  """`fresh` params with every tensor the checkpoint has put in; a shape mismatch is fatal."""
  family = FAMILIES[model_type]
  weights = family.to_table(weights, cfg)
  prefixed = any(k.startswith(family.prefix + '.') for k in weights)
  flat = traverse_util.flatten_dict(jax.device_get(fresh))
  used, missing = set(), []
  for t in _present(tensors(model_type, cfg, prefixed), flat):
    if t.hf not in weights:
      missing.append(t.hf)
      continue
    expected = t.hf_shape([flat[p].shape for p in t.ours])
    if weights[t.hf].shape != expected:
      raise UserError(f'{source}: tensor {t.hf} has shape {tuple(weights[t.hf].shape)} but '
                      f'its config.json gives {expected}')
    used.add(t.hf)
    for p, value in zip(t.ours, t.to_ours(weights[t.hf])):
      flat[p] = np.asarray(value, np.float32)
  unexpected = sorted(k for k in weights if k not in used and not _IGNORED.search(k))
  return traverse_util.unflatten_dict(flat), Report(missing, unexpected)


def run_config(model_section: dict, objective: str) -> ml_collections.ConfigDict:
  """The base config with the model section and objective of an imported model."""
  c = config_lib.base()
  c.objective = objective
  c.model.update(model_section)
  c.data.seq_len = min(c.data.seq_len, c.model.max_len - c.model.position_offset)
  config_lib.validate(c)
  return c


def _objective(family: Family, weights) -> str:
  """The family's objective, or mlm_nsp where the checkpoint has BERT's NSP head."""
  if family.nsp_head is not None and family.nsp_head in weights:
    return 'mlm_nsp'
  return family.objective


def load_folder(folder, seed: int = 0) -> tuple[pretrained.Pretrained, Report]:
  """A Hugging Face model folder as an ssljax model, tokenizer and config."""
  folder = paths.path(folder)
  hf, model_type = read_config(folder)
  section = model_values(hf, model_type, folder / 'config.json')
  weights = read_weights(folder)
  config = run_config(section, _objective(FAMILIES[model_type], weights))
  tokenizer = hf_tokenizer.from_hf_folder(folder, model_type)
  model_cfg = models.ModelConfig.from_config(config.model)
  module = models.build(model_cfg, nnx.Rngs(seed))
  params, report = load_params(weights, model_type, model_cfg,
                               nnx.to_pure_dict(nnx.state(module)), folder)
  nnx.update(module, params)
  report.log(folder)
  return pretrained.Pretrained(config, model_cfg, module, tokenizer, 0), report


def import_folder(folder, out) -> Report:
  """Writes `out/checkpoints/0` (fresh optimizer state) and `out`'s tokenizer."""
  out = paths.path(out)
  if pretrained.holds_run(out):
    raise UserError(f'{out} already holds a run (checkpoints, metrics or a lock); choose a '
                    'new --out')
  pre, report = load_folder(folder)
  params = nnx.to_pure_dict(nnx.state(pre.model))
  state = TrainState.create(params, optimizer.build(pre.config.optimizer, pre.config.train.steps))
  meta = checkpoint.make_meta(pre.config, pre.tokenizer.model_proto, pre.tokenizer.kind)
  try:
    mgr = checkpoint.manager(out, keep=1, async_save=False)
    checkpoint.save(mgr, 0, state, {}, meta)
    mgr.wait_until_finished()
    mgr.close()
    with paths.staged(out) as stage:
      pre.tokenizer.save(stage)
  except BaseException:  # a full disk: nothing half imported may block the rerun
    (out / 'checkpoints').rmtree(missing_ok=True)
    raise
  return report


# ---------------------------------------------------------------------------------------
# Writing a Hugging Face folder


def check_twin(cfg: models.ModelConfig) -> str:
  """`families.model_type_of(cfg)`, or one line naming the settings that would make it
  exact."""
  model_type = model_type_of(cfg)
  settings = dataclasses.asdict(cfg) | {
      'embed_size': 0 if cfg.embed_size in (0, cfg.hidden_size) else cfg.embed_size}
  family = FAMILIES[model_type]
  wrong = {k: v for k, v in family.twin_needs.items()
           if v is not None and settings[k] not in v}
  if wrong:
    have = ', '.join(f'model.{k}={settings[k]}' for k in wrong)
    need = ', '.join(f'model.{k}={v[0]}' for k, v in wrong.items())
    raise UserError(f'this {cfg.arch} model ({have}) has no exact Hugging Face twin: '
                    f'{family.name} needs {need}')
  return model_type


def _bos_id(tokenizer, family: Family) -> int:
  """The token a text starts with: [CLS] for encoders; for a causal LM where ssljax starts
  an empty context, so that transformers' generate and lm-eval start there too."""
  if family.causal:
    return tokenizers.causal_start_id(tokenizer)
  return tokenizer.cls_id


def hf_config(cfg: models.ModelConfig, tokenizer) -> dict:
  """config.json for `cfg`; refuses what transformers' class of that name cannot hold."""
  family = FAMILIES[check_twin(cfg)]
  out = {hf_key: getattr(cfg, key) for hf_key, key, _ in family.config_keys}
  names = {ours: theirs for theirs, ours in reversed(family.activations.items())}
  out[family.activation_key] = names[cfg.activation]
  out |= {'model_type': family.model_type, 'architectures': [family.heads_class],
          'tie_word_embeddings': cfg.tie_embeddings, 'initializer_range': 0.02,
          'pad_token_id': tokenizer.pad_id, 'bos_token_id': _bos_id(tokenizer, family),
          'eos_token_id': tokenizer.sep_id}
  return out | family.export_values(cfg, tokenizer)


def _layer_list(flat: dict, cfg: models.ModelConfig) -> dict:
  """Flat params with scanned (stacked) layers split into stack.layers.i."""
  out: dict[str, np.ndarray] = {}
  for path, value in flat.items():
    if path[:2] == ('stack', 'scanned'):
      out |= {('stack', 'layers', i) + path[2:]: value[i] for i in range(cfg.num_layers)}
    else:
      out[path] = value
  return out


def export(pre: pretrained.Pretrained, out, head: Callable[[dict, dict], tuple[dict, dict]]
           | None = None, cls_sep: bool = False) -> paths.Path:
  """Writes config.json, model.safetensors and the tokenizer files into `out`, each whole
  (`paths.staged`); a folder that holds a pretraining run is refused, since its config.json
  would make `pretrained.load` take the export for the run. `head(config, weights)` gives
  the (config, weights) of a task model instead (`hf_heads`); `cls_sep`: a causal model's
  tokenizer adds [CLS] and [SEP] around a text, as ssljax's task rows have them."""
  out = paths.path(out)
  if pretrained.holds_run(out):
    raise UserError(f'{out} holds a pretraining run (checkpoints, metrics or a lock); export '
                    'into a new --out folder')
  cfg = pre.model_cfg
  config = hf_config(cfg, pre.tokenizer)
  family = FAMILIES[config['model_type']]
  flat = _layer_list(traverse_util.flatten_dict(
      jax.device_get(nnx.to_pure_dict(nnx.state(pre.model)))), cfg)
  flat, cfg = family.export_params(flat, cfg, pre.config.get('objective', 'mlm'))
  config['tie_word_embeddings'] = cfg.tie_embeddings  # ModernBERT's folded segment unties
  weights = hf_tensors(tensors(family.model_type, cfg, prefixed=True), flat)
  weights = family.from_table(weights, cfg)
  if head is not None:
    config, weights = head(config, weights)
  with paths.staged(out) as stage:
    (stage / 'model.safetensors').write_bytes(
        safetensors.numpy.save(weights, metadata={'format': 'pt'}))
    (stage / 'config.json').write_text(json.dumps(config, indent=2))
    if family.causal:  # what `generate` starts, stops and pads with
      (stage / 'generation_config.json').write_text(json.dumps(
          {k: config[k] for k in ('bos_token_id', 'eos_token_id', 'pad_token_id')}, indent=2))
    _export_tokenizer(pre.tokenizer, cfg, stage, cls_sep)
  return out


def _export_tokenizer(tokenizer, cfg, out: paths.Path, cls_sep: bool):
  """tokenizer.json for transformers; an ssljax sentencepiece model is converted to it.
  A causal model's tokenizer adds no special tokens, unless `cls_sep` (see `export`)."""
  if isinstance(tokenizer, tokenizers.SentencePieceTokenizer):
    (out / 'spiece.model').write_bytes(tokenizer.model_proto)
    tokenizer = hf_tokenizer.from_sentencepiece(tokenizer, add_cls_sep=cfg.arch != 'gpt')
  if cls_sep and cfg.arch == 'gpt':
    tokenizer = hf_tokenizer.with_cls_sep(tokenizer)
  tokenizer.save(out)
  settings = tokenizer.special_tokens | {
      'tokenizer_class': 'PreTrainedTokenizerFast',
      'model_max_length': cfg.max_len - cfg.position_offset}
  (out / 'tokenizer_config.json').write_text(json.dumps(settings, indent=2,
                                                        ensure_ascii=False))
