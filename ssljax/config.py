"""Configs as code: every key with its default, doc and constraint, loading, and
`--set key=value` overrides.

`Config` (one frozen dataclass per section, `schema.key` fields) is the single list of keys;
`base()` is its defaults as a ConfigDict. A config file under `configs/` is a Python module
with `get_config()` that starts from `base()` and overrides what differs. An unknown key, in
a file or on the command line, is an error that names the closest known key.
"""

import ast
import dataclasses
import difflib
import importlib.util
from collections.abc import Sequence

import ml_collections

from ssljax import paths, schema
from ssljax.errors import UserError
from ssljax.schema import key, section

OBJECTIVES = ('mlm', 'mlm_nsp', 'mlm_sop', 'clm')
# On patches of series (data.source=series): the MLM and CLM of arrays.
SERIES_OBJECTIVES = ('masked_patch', 'next_patch', 'denoise', 'contrastive')
# The objectives each model.arch trains with.
ARCH_OBJECTIVES = {'bert': ('mlm', 'mlm_nsp', 'mlm_sop'), 'albert': ('mlm', 'mlm_nsp', 'mlm_sop'),
                   'gpt': ('clm',), 'patch_encoder': ('masked_patch', 'contrastive'),
                   'patch_decoder': ('next_patch',), 'patch_autoencoder': ('denoise',)}
DROPOUT_RNGS = ('threefry2x32', 'rbg', 'unsafe_rbg')  # jax.random key implementations


@dataclasses.dataclass(frozen=True)
class Model:
  """The network (`models.ModelConfig` holds it for the modules)."""
  arch: str = key('bert', 'the architecture; gpt trains with clm, patch models on series',
                  choices=tuple(ARCH_OBJECTIVES))
  vocab_size: int = key(0, '0: taken from the tokenizer', at_least=0)
  hidden_size: int = key(128, 'width H', at_least=1)
  num_layers: int = key(2, 'blocks', at_least=1)
  num_heads: int = key(2, 'attention heads; must divide hidden_size', at_least=1)
  mlp_dim: int = key(512, 'MLP width F', at_least=1)
  max_len: int = key(128, 'size of the position table', at_least=1)
  type_vocab_size: int = key(2, 'segment ids (2 for NSP/SOP pairs)', at_least=0)
  embed_size: int = key(0, 'ALBERT factorised embedding E; 0 means E = hidden_size', at_least=0)
  share_layers: bool = key(False, 'ALBERT cross-layer sharing')
  pre_ln: bool = key(False, 'pre-LN blocks; BERT is post-LN, GPT always pre-LN')
  activation: str = key('gelu', 'gelu (BERT), gelu_tanh (GPT-2, ALBERT); geglu, swiglu '
                        '(Llama) are gated', choices=('gelu', 'gelu_tanh', 'geglu', 'swiglu'))
  positions: str = key('learned', 'learned (BERT, GPT-2) or rope (rotary: relative, learns '
                       'local attention fast)', choices=('learned', 'rope'))
  rope_base: float = key(10000.0, 'rotary frequency base (Llama 3: 500000, ModernBERT: '
                         '160000)', above=0)
  norm: str = key('layer', 'LayerNorm, or RMSNorm without bias (Llama)', choices=('layer', 'rms'))
  first_attention_norm: bool = key(True, 'False: block 0 reads the embedding norm\'s output '
                                   '(ModernBERT)')
  tie_embeddings: bool = key(True, 'False: logits read an output table of their own (most '
                             'Llamas)')
  use_bias: bool = key(True, 'False: no biases in dense layers, norms and the MLM output '
                       '(Cramming)')
  dropout_rate: float = key(0.1, 'dropout on activations', at_least=0, below=1)
  attention_dropout_rate: float = key(0.1, 'dropout on attention weights', at_least=0, below=1)
  attention: str = key('auto', 'the kernel: auto (the TPU/GPU\'s fused one where it applies), '
                       'xla, splash or cudnn')
  max_docs_per_row: int = key(0, 'causal LM: the most documents a packed row holds, the '
                              'rest of a fuller row padding (0: no cap); lets cuDNN read the '
                              'documents as a packed layout instead of a dense mask', at_least=0)
  layer_norm_eps: float = key(1e-12, 'norm epsilon', above=0)
  position_offset: int = key(0, 'position p reads table row p + offset (RoBERTa: 2)',
                             at_least=0)
  scan_layers: bool = key(False, 'one jax.lax.scan over stacked blocks (compiles once)')
  remat: bool = key(False, 'recompute activations in the backward pass (less memory)')
  dtype: str = key('float32', 'compute dtype; parameters stay float32',
                   choices=('float32', 'bfloat16'))
  patch_len: int = key(8, 'patch models: time steps per patch (a token); data.seq_len counts '
                       'patches', at_least=1)
  channels: int = key(0, 'patch models: values per time step; 0 = from the data', at_least=0)
  bottleneck: int = key(16, 'patch_autoencoder: the numbers between its encoder and decoder',
                        at_least=1)
  projection: int = key(0, 'patch_encoder: the width of a projection head on its pooled '
                        'states (SimCLR; objective=contrastive); 0 = none', at_least=0)


