"""The Hugging Face families ssljax maps, one record each: BERT, RoBERTa, ALBERT, GPT-2,
ModernBERT, Llama and GPT-NeoX.

A `Family` holds everything that differs between them (names, config.json keys, the weight
table, the task heads, and the special cases as small functions), so that `huggingface`
(import and export) and `hf_heads` (task heads) read a record instead of branching on the
model_type. A new family is a new record in FAMILIES; for export, also a case in
`model_type_of`, which picks the family an ssljax model becomes.

A family's weights are a table of (Hugging Face module, ssljax module, kind) rows; import
and export both read it, so every weight maps both ways or the table is wrong. Where a
family lays tensors out otherwise (Llama's separate gate and up projections and grouped
key/value heads, GPT-NeoX's per-head q|k|v rows), its `to_table` and `from_table`
rearrange them around the table.
"""

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ssljax import models
from ssljax.errors import UserError
from ssljax.tokenizers import huggingface as hf_tokenizer

log = logging.getLogger(__name__)

# (Hugging Face module under the prefix or at the top, the ssljax module, or the modules
# one fused tensor fills, kind: a key of huggingface's field table)
Row = tuple[str, str | tuple[str, ...], str]
# (config.json key, ssljax model key, default where config.json may omit it; None: required)
ConfigKey = tuple[str, str, Any]
# The transformers task class suffix -> (the head's module, where ssljax's pooler goes;
# None: the class has no pooler, so it is left out).
TaskHeads = Mapping[str, tuple[str, str | None]]


def _as_is(weights: dict, cfg: models.ModelConfig) -> dict:
  return weights


def _params_as_is(flat: dict, cfg: models.ModelConfig, objective: str):
  return flat, cfg


@dataclasses.dataclass(frozen=True)
class Family:
  """One Hugging Face model family, as import, export and the task heads read it."""
  model_type: str  # config.json's model_type
  name: str  # the family in messages
  class_prefix: str  # transformers' class names start with it ('Bert' + 'ForMaskedLM')
  heads_class: str  # the class whose checkpoint holds every head ssljax has
  arch: str  # the ssljax model.arch it becomes
  config_keys: tuple[ConfigKey, ...]  # mapped both ways
  activation_key: str  # the config.json key of the activation
  activations: dict[str, str]  # Hugging Face activation -> model.activation
  refused: Mapping[str, Any]  # config.json settings ssljax reproduces only at these values
  # (config.json, the values config_keys gave, file) -> what config_keys cannot say
  import_values: Callable[[dict, dict, Any], dict]
  # model.<option> -> the values the family can hold (None: any); export refuses the rest
  twin_needs: Mapping[str, tuple | None]
  # (cfg, tokenizer) -> config.json keys beyond config_keys and those every family has
  export_values: Callable[[models.ModelConfig, Any], dict]
  prefix: str  # the base model's weight names start with it
  base: tuple[Row, ...]  # base-model modules, under the prefix
  block_name: str  # the name of block i, under the prefix
  block: tuple[Row, ...]  # the modules of one block
  heads: tuple[Row, ...]  # the pretraining heads, at the top
  objective: str  # the objective an imported model pretrains with
  task_heads: TaskHeads
  default_activation: str = 'gelu'  # where config.json has no activation_key
  output: str | None = None  # the untied output table; None: the family always ties it
  nsp_head: str | None = None  # the tensor that makes an imported model's objective mlm_nsp
  # the module (dense, activation, norm) the task classes put before their classifier, as
  # `finetune.head=mlp` does (ModernBertPredictionHead); None: the classifier reads the
  # pooled or per-position states directly (finetune.head=linear)
  task_transform: str | None = None
  # the poolings the sequence classifier computes, with the config.json settings that
  # select each; None: the fine-tuning default (cls for an encoder, last for a decoder)
  sequence_poolings: Mapping[str, Mapping[str, Any]] | None = None
  # Hugging Face tensors <-> the layout the table reads (import, export)
  to_table: Callable[[dict, models.ModelConfig], dict] = _as_is
  from_table: Callable[[dict, models.ModelConfig], dict] = _as_is
  # (flat params, cfg, objective) -> what the table writes, and the cfg it reads them with
  export_params: Callable[[dict, models.ModelConfig, str],
                          tuple[dict, models.ModelConfig]] = _params_as_is

  @property
  def causal(self) -> bool:
    """A causal LM: no [CLS]/[SEP] in its tokenizer, a generation_config.json on export."""
    return self.model_type in hf_tokenizer.CAUSAL

  @property
  def poolings(self) -> Mapping[str, Mapping[str, Any]]:
    """`sequence_poolings`, or the one pooling the family's sequence classifier computes."""
    return self.sequence_poolings or {'last' if self.causal else 'cls': {}}

  @property
  def token_types(self) -> bool:
    """Whether the family's models read segment ids (ModernBERT's and the decoders' do not)."""
    return any(ours == 'embeddings.segment' for _, ours, _ in self.base)

  @property
  def pooler(self) -> str | None:
    """The pooler's module in the exported weights (None: the family has none)."""
    return next((f'{self.prefix}.{hf}' for hf, ours, _ in self.base if ours == 'pooler'), None)


