"""Hugging Face checkpoints in and out: BERT, RoBERTa, ALBERT, GPT-2, ModernBERT, Llama
and GPT-NeoX.

A Hugging Face model folder (`config.json`, `model.safetensors` or `pytorch_model.bin`, and
a tokenizer) becomes an ssljax model, or a step-0 checkpoint that `ssljax pretrain` can
start from (`train.init_from`) and `pretrained.load` reads. `export` writes the reverse: a
folder transformers loads with `AutoModel` and with the pretraining-head class.

Each architecture is a table of (Hugging Face module, ssljax module, kind) rows; import and
export both read it, so every weight maps both ways or the table is wrong. RoBERTa is the
ssljax `bert` architecture with `position_offset` 2 (its positions start after the padding
id); export writes RoBERTa for a `bert` model with a nonzero offset. A pre-LN `bert` is
ModernBERT, a rotary `gpt` Llama (RMSNorm, SwiGLU) or GPT-NeoX; where a family lays
tensors out otherwise (Llama's separate gate and up projections and grouped key/value
heads, GPT-NeoX's per-head q|k|v rows), `to_table_layout` and `from_table_layout`
rearrange them around the tables. docs/interop.md has the user's view.
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
from ssljax.pretrain import optimizer
from ssljax.pretrain.state import TrainState
from ssljax.tokenizers import huggingface as hf_tokenizer

log = logging.getLogger(__name__)

MODEL_TYPES = ('bert', 'roberta', 'albert', 'gpt2', 'modernbert', 'llama', 'gpt_neox')
_ARCH = {'bert': 'bert', 'roberta': 'bert', 'albert': 'albert', 'gpt2': 'gpt',
         'modernbert': 'bert', 'llama': 'gpt', 'gpt_neox': 'gpt'}
CAUSAL = hf_tokenizer.CAUSAL  # causal LMs: exported with a generation_config.json
# The class whose checkpoint holds every head ssljax has; export names it in config.json.
_HEADS_CLASS = {'bert': 'BertForPreTraining', 'roberta': 'RobertaForMaskedLM',
                'albert': 'AlbertForPreTraining', 'gpt2': 'GPT2LMHeadModel',
                'modernbert': 'ModernBertForMaskedLM', 'llama': 'LlamaForCausalLM',
                'gpt_neox': 'GPTNeoXForCausalLM'}
_PREFIX = {'bert': 'bert', 'roberta': 'roberta', 'albert': 'albert', 'gpt2': 'transformer',
           'modernbert': 'model', 'llama': 'model', 'gpt_neox': 'gpt_neox'}
_PLAIN = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh', 'gelu_pytorch_tanh': 'gelu_tanh'}
# Hugging Face activation name -> model.activation; ModernBERT's and Llama's MLPs are gated.
_ACTIVATIONS = {'bert': _PLAIN, 'roberta': _PLAIN, 'albert': _PLAIN, 'gpt2': _PLAIN,
                'gpt_neox': _PLAIN, 'modernbert': {'gelu': 'geglu'}, 'llama': {'silu': 'swiglu'}}

# (config.json key, ssljax model key, default where config.json may omit it; None: required)
_SIZES = (
    ('vocab_size', 'vocab_size', None), ('hidden_size', 'hidden_size', None),
    ('num_hidden_layers', 'num_layers', None), ('num_attention_heads', 'num_heads', None),
    ('intermediate_size', 'mlp_dim', None),
)
_BERT_KEYS = _SIZES + (
    ('max_position_embeddings', 'max_len', 512),
    ('type_vocab_size', 'type_vocab_size', 2), ('layer_norm_eps', 'layer_norm_eps', 1e-12),
    ('hidden_dropout_prob', 'dropout_rate', 0.1),
    ('attention_probs_dropout_prob', 'attention_dropout_rate', 0.1),
)
_CONFIG_KEYS = {
    'bert': _BERT_KEYS,
    'roberta': _BERT_KEYS,
    'albert': _BERT_KEYS + (('embedding_size', 'embed_size', 128),),
    'gpt2': (
        ('vocab_size', 'vocab_size', None), ('n_embd', 'hidden_size', None),
        ('n_layer', 'num_layers', None), ('n_head', 'num_heads', None),
        ('n_positions', 'max_len', 1024), ('layer_norm_epsilon', 'layer_norm_eps', 1e-5),
        ('resid_pdrop', 'dropout_rate', 0.1), ('attn_pdrop', 'attention_dropout_rate', 0.1),
    ),
    'modernbert': _SIZES + (
        ('max_position_embeddings', 'max_len', 8192), ('norm_eps', 'layer_norm_eps', 1e-5),
        ('mlp_dropout', 'dropout_rate', 0.0), ('attention_dropout', 'attention_dropout_rate', 0.0),
    ),
    'llama': _SIZES + (
        ('max_position_embeddings', 'max_len', 2048), ('rms_norm_eps', 'layer_norm_eps', 1e-6),
        ('attention_dropout', 'attention_dropout_rate', 0.0),
    ),
    'gpt_neox': _SIZES + (
        ('max_position_embeddings', 'max_len', 2048), ('layer_norm_eps', 'layer_norm_eps', 1e-5),
        ('hidden_dropout', 'dropout_rate', 0.0),
        ('attention_dropout', 'attention_dropout_rate', 0.0),
    ),
}
_ACTIVATION_KEY = {'bert': 'hidden_act', 'roberta': 'hidden_act', 'albert': 'hidden_act',
                   'gpt2': 'activation_function', 'modernbert': 'hidden_activation',
                   'llama': 'hidden_act', 'gpt_neox': 'hidden_act'}
_DEFAULT_ACTIVATION = {'gpt2': 'gelu_new', 'llama': 'silu'}  # else gelu

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
_BERT_EMBEDDINGS = (
    ('embeddings.word_embeddings', 'embeddings.word', 'embed'),
    ('embeddings.position_embeddings', 'embeddings.position', 'embed'),
    ('embeddings.token_type_embeddings', 'embeddings.segment', 'embed'),
    ('embeddings.LayerNorm', 'embeddings.norm', 'norm'),
)
# Per architecture: base-model modules (under the prefix), the name of block i, the
# modules of one block, and the heads (top level).
_BASE = {
    'bert': _BERT_EMBEDDINGS + (('pooler.dense', 'pooler', 'linear'),),
    'roberta': _BERT_EMBEDDINGS + (('pooler.dense', 'pooler', 'linear'),),
    'albert': _BERT_EMBEDDINGS + (
        ('encoder.embedding_hidden_mapping_in', 'embeddings.project', 'linear'),
        ('pooler', 'pooler', 'linear')),
    'gpt2': (('wte', 'embeddings.word', 'embed'), ('wpe', 'embeddings.position', 'embed'),
             ('ln_f', 'final_norm', 'norm')),
    'modernbert': (('embeddings.tok_embeddings', 'embeddings.word', 'embed'),
                   ('embeddings.norm', 'embeddings.norm', 'norm'),
                   ('final_norm', 'final_norm', 'norm')),
    'llama': (('embed_tokens', 'embeddings.word', 'embed'), ('norm', 'final_norm', 'norm')),
    'gpt_neox': (('embed_in', 'embeddings.word', 'embed'),
                 ('final_layer_norm', 'final_norm', 'norm')),
}
_BLOCK_NAME = {'bert': 'encoder.layer.{}', 'roberta': 'encoder.layer.{}',
               'albert': 'encoder.albert_layer_groups.{}.albert_layers.0', 'gpt2': 'h.{}',
               'modernbert': 'layers.{}', 'llama': 'layers.{}', 'gpt_neox': 'layers.{}'}
_BERT_BLOCK = (
    ('attention.self.query', 'query', 'linear'), ('attention.self.key', 'key', 'linear'),
    ('attention.self.value', 'value', 'linear'),
    ('attention.output.dense', 'attention_out', 'linear'),
    ('attention.output.LayerNorm', 'attention_norm', 'norm'),
    ('intermediate.dense', 'mlp_in', 'linear'), ('output.dense', 'mlp_out', 'linear'),
    ('output.LayerNorm', 'mlp_norm', 'norm'),
)
_BLOCK = {
    'bert': _BERT_BLOCK,
    'roberta': _BERT_BLOCK,
    'albert': (
        ('attention.query', 'query', 'linear'), ('attention.key', 'key', 'linear'),
        ('attention.value', 'value', 'linear'), ('attention.dense', 'attention_out', 'linear'),
        ('attention.LayerNorm', 'attention_norm', 'norm'), ('ffn', 'mlp_in', 'linear'),
        ('ffn_output', 'mlp_out', 'linear'), ('full_layer_layer_norm', 'mlp_norm', 'norm')),
    'gpt2': (
        ('ln_1', 'attention_norm', 'norm'),
        ('attn.c_attn', ('query', 'key', 'value'), 'conv1d'),  # one fused q|k|v projection
        ('attn.c_proj', 'attention_out', 'conv1d'), ('ln_2', 'mlp_norm', 'norm'),
        ('mlp.c_fc', 'mlp_in', 'conv1d'), ('mlp.c_proj', 'mlp_out', 'conv1d')),
    'modernbert': (  # block 0 has no attn_norm (model.first_attention_norm=False)
        ('attn_norm', 'attention_norm', 'norm'),
        ('attn.Wqkv', ('query', 'key', 'value'), 'linear'),
        ('attn.Wo', 'attention_out', 'linear'), ('mlp_norm', 'mlp_norm', 'norm'),
        ('mlp.Wi', 'mlp_in', 'linear'), ('mlp.Wo', 'mlp_out', 'linear')),  # Wi: gate | value
    'llama': (
        ('input_layernorm', 'attention_norm', 'norm'), ('self_attn.q_proj', 'query', 'linear'),
        ('self_attn.k_proj', 'key', 'linear'), ('self_attn.v_proj', 'value', 'linear'),
        ('self_attn.o_proj', 'attention_out', 'linear'),
        ('post_attention_layernorm', 'mlp_norm', 'norm'),
        ('mlp.gate_up_proj', 'mlp_in', 'linear'),  # gate_proj | up_proj (llama_layout)
        ('mlp.down_proj', 'mlp_out', 'linear')),
    'gpt_neox': (
        ('input_layernorm', 'attention_norm', 'norm'),
        ('attention.query_key_value', ('query', 'key', 'value'), 'linear'),  # neox_layout
        ('attention.dense', 'attention_out', 'linear'),
        ('post_attention_layernorm', 'mlp_norm', 'norm'),
        ('mlp.dense_h_to_4h', 'mlp_in', 'linear'), ('mlp.dense_4h_to_h', 'mlp_out', 'linear')),
}
_HEADS = {
    'bert': (('cls.predictions.transform.dense', 'mlm_head.transform', 'linear'),
             ('cls.predictions.transform.LayerNorm', 'mlm_head.norm', 'norm'),
             ('cls.predictions', 'mlm_head', 'bias'),
             ('cls.seq_relationship', 'sentence_head', 'linear')),
    'roberta': (('lm_head.dense', 'mlm_head.transform', 'linear'),
                ('lm_head.layer_norm', 'mlm_head.norm', 'norm'),
                ('lm_head', 'mlm_head', 'bias')),
    'albert': (('predictions.dense', 'mlm_head.transform', 'linear'),
               ('predictions.LayerNorm', 'mlm_head.norm', 'norm'),
               ('predictions', 'mlm_head', 'bias'),
               ('sop_classifier.classifier', 'sentence_head', 'linear')),
    'gpt2': (),
    'modernbert': (('head.dense', 'mlm_head.transform', 'linear'),
                   ('head.norm', 'mlm_head.norm', 'norm'), ('decoder', 'mlm_head', 'bias')),
    'llama': (),
    'gpt_neox': (),
}
# The output table of a model whose logits are not tied to its input embedding.
_OUTPUT = {'modernbert': 'decoder', 'llama': 'lm_head', 'gpt_neox': 'lm_head'}
# Tensors that checkpoints may carry and transformers ignores: copies of tied weights
# (the output embedding is the input embedding) and buffers.
_IGNORED = re.compile(r'(^|\.)(position_ids|decoder\.weight|decoder\.bias|attn\.bias|'
                      r'attn\.masked_bias|attention\.bias|attention\.masked_bias|inv_freq)$|'
                      r'^(lm_head|embed_out)\.weight$')
_SENTENCE_HEAD = {'bert': 'cls.seq_relationship.weight',
                  'albert': 'sop_classifier.classifier.weight'}


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
  base = f'{_PREFIX[model_type]}.' if prefixed else ''
  rows: list[tuple[str, str | tuple[str, ...], str]] = [
      (base + hf, ours, kind) for hf, ours, kind in _BASE[model_type]]
  for i in range(1 if cfg.share_layers else cfg.num_layers):
    block = f'{base}{_BLOCK_NAME[model_type].format(i)}'
    ours = 'stack.shared' if cfg.share_layers else f'stack.layers.{i}'
    for hf, leaf, kind in _BLOCK[model_type]:
      if i == 0 and leaf == 'attention_norm' and not cfg.first_attention_norm:
        continue  # block 0 reads the embedding norm's output
      leaves = (leaf,) if isinstance(leaf, str) else leaf
      rows.append((f'{block}.{hf}', tuple(f'{ours}.{x}' for x in leaves), kind))
  rows += _HEADS[model_type]
  if not cfg.tie_embeddings:
    rows.append((_OUTPUT[model_type], 'output', 'embed'))
  return [t for row in rows for t in _expand(*row)]


def _present(ts: list[Tensor], flat: dict) -> list[Tensor]:
  """The tensors whose parameters the model has (no biases under model.use_bias=False)."""
  return [t for t in ts if all(p in flat for p in t.ours)]


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
  values = {}
  for hf_key, key, default in _CONFIG_KEYS[model_type]:
    value = hf.get(hf_key, default)
    if value is None:
      raise UserError(f'{file} has no {hf_key}')
    values[key] = value
  activation = hf.get(_ACTIVATION_KEY[model_type],
                      _DEFAULT_ACTIVATION.get(model_type, 'gelu'))
  if activation not in _ACTIVATIONS[model_type]:
    raise UserError(f'{file}: activation {activation!r} is not supported; ssljax has '
                    f'{", ".join(_ACTIVATIONS[model_type])} for {model_type}')
  values |= {'arch': _ARCH[model_type], 'activation': _ACTIVATIONS[model_type][activation]}
  values |= _special_values(hf, model_type, values, file)
  for key in ('dropout_rate', 'attention_dropout_rate', 'layer_norm_eps'):
    values[key] = float(values[key])
  return values


def _refuse_unless(hf: dict, wanted: dict, file):
  """One line for the first config.json setting ssljax cannot reproduce."""
  for key, want in wanted.items():
    if hf.get(key, want) != want:
      raise UserError(f'{file}: {key}={hf[key]!r} is not supported (ssljax models have '
                      f'{key}={want!r})')


def _rope_theta(params: dict | None, file, fallback: float) -> float:
  """The rotary base of a rope_parameters dict; scaled rope types are refused."""
  params = params or {}
  if params.get('rope_type', 'default') != 'default':
    raise UserError(f'{file}: rope_type {params["rope_type"]!r} is not supported; ssljax '
                    'rotates with the plain (default) rotary embedding')
  return float(params.get('rope_theta', fallback))


def _modern_values(hf, model_type, values, file) -> dict:
  """ModernBERT, Llama and GPT-NeoX: pre-norm, rotary, no learned positions."""
  heads = values['num_heads']
  if hf.get('head_dim') not in (None, values['hidden_size'] // heads):
    raise UserError(f'{file}: head_dim={hf["head_dim"]} is not hidden_size / '
                    'num_attention_heads, which ssljax attention assumes')
  out = {'pre_ln': True, 'positions': 'rope',
         'tie_embeddings': bool(hf.get('tie_word_embeddings', model_type == 'modernbert'))}
  if model_type == 'modernbert':
    biases = {k: hf.get(k, d) for k, d in (('norm_bias', False), ('attention_bias', False),
                                           ('mlp_bias', False), ('classifier_bias', False),
                                           ('decoder_bias', True))}
    if len(set(biases.values())) > 1:
      raise UserError(f'{file}: biases {biases} differ between layers; ssljax has all of '
                      'them or none (model.use_bias)')
    _refuse_unless(hf, {'classifier_activation': hf.get('hidden_activation', 'gelu')}, file)
    layer_types = hf.get('layer_types') or [
        'full_attention' if i % hf.get('global_attn_every_n_layers', 3) == 0
        else 'sliding_attention' for i in range(values['num_layers'])]
    local = [i for i, t in enumerate(layer_types) if t != 'full_attention']
    if local:
      raise UserError(f'{file}: layers {local} attend to a local window (local_attention='
                      f'{hf.get("local_attention", 128)}); ssljax attends globally in every '
                      'layer: import a model with '
                      'global_attn_every_n_layers=1')
    params = (hf.get('rope_parameters') or {}).get('full_attention')
    return out | {'use_bias': biases['norm_bias'], 'type_vocab_size': 0,
                  'first_attention_norm': False,
                  'rope_base': _rope_theta(params, file, hf.get('global_rope_theta', 160000.0))}
  params = hf.get('rope_parameters') or hf.get('rope_scaling')
  if model_type == 'llama':
    if hf.get('attention_bias', False) != hf.get('mlp_bias', False):
      raise UserError(f'{file}: attention_bias={hf.get("attention_bias", False)} and '
                      f'mlp_bias={hf.get("mlp_bias", False)} differ; ssljax has both or neither')
    kv_heads = hf.get('num_key_value_heads') or heads
    if heads % kv_heads:
      raise UserError(f'{file}: num_attention_heads={heads} is not a multiple of '
                      f'num_key_value_heads={kv_heads}')
    return out | {'norm': 'rms', 'use_bias': bool(hf.get('attention_bias', False)),
                  'dropout_rate': 0.0,
                  'rope_base': _rope_theta(params, file, hf.get('rope_theta', 10000.0))}
  _refuse_unless(hf, {'use_parallel_residual': False, 'attention_bias': True}, file)
  fraction = (hf.get('rope_parameters') or {}).get('partial_rotary_factor',
                                                   hf.get('rotary_pct', 1.0))
  if fraction != 1.0:
    raise UserError(f'{file}: partial_rotary_factor={fraction}; ssljax rotates every '
                    'dimension of a head (1.0)')
  return out | {'rope_base': _rope_theta(params, file, hf.get('rope_theta', hf.get(
      'rotary_emb_base', 10000.0)))}


def _special_values(hf, model_type, values, file) -> dict:
  """What the shared key table cannot say: layer sharing, MLP width, position offset, and
  the modern families' norms, biases and rotary base."""
  wanted: dict[str, object] = {'is_decoder': False, 'add_cross_attention': False}
  if model_type not in ('modernbert', 'llama', 'gpt_neox'):
    wanted |= {'position_embedding_type': 'absolute', 'scale_attn_weights': True,
               'scale_attn_by_inverse_layer_idx': False, 'inner_group_num': 1,
               'tie_word_embeddings': True}
  _refuse_unless(hf, wanted, file)
  if model_type in ('modernbert', 'llama', 'gpt_neox'):
    return _modern_values(hf, model_type, values, file)
  if model_type == 'roberta':
    return {'position_offset': hf.get('pad_token_id', 1) + 1}
  if model_type == 'gpt2':
    return {'mlp_dim': hf.get('n_inner') or 4 * values['hidden_size'], 'pre_ln': True}
  if model_type == 'albert':
    groups = hf.get('num_hidden_groups', 1)
    if groups not in (1, values['num_layers']):
      raise UserError(f'{file}: num_hidden_groups={groups} is not supported; ssljax shares '
                      'one layer (1) or none (num_hidden_layers)')
    if values['embed_size'] == values['hidden_size']:
      raise UserError(f'{file}: embedding_size equals hidden_size; ssljax ALBERT projects '
                      'embeddings only when they are smaller')
    return {'share_layers': groups == 1}
  return {}


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