@dataclasses.dataclass(frozen=True)
class Mlm:
  """The corruption a model learns to undo or see through: masked language modelling,
  masked_patch (which reads `rate`), denoise (`noise`), and contrastive's two views of each
  series (`rate` of its patches masked, `noise` added, `temperature`)."""
  rate: float = key(0.15, 'share of maskable tokens (or patches) chosen', above=0, below=1)
  mask_fraction: float = key(0.8, 'of the chosen: -> [MASK]', at_least=0, at_most=1)
  random_fraction: float = key(0.1, 'of the chosen: -> a random token (the rest stay)',
                               at_least=0, at_most=1)
  whole_word: bool = key(False, 'choose whole words')
  masked_positions_only: bool = key(True, 'run the MLM head on chosen positions only')
  noise: float = key(0.5, 'denoise, contrastive: the spread of the Gaussian noise added to '
                     'the normalised patches; 0 = none', at_least=0)
  temperature: float = key(0.1, 'contrastive: the NT-Xent temperature', above=0)


@dataclasses.dataclass(frozen=True)
class Data:
  """The corpus and how rows are cut from it."""
  source: str = key('embedded', 'embedded (Python\'s docs), text, jsonl, parquet, tfds, '
                    'prepared (ssljax prepare) or series (arrays of numbers: data/series.py)',
                    choices=('embedded', 'text', 'jsonl', 'parquet', 'tfds', 'prepared',
                             'series'))
  path: str = key('', 'text/jsonl/parquet: a file, folder or glob; prepared: the folder; '
                  'series: ucr:NAME[:train|test], FILE.npy, .npz or .csv; images: '
                  'digits[:train|test], an .npz of images, a folder of images (DIR/CLASS/'
                  '*.png|jpg, or unlabelled DIR/*.png) or tfds:NAME[:split]')
  text_field: str = key('text', 'jsonl key')
  tfds_name: str = key('', 'a tensorflow-datasets name (source=tfds)')
  tfds_split: str = key('train', 'its split')
  tfds_data_dir: str = key('', 'its data_dir (source=tfds, and data.path=tfds:NAME); \'\' = '
                           'tfds\'s default')
  image_size: int = key(0, 'image folders and tfds: every image resized to this side, square '
                        '(bilinear); 0 = as stored, all of one size', at_least=0)
  max_images: int = key(0, 'image folders and tfds: read at most this many images, a fixed '
                        'sample (all are held in memory); 0 = all', at_least=0)
  seq_len: int = key(128, 'tokens (patches for series) per row', at_least=2)
  eval_fraction: float = key(0.02, 'documents held out for evaluation', at_least=0, below=1)


@dataclasses.dataclass(frozen=True)
class Tokenizer:
  """The sentencepiece model (trained on the corpus unless given)."""
  path: str = key('', 'an existing sentencepiece .model; \'\' trains one on the corpus')
  vocab_size: int = key(8000, 'pieces of a trained tokenizer', at_least=6)
  model_type: str = key('unigram', 'sentencepiece\'s: unigram, bpe, char or word')
  sample_chars: int = key(20_000_000, 'ssljax prepare trains the tokenizer on a sample this '
                          'large', at_least=1)