def model_type_of(cfg: models.ModelConfig) -> str:
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


def refuse_unless(hf: dict, wanted: Mapping[str, Any], file):
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


def _task_heads(sequence: tuple[str, str | None], tokens: str = 'classifier') -> TaskHeads:
  """The heads of the three task classes, of which the sequence head and the token
  classifier's name differ between families."""
  return {'ForSequenceClassification': sequence, 'ForTokenClassification': (tokens, None),
          'ForQuestionAnswering': ('qa_outputs', None)}


# ---------------------------------------------------------------------------------------
# Shared between families

_PLAIN = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh', 'gelu_pytorch_tanh': 'gelu_tanh'}
_SIZES: tuple[ConfigKey, ...] = (
    ('vocab_size', 'vocab_size', None), ('hidden_size', 'hidden_size', None),
    ('num_hidden_layers', 'num_layers', None), ('num_attention_heads', 'num_heads', None),
    ('intermediate_size', 'mlp_dim', None),
)
_REFUSED = {'is_decoder': False, 'add_cross_attention': False}
# Settings the post-LN families and GPT-2 may name and ssljax computes only one way.
_CLASSIC_REFUSED = _REFUSED | {
    'position_embedding_type': 'absolute', 'scale_attn_weights': True,
    'scale_attn_by_inverse_layer_idx': False, 'inner_group_num': 1, 'tie_word_embeddings': True}
# What the learned-position families can hold ('embed_size' 0 stands for E = H).
_CLASSIC_TWIN: dict[str, tuple | None] = {
    'positions': ('learned',), 'activation': ('gelu', 'gelu_tanh'), 'use_bias': (True,),
    'norm': ('layer',), 'tie_embeddings': (True,), 'share_layers': (False,),
    'embed_size': (0,)}