_GATE = re.compile(r'(.*\.mlp\.)gate_proj\.(weight|bias)$')
_KV = re.compile(r'\.self_attn\.[kv]_proj\.(weight|bias)$')
_QKV_PER_HEAD = re.compile(r'\.attention\.query_key_value\.(weight|bias)$')


def to_table_layout(weights: dict, model_type: str, cfg: models.ModelConfig) -> dict:
  """Hugging Face tensors in the layout the tables read: Llama's gate and up projections as
  one `gate_up_proj` (gate | up, as ssljax's gated MLP splits its input layer), grouped
  key/value heads repeated for each query head they serve (exact: ssljax has one key head
  per query head), GPT-NeoX's per-head q|k|v rows as q, k and v blocks, and its older
  `embed_out` named lm_head."""
  if model_type not in ('llama', 'gpt_neox'):
    return weights
  weights, d = dict(weights), cfg.hidden_size // cfg.num_heads
  for name in list(weights):
    if (gate := _GATE.match(name)) and (up := name.replace('gate_proj', 'up_proj')) in weights:
      weights[f'{gate[1]}gate_up_proj.{gate[2]}'] = np.concatenate(
          [weights.pop(name), weights.pop(up)])
    elif _KV.search(name) and weights[name].shape[0] != cfg.hidden_size:
      weights[name] = _repeat_heads(weights[name], d, cfg.num_heads)
    elif _QKV_PER_HEAD.search(name):
      rows = weights[name].reshape(cfg.num_heads, 3, d, *weights[name].shape[1:])
      weights[name] = rows.swapaxes(0, 1).reshape(weights[name].shape)
  if 'embed_out.weight' in weights:
    weights['lm_head.weight'] = weights.pop('embed_out.weight')
  return weights