@dataclasses.dataclass(frozen=True)
class Train:
  """The loop: steps, batch, seeds, logging, checkpoints."""
  steps: int = key(200, 'optimizer updates', at_least=1)
  batch_size: int = key(32, 'rows per update: global, over all devices and hosts', at_least=1)
  grad_accum: int = key(1, 'micro-batches per update; must divide batch_size', at_least=1)
  seed: int = key(0, 'parameters, data order and masks', at_least=0)
  dropout_rng: str = key('threefry2x32', 'dropout bits: threefry2x32 is the same on every '
                         'backend; rbg and unsafe_rbg are XLA\'s RngBitGenerator (TPU '
                         'hardware; the same on any mesh, not across CPU, GPU and TPU). Masks '
                         'always use threefry', choices=DROPOUT_RNGS)
  log_every: int = key(10, 'steps between metrics rows', at_least=1)
  eval_every: int = key(100, 'steps between evaluations; 0 = none', at_least=0)
  eval_batches: int = key(4, 'held-out batches per evaluation', at_least=1)
  checkpoint_every: int = key(100, 'steps between checkpoints', at_least=1)
  keep_checkpoints: int = key(3, 'newest checkpoints kept', at_least=1)
  fresh_start: bool = key(False, 'True: start from step 0 when no checkpoint in WORKDIR '
                          'restores')
  extend: str = key('', 'how a run with checkpoints continues under another train.steps: '
                    '\'\' refuses; decay falls from the rate it reached to '
                    'optimizer.end_learning_rate; rewarm warms up again first',
                    choices=('', 'decay', 'rewarm'))
  progress: bool = key(True, 'a progress bar on stderr')
  time_budget: float = key(0.0, 'minutes; > 0 sizes train.steps to the budget once '
                           '(WORKDIR/budget.json)', at_least=0)
  init_from: str = key('', 'a checkpoint or Hugging Face folder whose weights start a fresh '
                       'run')
  profile_steps: int = key(0, '> 0: trace that many steps with jax.profiler '
                           '(WORKDIR/profile.md)', at_least=0)
  profile_from: int = key(10, '... those after this step (past compiling and warm-up)',
                          at_least=1)


@dataclasses.dataclass(frozen=True)
class TaskData:
  """Where a downstream task's examples are: `ssljax probe` / `finetune` / `evaluate` and
  the probe while pretraining read these keys."""
  data_dir: str = key('', 'the GLUE folder (or one holding glue/); pos/squad: where files are '
                      'found')
  train_file: str = key('', 'pos, ner, squad, table: the training file')
  eval_file: str = key('', '... and the one scored')
  max_train_examples: int = key(0, '0 = all; else a fixed random subset drawn with data_seed',
                                at_least=0)
  max_eval_examples: int = key(0, '0 = all', at_least=0)


@dataclasses.dataclass(frozen=True)
class Probe(TaskData):
  """A ridge probe while pretraining: a task's examples as the adaptation commands find
  them (`TaskData`), on a fixed subset."""
  max_train_examples: int = key(2000, 'a fixed subset keeps each probe to seconds',
                                at_least=1)
  max_eval_examples: int = key(1000, 'examples scored', at_least=1)
  task: str = key('', '\'\' = off; a task of `ssljax probe`: sst2, cola, ..., pos, table')
  every: int = key(0, 'steps between probes; 0 = at each evaluation (train.eval_every)',
                   at_least=0)
  pooling: str = key('mean', 'how a sentence\'s features are pooled: cls, first, mean, last')
  layer: int = key(0, 'the features of block `layer` (1 = the first); 0 = the last',
                   at_least=0)


@dataclasses.dataclass(frozen=True)
class Eval:
  """lm-evaluation-harness while pretraining (gpt)."""
  lm_eval_tasks: str = key('', '\'\' = off; lm-eval task names or local YAML files, '
                           'comma-separated')
  lm_eval_every: int = key(0, 'steps between runs; 0 = at each evaluation', at_least=0)
  lm_eval_limit: int = key(0, 'examples per task; 0 = all', at_least=0)
  lm_eval_batch_size: int = key(16, 'rows per forward pass', at_least=1)


@dataclasses.dataclass(frozen=True)
class Metrics:
  """Where metrics go besides metrics.jsonl and tensorboard/."""
  wandb_project: str = key('', '\'\' = off; a Weights & Biases project (the wandb extra)')
  wandb_entity: str = key('', '\'\' = wandb\'s default entity')
  wandb_mode: str = key('', '\'\' = wandb\'s default (WANDB_MODE); online, offline or '
                        'disabled')


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """The update rule and its schedule."""
  name: str = key('adamw', 'the optimizer', choices=('adamw', 'lamb'))
  learning_rate: float = key(1e-3, 'peak rate', above=0)
  warmup_steps: int = key(20, 'linear warm-up from 0', at_least=0)
  warmup_fraction: float = key(0.0, '> 0: warm up over this share of train.steps instead '
                               '(0.5: a triangle)', at_least=0, below=1)
  decay: str = key('linear', 'after the warm-up, to end_learning_rate',
                   choices=('linear', 'cosine', 'constant'))
  end_learning_rate: float = key(0.0, 'the rate at train.steps', at_least=0)
  weight_decay: float = key(0.01, 'decoupled; not on biases and norms', at_least=0)
  b1: float = key(0.9, 'first-moment decay', at_least=0, below=1)
  b2: float = key(0.999, 'second-moment decay', at_least=0, below=1)
  eps: float = key(1e-6, 'added to the second moment\'s root', above=0)
  clip_norm: float = key(1.0, 'global gradient-norm clipping; 0 = off', at_least=0)