def _rotary_values(hf: dict, values: dict, file, tied: bool) -> dict:
  """ModernBERT, Llama and GPT-NeoX: pre-norm, rotary, no learned positions; `tied`: the
  family's tie_word_embeddings default."""
  if hf.get('head_dim') not in (None, values['hidden_size'] // values['num_heads']):
    raise UserError(f'{file}: head_dim={hf["head_dim"]} is not hidden_size / '
                    'num_attention_heads, which ssljax attention assumes')
  return {'pre_ln': True, 'positions': 'rope',
          'tie_embeddings': bool(hf.get('tie_word_embeddings', tied))}


def _no_values(*args) -> dict:
  return {}


# ---------------------------------------------------------------------------------------
# BERT and RoBERTa

_BERT_KEYS: tuple[ConfigKey, ...] = _SIZES + (
    ('max_position_embeddings', 'max_len', 512),
    ('type_vocab_size', 'type_vocab_size', 2), ('layer_norm_eps', 'layer_norm_eps', 1e-12),
    ('hidden_dropout_prob', 'dropout_rate', 0.1),
    ('attention_probs_dropout_prob', 'attention_dropout_rate', 0.1),
)
_BERT_EMBEDDINGS: tuple[Row, ...] = (
    ('embeddings.word_embeddings', 'embeddings.word', 'embed'),
    ('embeddings.position_embeddings', 'embeddings.position', 'embed'),
    ('embeddings.token_type_embeddings', 'embeddings.segment', 'embed'),
    ('embeddings.LayerNorm', 'embeddings.norm', 'norm'),
)

_BERT = Family(
    model_type='bert', name='BERT', class_prefix='Bert', heads_class='BertForPreTraining',
    arch='bert', config_keys=_BERT_KEYS, activation_key='hidden_act', activations=_PLAIN,
    refused=_CLASSIC_REFUSED, import_values=_no_values,
    twin_needs=_CLASSIC_TWIN | {'pre_ln': (False,)}, export_values=_no_values,
    prefix='bert', base=_BERT_EMBEDDINGS + (('pooler.dense', 'pooler', 'linear'),),
    block_name='encoder.layer.{}',
    block=(
        ('attention.self.query', 'query', 'linear'), ('attention.self.key', 'key', 'linear'),
        ('attention.self.value', 'value', 'linear'),
        ('attention.output.dense', 'attention_out', 'linear'),
        ('attention.output.LayerNorm', 'attention_norm', 'norm'),
        ('intermediate.dense', 'mlp_in', 'linear'), ('output.dense', 'mlp_out', 'linear'),
        ('output.LayerNorm', 'mlp_norm', 'norm')),
    heads=(('cls.predictions.transform.dense', 'mlm_head.transform', 'linear'),
           ('cls.predictions.transform.LayerNorm', 'mlm_head.norm', 'norm'),
           ('cls.predictions', 'mlm_head', 'bias'),
           ('cls.seq_relationship', 'sentence_head', 'linear')),
    objective='mlm', nsp_head='cls.seq_relationship.weight',
    task_heads=_task_heads(('classifier', 'bert.pooler.dense')))

# The bert architecture with position_offset 2: its positions start after the padding id.
_ROBERTA = dataclasses.replace(
    _BERT, model_type='roberta', name='RoBERTa', class_prefix='Roberta',
    heads_class='RobertaForMaskedLM', prefix='roberta',
    import_values=lambda hf, values, file: {'position_offset': hf.get('pad_token_id', 1) + 1},
    export_values=lambda cfg, tokenizer: {'pad_token_id': cfg.position_offset - 1},
    heads=(('lm_head.dense', 'mlm_head.transform', 'linear'),
           ('lm_head.layer_norm', 'mlm_head.norm', 'norm'), ('lm_head', 'mlm_head', 'bias')),
    nsp_head=None,
    task_heads=_task_heads(('classifier.out_proj', 'classifier.dense')))


# ---------------------------------------------------------------------------------------
# ALBERT


def _albert_values(hf: dict, values: dict, file) -> dict:
  groups = hf.get('num_hidden_groups', 1)
  if groups not in (1, values['num_layers']):
    raise UserError(f'{file}: num_hidden_groups={groups} is not supported; ssljax shares '
                    'one layer (1) or none (num_hidden_layers)')
  if values['embed_size'] == values['hidden_size']:
    raise UserError(f'{file}: embedding_size equals hidden_size; ssljax ALBERT projects '
                    'embeddings only when they are smaller')
  return {'share_layers': groups == 1}


def _identity_projection(flat: dict, cfg: models.ModelConfig, objective: str):
  """ALBERT always projects E -> H; with E = H ssljax has no projection: it is the identity."""
  if ('embeddings', 'project', 'kernel') in flat:
    return flat, cfg
  return flat | {('embeddings', 'project', 'kernel'): np.eye(cfg.hidden_size, dtype=np.float32),
                 ('embeddings', 'project', 'bias'): np.zeros(cfg.hidden_size, np.float32)}, cfg


_ALBERT = Family(
    model_type='albert', name='ALBERT', class_prefix='Albert',
    heads_class='AlbertForPreTraining', arch='albert',
    config_keys=_BERT_KEYS + (('embedding_size', 'embed_size', 128),),
    activation_key='hidden_act', activations=_PLAIN, refused=_CLASSIC_REFUSED,
    import_values=_albert_values,
    twin_needs=_CLASSIC_TWIN | {'pre_ln': (False,), 'share_layers': (False, True),
                                'embed_size': None},
    export_values=lambda cfg, tokenizer: {
        'embedding_size': cfg.embed_size or cfg.hidden_size, 'inner_group_num': 1,
        'num_hidden_groups': 1 if cfg.share_layers else cfg.num_layers},
    prefix='albert',
    base=_BERT_EMBEDDINGS + (
        ('encoder.embedding_hidden_mapping_in', 'embeddings.project', 'linear'),
        ('pooler', 'pooler', 'linear')),
    block_name='encoder.albert_layer_groups.{}.albert_layers.0',
    block=(
        ('attention.query', 'query', 'linear'), ('attention.key', 'key', 'linear'),
        ('attention.value', 'value', 'linear'), ('attention.dense', 'attention_out', 'linear'),
        ('attention.LayerNorm', 'attention_norm', 'norm'), ('ffn', 'mlp_in', 'linear'),
        ('ffn_output', 'mlp_out', 'linear'), ('full_layer_layer_norm', 'mlp_norm', 'norm')),
    heads=(('predictions.dense', 'mlm_head.transform', 'linear'),
           ('predictions.LayerNorm', 'mlm_head.norm', 'norm'),
           ('predictions', 'mlm_head', 'bias'),
           ('sop_classifier.classifier', 'sentence_head', 'linear')),
    objective='mlm_sop', task_heads=_task_heads(('classifier', 'albert.pooler')),
    export_params=_identity_projection)


# ---------------------------------------------------------------------------------------
# GPT-2

_GPT2 = Family(
    model_type='gpt2', name='GPT-2', class_prefix='GPT2', heads_class='GPT2LMHeadModel',
    arch='gpt',
    config_keys=(
        ('vocab_size', 'vocab_size', None), ('n_embd', 'hidden_size', None),
        ('n_layer', 'num_layers', None), ('n_head', 'num_heads', None),
        ('n_positions', 'max_len', 1024), ('layer_norm_epsilon', 'layer_norm_eps', 1e-5),
        ('resid_pdrop', 'dropout_rate', 0.1), ('attn_pdrop', 'attention_dropout_rate', 0.1)),
    activation_key='activation_function', activations=_PLAIN, default_activation='gelu_new',
    refused=_CLASSIC_REFUSED,
    import_values=lambda hf, values, file: {
        'mlp_dim': hf.get('n_inner') or 4 * values['hidden_size'], 'pre_ln': True},
    twin_needs=_CLASSIC_TWIN,
    export_values=lambda cfg, tokenizer: {'n_inner': cfg.mlp_dim,
                                          'embd_pdrop': cfg.dropout_rate},
    prefix='transformer',
    base=(('wte', 'embeddings.word', 'embed'), ('wpe', 'embeddings.position', 'embed'),
          ('ln_f', 'final_norm', 'norm')),
    block_name='h.{}',
    block=(
        ('ln_1', 'attention_norm', 'norm'),
        ('attn.c_attn', ('query', 'key', 'value'), 'conv1d'),  # one fused q|k|v projection
        ('attn.c_proj', 'attention_out', 'conv1d'), ('ln_2', 'mlp_norm', 'norm'),
        ('mlp.c_fc', 'mlp_in', 'conv1d'), ('mlp.c_proj', 'mlp_out', 'conv1d')),
    heads=(), objective='clm', task_heads=_task_heads(('score', None)))


# ---------------------------------------------------------------------------------------
# ModernBERT


def _modernbert_values(hf: dict, values: dict, file) -> dict:
  out = _rotary_values(hf, values, file, tied=True)
  biases = {k: hf.get(k, d) for k, d in (('norm_bias', False), ('attention_bias', False),
                                         ('mlp_bias', False), ('classifier_bias', False),
                                         ('decoder_bias', True))}
  if len(set(biases.values())) > 1:
    raise UserError(f'{file}: biases {biases} differ between layers; ssljax has all of '
                    'them or none (model.use_bias)')
  refuse_unless(hf, {'classifier_activation': hf.get('hidden_activation', 'gelu')}, file)
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


def _modernbert_config(cfg: models.ModelConfig, tokenizer) -> dict:
  rope = {'rope_type': 'default', 'rope_theta': cfg.rope_base}
  return {'norm_bias': cfg.use_bias, 'attention_bias': cfg.use_bias,
          'mlp_bias': cfg.use_bias, 'classifier_bias': cfg.use_bias,
          'decoder_bias': cfg.use_bias, 'classifier_activation': 'gelu',
          'embedding_dropout': cfg.dropout_rate, 'global_attn_every_n_layers': 1,
          'layer_types': ['full_attention'] * cfg.num_layers,
          'rope_parameters': {'full_attention': rope, 'sliding_attention': rope},
          'cls_token_id': tokenizer.cls_id, 'sep_token_id': tokenizer.sep_id}


def _fold_segment(flat: dict, cfg: models.ModelConfig, objective: str):
  """ModernBERT has no token types: segment 0's embedding, which every single text reads,
  joins the word embedding, and the logits keep reading the word embedding alone (an
  untied decoder). Exact for single texts; a text pair reads as one segment, and the
  sentence-pair head is not exported (ModernBertForMaskedLM has none)."""
  if ('embeddings', 'segment', 'embedding') not in flat:
    return flat, cfg
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


_MODERNBERT = Family(
    model_type='modernbert', name='ModernBERT', class_prefix='ModernBert',
    heads_class='ModernBertForMaskedLM', arch='bert',
    config_keys=_SIZES + (
        ('max_position_embeddings', 'max_len', 8192), ('norm_eps', 'layer_norm_eps', 1e-5),
        ('mlp_dropout', 'dropout_rate', 0.0),
        ('attention_dropout', 'attention_dropout_rate', 0.0)),
    activation_key='hidden_activation', activations={'gelu': 'geglu'}, refused=_REFUSED,
    import_values=_modernbert_values,
    twin_needs={'pre_ln': (True,), 'positions': ('rope',), 'activation': ('geglu',),
                'norm': ('layer',), 'first_attention_norm': (False,),
                'share_layers': (False,), 'embed_size': (0,), 'position_offset': (0,)},
    export_values=_modernbert_config, prefix='model',
    base=(('embeddings.tok_embeddings', 'embeddings.word', 'embed'),
          ('embeddings.norm', 'embeddings.norm', 'norm'),
          ('final_norm', 'final_norm', 'norm')),
    block_name='layers.{}',
    block=(  # block 0 has no attn_norm (model.first_attention_norm=False)
        ('attn_norm', 'attention_norm', 'norm'),
        ('attn.Wqkv', ('query', 'key', 'value'), 'linear'),
        ('attn.Wo', 'attention_out', 'linear'), ('mlp_norm', 'mlp_norm', 'norm'),
        ('mlp.Wi', 'mlp_in', 'linear'), ('mlp.Wo', 'mlp_out', 'linear')),  # Wi: gate | value
    heads=(('head.dense', 'mlm_head.transform', 'linear'),
           ('head.norm', 'mlm_head.norm', 'norm'), ('decoder', 'mlm_head', 'bias')),
    output='decoder', objective='mlm',
    task_heads={suffix: ('classifier', None) for suffix in (
        'ForSequenceClassification', 'ForTokenClassification', 'ForQuestionAnswering')},
    task_transform='head',
    # mean first: the fine-tuning default (from the README demo's checkpoint, SST-2 with
    # 1,000 examples, 3 seeds: mean 0.618 pretrained / 0.646 scratch, first 0.598 / 0.614)
    sequence_poolings={'mean': {'classifier_pooling': 'mean'},
                       'first': {'classifier_pooling': 'cls'}},
    export_params=_fold_segment)


# ---------------------------------------------------------------------------------------
# Llama

_GATE = re.compile(r'(.*\.mlp\.)gate_proj\.(weight|bias)$')
_KV = re.compile(r'\.self_attn\.[kv]_proj\.(weight|bias)$')


def _llama_values(hf: dict, values: dict, file) -> dict:
  out = _rotary_values(hf, values, file, tied=False)
  if hf.get('attention_bias', False) != hf.get('mlp_bias', False):
    raise UserError(f'{file}: attention_bias={hf.get("attention_bias", False)} and '
                    f'mlp_bias={hf.get("mlp_bias", False)} differ; ssljax has both or neither')
  heads = values['num_heads']
  kv_heads = hf.get('num_key_value_heads') or heads
  if heads % kv_heads:
    raise UserError(f'{file}: num_attention_heads={heads} is not a multiple of '
                    f'num_key_value_heads={kv_heads}')
  params = hf.get('rope_parameters') or hf.get('rope_scaling')
  return out | {'norm': 'rms', 'use_bias': bool(hf.get('attention_bias', False)),
                'dropout_rate': 0.0,
                'rope_base': _rope_theta(params, file, hf.get('rope_theta', 10000.0))}


def _repeat_heads(rows, head_dim: int, heads: int):
  """kv_heads x head_dim rows as heads x head_dim: query head h reads key head
  h // (heads / kv_heads), as transformers' repeat_kv has it."""
  kv = rows.reshape(-1, head_dim, *rows.shape[1:])
  if heads % kv.shape[0]:
    raise UserError(f'{kv.shape[0]} key/value heads do not divide {heads} query heads')
  return np.repeat(kv, heads // kv.shape[0], axis=0).reshape(heads * head_dim, *rows.shape[1:])


def _llama_to_table(weights: dict, cfg: models.ModelConfig) -> dict:
  """The gate and up projections as one `gate_up_proj` (gate | up, as ssljax's gated MLP
  splits its input layer), and grouped key/value heads repeated for each query head they
  serve (exact: ssljax has one key head per query head)."""
  weights, d = dict(weights), cfg.hidden_size // cfg.num_heads
  for name in list(weights):
    if (gate := _GATE.match(name)) and (up := name.replace('gate_proj', 'up_proj')) in weights:
      weights[f'{gate[1]}gate_up_proj.{gate[2]}'] = np.concatenate(
          [weights.pop(name), weights.pop(up)])
    elif _KV.search(name) and weights[name].shape[0] != cfg.hidden_size:
      weights[name] = _repeat_heads(weights[name], d, cfg.num_heads)
  return weights


def _llama_from_table(weights: dict, cfg: models.ModelConfig) -> dict:
  """`gate_up_proj` as Llama's gate and up projections (every head keeps its own key head)."""
  out = {}
  for name, value in weights.items():
    if '.mlp.gate_up_proj.' in name:
      gate, up = np.split(value, 2)
      out[name.replace('gate_up_proj', 'gate_proj')] = np.ascontiguousarray(gate)
      out[name.replace('gate_up_proj', 'up_proj')] = np.ascontiguousarray(up)
    else:
      out[name] = value
  return out


_LLAMA = Family(
    model_type='llama', name='Llama', class_prefix='Llama', heads_class='LlamaForCausalLM',
    arch='gpt',
    config_keys=_SIZES + (
        ('max_position_embeddings', 'max_len', 2048), ('rms_norm_eps', 'layer_norm_eps', 1e-6),
        ('attention_dropout', 'attention_dropout_rate', 0.0)),
    activation_key='hidden_act', activations={'silu': 'swiglu'}, default_activation='silu',
    refused=_REFUSED, import_values=_llama_values,
    twin_needs={'positions': ('rope',), 'activation': ('swiglu',), 'norm': ('rms',),
                'share_layers': (False,), 'embed_size': (0,)},
    export_values=lambda cfg, tokenizer: {
        'num_key_value_heads': cfg.num_heads, 'head_dim': cfg.hidden_size // cfg.num_heads,
        'attention_bias': cfg.use_bias, 'mlp_bias': cfg.use_bias,
        'rope_parameters': {'rope_type': 'default', 'rope_theta': cfg.rope_base}},
    prefix='model',
    base=(('embed_tokens', 'embeddings.word', 'embed'), ('norm', 'final_norm', 'norm')),
    block_name='layers.{}',
    block=(
        ('input_layernorm', 'attention_norm', 'norm'), ('self_attn.q_proj', 'query', 'linear'),
        ('self_attn.k_proj', 'key', 'linear'), ('self_attn.v_proj', 'value', 'linear'),
        ('self_attn.o_proj', 'attention_out', 'linear'),
        ('post_attention_layernorm', 'mlp_norm', 'norm'),
        ('mlp.gate_up_proj', 'mlp_in', 'linear'),  # gate_proj | up_proj (_llama_to_table)
        ('mlp.down_proj', 'mlp_out', 'linear')),
    heads=(), output='lm_head', objective='clm',
    task_heads=_task_heads(('score', None), tokens='score'),
    to_table=_llama_to_table, from_table=_llama_from_table)


# ---------------------------------------------------------------------------------------
# GPT-NeoX

_QKV_PER_HEAD = re.compile(r'\.attention\.query_key_value\.(weight|bias)$')


def _neox_values(hf: dict, values: dict, file) -> dict:
  out = _rotary_values(hf, values, file, tied=False)
  refuse_unless(hf, {'use_parallel_residual': False, 'attention_bias': True}, file)
  fraction = (hf.get('rope_parameters') or {}).get('partial_rotary_factor',
                                                   hf.get('rotary_pct', 1.0))
  if fraction != 1.0:
    raise UserError(f'{file}: partial_rotary_factor={fraction}; ssljax rotates every '
                    'dimension of a head (1.0)')
  params = hf.get('rope_parameters') or hf.get('rope_scaling')
  return out | {'rope_base': _rope_theta(params, file, hf.get('rope_theta', hf.get(
      'rotary_emb_base', 10000.0)))}


def _neox_to_table(weights: dict, cfg: models.ModelConfig) -> dict:
  """The per-head q|k|v rows as q, k and v blocks, and the older `embed_out` named lm_head."""
  weights, d = dict(weights), cfg.hidden_size // cfg.num_heads
  for name, value in weights.items():
    if _QKV_PER_HEAD.search(name):
      rows = value.reshape(cfg.num_heads, 3, d, *value.shape[1:])
      weights[name] = rows.swapaxes(0, 1).reshape(value.shape)
  if 'embed_out.weight' in weights:
    weights['lm_head.weight'] = weights.pop('embed_out.weight')
  return weights


def _neox_from_table(weights: dict, cfg: models.ModelConfig) -> dict:
  """q, k and v blocks as GPT-NeoX's per-head q|k|v rows."""
  out, d = {}, cfg.hidden_size // cfg.num_heads
  for name, value in weights.items():
    if _QKV_PER_HEAD.search(name):
      rows = value.reshape(3, cfg.num_heads, d, *value.shape[1:])
      value = np.ascontiguousarray(rows.swapaxes(0, 1).reshape(value.shape))
    out[name] = value
  return out


_GPT_NEOX = Family(
    model_type='gpt_neox', name='GPT-NeoX', class_prefix='GPTNeoX',
    heads_class='GPTNeoXForCausalLM', arch='gpt',
    config_keys=_SIZES + (
        ('max_position_embeddings', 'max_len', 2048), ('layer_norm_eps', 'layer_norm_eps', 1e-5),
        ('hidden_dropout', 'dropout_rate', 0.0),
        ('attention_dropout', 'attention_dropout_rate', 0.0)),
    activation_key='hidden_act', activations=_PLAIN, refused=_REFUSED,
    import_values=_neox_values,
    twin_needs=_CLASSIC_TWIN | {'positions': ('rope',), 'tie_embeddings': (True, False)},
    export_values=lambda cfg, tokenizer: {
        'use_parallel_residual': False, 'attention_bias': True, 'rotary_pct': 1.0,
        'rope_parameters': {'rope_type': 'default', 'rope_theta': cfg.rope_base,
                            'partial_rotary_factor': 1.0}},
    prefix='gpt_neox',
    base=(('embed_in', 'embeddings.word', 'embed'),
          ('final_layer_norm', 'final_norm', 'norm')),
    block_name='layers.{}',
    block=(
        ('input_layernorm', 'attention_norm', 'norm'),
        ('attention.query_key_value', ('query', 'key', 'value'), 'linear'),  # _neox_to_table
        ('attention.dense', 'attention_out', 'linear'),
        ('post_attention_layernorm', 'mlp_norm', 'norm'),
        ('mlp.dense_h_to_4h', 'mlp_in', 'linear'), ('mlp.dense_4h_to_h', 'mlp_out', 'linear')),
    heads=(), output='lm_head', objective='clm', task_heads=_task_heads(('score', None)),
    to_table=_neox_to_table, from_table=_neox_from_table)


FAMILIES = {f.model_type: f for f in (_BERT, _ROBERTA, _ALBERT, _GPT2, _MODERNBERT, _LLAMA,
                                      _GPT_NEOX)}