def _repeat_heads(rows, head_dim: int, heads: int):
  """kv_heads x head_dim rows as heads x head_dim: query head h reads key head
  h // (heads / kv_heads), as transformers' repeat_kv has it."""
  kv = rows.reshape(-1, head_dim, *rows.shape[1:])
  if heads % kv.shape[0]:
    raise UserError(f'{kv.shape[0]} key/value heads do not divide {heads} query heads')
  return np.repeat(kv, heads // kv.shape[0], axis=0).reshape(heads * head_dim, *rows.shape[1:])


def from_table_layout(weights: dict, model_type: str, cfg: models.ModelConfig) -> dict:
  """The reverse of `to_table_layout` for export (every head keeps its own key head)."""
  if model_type not in ('llama', 'gpt_neox'):
    return weights
  out, d = {}, cfg.hidden_size // cfg.num_heads
  for name, value in weights.items():
    if '.mlp.gate_up_proj.' in name:
      gate, up = np.split(value, 2)
      out[name.replace('gate_up_proj', 'gate_proj')] = np.ascontiguousarray(gate)
      out[name.replace('gate_up_proj', 'up_proj')] = np.ascontiguousarray(up)
    elif _QKV_PER_HEAD.search(name):
      rows = value.reshape(3, cfg.num_heads, d, *value.shape[1:])
      out[name] = np.ascontiguousarray(rows.swapaxes(0, 1).reshape(value.shape))
    else:
      out[name] = value
  return out


def load_params(weights: dict, model_type: str, cfg: models.ModelConfig, fresh: dict,
                source) -> tuple[dict, Report]:
  """`fresh` params with every tensor the checkpoint has put in; a shape mismatch is fatal."""
  weights = to_table_layout(weights, model_type, cfg)
  prefixed = any(k.startswith(_PREFIX[model_type] + '.') for k in weights)
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


def _objective(model_type, weights) -> str:
  """bert -> mlm_nsp with an NSP head, else mlm; albert -> mlm_sop; causal LMs -> clm."""
  if model_type in CAUSAL:
    return 'clm'
  if model_type == 'albert':
    return 'mlm_sop'
  head = _SENTENCE_HEAD.get(model_type)
  return 'mlm_nsp' if head and head in weights else 'mlm'


def load_folder(folder, seed: int = 0) -> tuple[pretrained.Pretrained, Report]:
  """A Hugging Face model folder as an ssljax model, tokenizer and config."""
  folder = paths.path(folder)
  hf, model_type = read_config(folder)
  section = model_values(hf, model_type, folder / 'config.json')
  weights = read_weights(folder)
  config = run_config(section, _objective(model_type, weights))
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


# What each Hugging Face family can hold: model.<option> -> the values it has ('embed_size'
# 0 stands for E = H). Export refuses a model outside its family's values in one line that
# names the settings to change.
_CLASSIC: dict[str, tuple | None] = {'positions': ('learned',), 'activation': ('gelu', 'gelu_tanh'),
            'use_bias': (True,), 'norm': ('layer',), 'tie_embeddings': (True,),
            'share_layers': (False,), 'embed_size': (0,)}
_TWIN_NEEDS: dict[str, dict[str, tuple | None]] = {
    'bert': _CLASSIC | {'pre_ln': (False,)},
    'roberta': _CLASSIC | {'pre_ln': (False,)},
    'albert': _CLASSIC | {'pre_ln': (False,), 'share_layers': (False, True),
                          'embed_size': None},
    'gpt2': _CLASSIC,
    'gpt_neox': _CLASSIC | {'positions': ('rope',), 'tie_embeddings': (True, False)},
    'llama': {'positions': ('rope',), 'activation': ('swiglu',), 'norm': ('rms',),
              'share_layers': (False,), 'embed_size': (0,)},
    'modernbert': {'pre_ln': (True,), 'positions': ('rope',), 'activation': ('geglu',),
                   'norm': ('layer',), 'first_attention_norm': (False,),
                   'share_layers': (False,), 'embed_size': (0,), 'position_offset': (0,)},
}
_NAMES = {'bert': 'BERT', 'roberta': 'RoBERTa', 'albert': 'ALBERT', 'gpt2': 'GPT-2',
          'gpt_neox': 'GPT-NeoX', 'llama': 'Llama', 'modernbert': 'ModernBERT'}


def hf_model_type(cfg: models.ModelConfig) -> str:
  """The Hugging Face family an ssljax model exports as: GPT-2 (learned positions),
  Llama (RMSNorm or SwiGLU) or GPT-NeoX (the rest) for gpt; ModernBERT for a pre-LN bert,
  BERT or RoBERTa (position_offset) for a post-LN one; ALBERT."""
  if cfg.arch == 'gpt':
    if cfg.positions == 'learned':
      return 'gpt2'
    return 'llama' if cfg.norm == 'rms' or cfg.activation == 'swiglu' else 'gpt_neox'
  if cfg.arch == 'albert':
    return 'albert'
  if cfg.pre_ln:
    return 'modernbert'
  return 'roberta' if cfg.position_offset else 'bert'


def check_twin(cfg: models.ModelConfig) -> str:
  """`hf_model_type(cfg)`, or one line naming the settings that would make it exact."""
  model_type = hf_model_type(cfg)
  settings = dataclasses.asdict(cfg) | {
      'embed_size': 0 if cfg.embed_size in (0, cfg.hidden_size) else cfg.embed_size}
  wrong = {k: v for k, v in _TWIN_NEEDS[model_type].items()
           if v is not None and settings[k] not in v}
  if wrong:
    have = ', '.join(f'model.{k}={settings[k]}' for k in wrong)
    need = ', '.join(f'model.{k}={v[0]}' for k, v in wrong.items())
    raise UserError(f'this {cfg.arch} model ({have}) has no exact Hugging Face twin: '
                    f'{_NAMES[model_type]} needs {need}')
  return model_type


def _bos_id(tokenizer, model_type: str) -> int:
  """The token a text starts with: [CLS] for encoders; for a causal LM where ssljax starts
  an empty context, so that transformers' generate and lm-eval start there too."""
  if model_type in CAUSAL:
    return tokenizers.causal_start_id(tokenizer)
  return tokenizer.cls_id


def hf_config(cfg: models.ModelConfig, tokenizer) -> dict:
  """config.json for `cfg`; refuses what transformers' class of that name cannot hold."""
  model_type = check_twin(cfg)
  out = {hf_key: getattr(cfg, key) for hf_key, key, _ in _CONFIG_KEYS[model_type]}
  names = {ours: theirs for theirs, ours in reversed(_ACTIVATIONS[model_type].items())}
  out[_ACTIVATION_KEY[model_type]] = names[cfg.activation]
  out |= {'model_type': model_type, 'architectures': [_HEADS_CLASS[model_type]],
          'tie_word_embeddings': cfg.tie_embeddings, 'initializer_range': 0.02,
          'pad_token_id': tokenizer.pad_id, 'bos_token_id': _bos_id(tokenizer, model_type),
          'eos_token_id': tokenizer.sep_id}
  if model_type == 'gpt2':
    out |= {'n_inner': cfg.mlp_dim, 'embd_pdrop': cfg.dropout_rate}
  elif model_type == 'albert':
    out |= {'embedding_size': cfg.embed_size or cfg.hidden_size, 'inner_group_num': 1,
            'num_hidden_groups': 1 if cfg.share_layers else cfg.num_layers}
  elif model_type == 'roberta':
    out['pad_token_id'] = cfg.position_offset - 1  # RoBERTa derives positions from it
  elif model_type == 'modernbert':
    rope = {'rope_type': 'default', 'rope_theta': cfg.rope_base}
    out |= {'norm_bias': cfg.use_bias, 'attention_bias': cfg.use_bias,
            'mlp_bias': cfg.use_bias, 'classifier_bias': cfg.use_bias,
            'decoder_bias': cfg.use_bias, 'classifier_activation': 'gelu',
            'embedding_dropout': cfg.dropout_rate, 'global_attn_every_n_layers': 1,
            'layer_types': ['full_attention'] * cfg.num_layers,
            'rope_parameters': {'full_attention': rope, 'sliding_attention': rope},
            'cls_token_id': tokenizer.cls_id, 'sep_token_id': tokenizer.sep_id}
  elif model_type == 'llama':
    out |= {'num_key_value_heads': cfg.num_heads, 'head_dim': cfg.hidden_size // cfg.num_heads,
            'attention_bias': cfg.use_bias, 'mlp_bias': cfg.use_bias,
            'rope_parameters': {'rope_type': 'default', 'rope_theta': cfg.rope_base}}
  elif model_type == 'gpt_neox':
    out |= {'use_parallel_residual': False, 'attention_bias': True, 'rotary_pct': 1.0,
            'rope_parameters': {'rope_type': 'default', 'rope_theta': cfg.rope_base,
                                'partial_rotary_factor': 1.0}}
  return out


def _layer_list(flat: dict, cfg: models.ModelConfig) -> dict:
  """Flat params with scanned (stacked) layers split into stack.layers.i."""
  out: dict[str, np.ndarray] = {}
  for path, value in flat.items():
    if path[:2] == ('stack', 'scanned'):
      out |= {('stack', 'layers', i) + path[2:]: value[i] for i in range(cfg.num_layers)}
    else:
      out[path] = value
  return out


def _identity_projection(flat: dict, cfg: models.ModelConfig) -> dict:
  """ALBERT always projects E -> H; with E = H ssljax has no projection: it is the identity."""
  if ('embeddings', 'project', 'kernel') in flat:
    return flat
  return flat | {('embeddings', 'project', 'kernel'): np.eye(cfg.hidden_size, dtype=np.float32),
                 ('embeddings', 'project', 'bias'): np.zeros(cfg.hidden_size, np.float32)}


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
  model_type = config['model_type']
  flat = _layer_list(traverse_util.flatten_dict(
      jax.device_get(nnx.to_pure_dict(nnx.state(pre.model)))), cfg)
  if model_type == 'albert':
    flat = _identity_projection(flat, cfg)
  if model_type == 'modernbert' and ('embeddings', 'segment', 'embedding') in flat:
    flat, cfg = _fold_segment(flat, cfg, pre.config.get('objective', 'mlm'))
    config['tie_word_embeddings'] = False
  weights = {t.hf: t.to_hf([np.asarray(flat[p], np.float32) for p in t.ours])
             for t in _present(tensors(model_type, cfg, prefixed=True), flat)}
  weights = from_table_layout(weights, model_type, cfg)
  if head is not None:
    config, weights = head(config, weights)
  with paths.staged(out) as stage:
    (stage / 'model.safetensors').write_bytes(
        safetensors.numpy.save(weights, metadata={'format': 'pt'}))
    (stage / 'config.json').write_text(json.dumps(config, indent=2))
    if model_type in CAUSAL:  # what `generate` starts, stops and pads with
      (stage / 'generation_config.json').write_text(json.dumps(
          {k: config[k] for k in ('bos_token_id', 'eos_token_id', 'pad_token_id')}, indent=2))
    _export_tokenizer(pre.tokenizer, cfg, stage, cls_sep)
  return out


def _fold_segment(flat: dict, cfg: models.ModelConfig, objective: str):
  """ModernBERT has no token types: segment 0's embedding, which every single text reads,
  joins the word embedding, and the logits keep reading the word embedding alone (an
  untied decoder). Exact for single texts; a text pair reads as one segment, and the
  sentence-pair head is not exported (ModernBertForMaskedLM has none)."""
  if objective in ('mlm_nsp', 'mlm_sop'):
    log.warning('ModernBERT has no token types or sentence-pair head: the export is the MLM '
                'model, exact for single texts; the %s head and segment 1 are left out',
                objective.split('_')[1].upper())
  word = flat[('embeddings', 'word', 'embedding')]
  out = {k: v for k, v in flat.items() if k != ('embeddings', 'segment', 'embedding')}
  out[('embeddings', 'word', 'embedding')] = word + flat[('embeddings', 'segment', 'embedding')][0]
  if cfg.tie_embeddings:
    out[('output', 'embedding')] = word
  return out, dataclasses.replace(cfg, tie_embeddings=False)


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