@dataclasses.dataclass(frozen=True)
class Parallel:
  """How a step runs over devices."""
  strategy: str = key('jit', 'jit (one program over the mesh) or pmap (classic data '
                      'parallel)', choices=('jit', 'pmap'))


@dataclasses.dataclass(frozen=True)
class Mesh:
  """Mesh axis sizes (ssljax.sharding names the axes); one may be -1: every device left."""
  data: int = key(-1, 'data parallel: splits rows')
  fsdp: int = key(1, 'splits rows, parameters and optimizer state')
  tensor: int = key(1, 'splits heads, MLP units and the vocabulary')


@dataclasses.dataclass(frozen=True)
class Distributed:
  """jax.distributed over several hosts."""
  initialize: bool = key(False, 'start jax.distributed (also on when SSLJAX_COORDINATOR is '
                         'set)')
  coordinator_address: str = key('', 'host:port of process 0 (not needed on a TPU pod)')
  num_processes: int = key(0, 'hosts in all (or SSLJAX_NUM_PROCESSES)')
  process_id: int = key(-1, 'this host\'s rank (or SSLJAX_PROCESS_ID)')
  cpu_collectives: str = key('gloo', 'jax_cpu_collectives_implementation (CPU hosts)')


@dataclasses.dataclass(frozen=True)
class Config:
  """Every key ssljax pretrain reads, with defaults that fit a quick CPU run."""
  objective: str = key('mlm_nsp', 'mlm, mlm_nsp (BERT), mlm_sop (ALBERT), clm (GPT); series: '
                       'masked_patch, next_patch, denoise, contrastive',
                       choices=OBJECTIVES + SERIES_OBJECTIVES)
  model: Model = section(Model)
  mlm: Mlm = section(Mlm)
  data: Data = section(Data)
  tokenizer: Tokenizer = section(Tokenizer)
  train: Train = section(Train)
  probe: Probe = section(Probe)
  eval: Eval = section(Eval)
  metrics: Metrics = section(Metrics)
  optimizer: Optimizer = section(Optimizer)
  parallel: Parallel = section(Parallel)
  mesh: Mesh = section(Mesh)
  distributed: Distributed = section(Distributed)


def base() -> ml_collections.ConfigDict:
  """Every key ssljax reads (`Config`), with its default."""
  return schema.config_dict(Config)


def load(path: str | None, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """Reads a config file (or the base config when None) and applies `key=value` overrides."""
  if path is None:
    config = base()
  else:
    config = _from_file(path)
  validate(override(config, overrides))
  return config


def override(config: ml_collections.ConfigDict, items) -> ml_collections.ConfigDict:
  """Locks `config` and applies `key=value` items to it: an unknown key is an error."""
  config.lock()
  for item in items:
    _apply(config, item)
  return config


def _from_file(path: str) -> ml_collections.ConfigDict:
  file = paths.path(path)
  if not file.is_file():
    what = 'is a folder, not a file' if file.is_dir() else 'does not exist'
    raise UserError(f'config file {path} {what}; the configs ship in configs/, '
                    'e.g. --config configs/bert_tiny.py')
  if file.suffix != '.py':
    raise UserError(f'config file {path} is not a .py file: configs are Python modules with '
                    'get_config(), e.g. configs/bert_tiny.py; set single keys with --set')
  spec = importlib.util.spec_from_file_location(f'ssljax_config_{file.stem}', file)
  assert spec is not None and spec.loader is not None  # a .py file that exists
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise UserError(f'config file {path}, line {e.lineno}: {e.msg}') from None
  except Exception as e:  # a failed import, a NameError, ...
    raise UserError(f'config file {path} fails to run: {type(e).__name__}: {e}') from None
  if not hasattr(module, 'get_config'):
    raise UserError(f'config file {path} defines no get_config()')
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f'get_config() in {path} returned a {type(config).__name__}; return '
                    'ssljax.config.base() with your changes (an ml_collections.ConfigDict)')
  _check_keys(config, base(), path)
  return config


def _check_keys(config, reference, origin, prefix=''):
  for leaf, value in config.items():
    name = prefix + leaf
    if leaf not in reference:
      raise UserError(_unknown(name, reference, prefix, origin))
    if isinstance(value, ml_collections.ConfigDict):
      _check_keys(value, reference[leaf], origin, name + '.')


def _unknown(name, reference, prefix, origin):
  known = [prefix + k for k in reference.keys()]
  close = difflib.get_close_matches(name, known, n=1)
  hint = f'did you mean {close[0]}?' if close else f'known keys here: {", ".join(known)}'
  return f'unknown config key {name!r} in {origin}; {hint}'


def _apply(config, item: str):
  if '=' not in item:
    raise UserError(f'--set expects key=value, got {item!r}')
  name, text = item.split('=', 1)
  *parents, leaf = name.strip().split('.')
  node, prefix = config, ''
  for part in parents:
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise UserError(_unknown(prefix + part, node, prefix, '--set'))
    node, prefix = node[part], prefix + part + '.'
  if leaf not in node or isinstance(node[leaf], ml_collections.ConfigDict):
    raise UserError(_unknown(name, node, prefix, '--set'))
  node[leaf] = _parse(text, type(node[leaf]), name)


def _parse(text, kind, name):
  if kind is str:
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = {'true': True, 'false': False}.get(text.lower(), text)
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if kind is not type(value):
    raise UserError(f'--set {name}={text}: expected a {kind.__name__}')
  return value


def validate(c):
  """Checks values a run cannot start with: each key against its own constraint (`Config`),
  then the rules that join keys. Device-dependent checks live in `pretrain.parallel`."""
  schema.check(Config, c)
  if c.objective not in ARCH_OBJECTIVES[c.model.arch]:
    raise UserError(f'objective={c.objective} does not fit model.arch={c.model.arch}: '
                    'gpt trains with clm; bert and albert with mlm, mlm_nsp or mlm_sop; '
                    'patch_encoder with masked_patch or contrastive, patch_decoder with '
                    'next_patch, patch_autoencoder with denoise')
  _validate_series(c)
  if c.eval.lm_eval_tasks and c.model.arch != 'gpt':
    raise UserError(f'eval.lm_eval_tasks scores text with a causal LM; model.arch='
                    f'{c.model.arch} is an encoder: use probe.task, or model.arch=gpt')
  if c.objective in ('mlm_nsp', 'mlm_sop') and c.model.type_vocab_size < 2:
    raise UserError(f'objective={c.objective} reads sentence pairs as two segments; '
                    f'model.type_vocab_size={c.model.type_vocab_size} must be at least 2')
  if not c.model.first_attention_norm and (c.model.arch == 'gpt' or not c.model.pre_ln):
    raise UserError('model.first_attention_norm=False skips block 0\'s pre-norm after the '
                    'embedding norm, which only pre-LN encoders have: set model.pre_ln=True '
                    'with model.arch=bert or albert')
  if c.model.hidden_size % c.model.num_heads:
    raise UserError(f'model.hidden_size={c.model.hidden_size} is not divisible by '
                    f'model.num_heads={c.model.num_heads}')
  if c.data.seq_len + c.model.position_offset > c.model.max_len:
    raise UserError(f'data.seq_len={c.data.seq_len} exceeds model.max_len={c.model.max_len} '
                    f'minus model.position_offset={c.model.position_offset}')
  if not 0 <= c.probe.layer <= c.model.num_layers:
    raise UserError(f'probe.layer={c.probe.layer}: the model has blocks 1 to '
                    f'{c.model.num_layers} (0 for the last)')
  if c.mlm.mask_fraction + c.mlm.random_fraction > 1:
    raise UserError('mlm.mask_fraction + mlm.random_fraction must not exceed 1')
  if c.train.batch_size % c.train.grad_accum:
    raise UserError(f'train.batch_size={c.train.batch_size} is not divisible by '
                    f'train.grad_accum={c.train.grad_accum}')


def _validate_series(c):
  """Series objectives read arrays (data.source=series) and have no text hooks."""
  series = c.objective in SERIES_OBJECTIVES
  if series != (c.data.source == 'series'):
    raise UserError(f'objective={c.objective} does not read data.source={c.data.source}: '
                    'the series objectives read data.source=series; the text '
                    'objectives read text')
  if c.objective == 'contrastive' and (not c.model.projection or c.train.grad_accum > 1):
    raise UserError('objective=contrastive needs a projection head (model.projection, e.g. '
                    '64) and every view of the batch at once (train.grad_accum=1: the '
                    'negatives are the whole batch)')
  if series and (c.probe.task or c.eval.lm_eval_tasks or c.train.init_from):
    raise UserError('probe.task, eval.lm_eval_tasks and train.init_from are for text '
                    'models; series runs are probed after pretraining with ssljax series')
