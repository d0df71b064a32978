"""Configs as code: every key with its default, loading, and `--set key=value` overrides.

A config file under `configs/` is a Python module with `get_config()` that starts from
`base()` and overrides what differs. `base()` is the single list of keys: an unknown key,
in a file or on the command line, is an error that names the closest known key.
"""

import ast
import difflib
import importlib.util
from collections.abc import Sequence

import ml_collections

from ssljax import paths
from ssljax.errors import UserError

OBJECTIVES = ('mlm', 'mlm_nsp', 'mlm_sop', 'clm')
# On patches of series (data.source=series): the MLM and CLM of arrays.
SERIES_OBJECTIVES = ('masked_patch', 'next_patch')
# The objectives each model.arch trains with.
ARCH_OBJECTIVES = {'bert': ('mlm', 'mlm_nsp', 'mlm_sop'), 'albert': ('mlm', 'mlm_nsp', 'mlm_sop'),
                   'gpt': ('clm',), 'patch_encoder': ('masked_patch',),
                   'patch_decoder': ('next_patch',)}
DROPOUT_RNGS = ('threefry2x32', 'rbg', 'unsafe_rbg')  # jax.random key implementations


def base() -> ml_collections.ConfigDict:
  """Every key ssljax reads, with defaults that fit a quick CPU run."""
  c = ml_collections.ConfigDict()
  c.objective = 'mlm_nsp'  # mlm | mlm_nsp (BERT) | mlm_sop (ALBERT) | clm (GPT)
  # series: masked_patch (PatchTST; mlm.rate of the patches) | next_patch (a patch decoder)

  c.model = m = ml_collections.ConfigDict()
  m.arch = 'bert'  # bert | albert | gpt | patch_encoder | patch_decoder (series)
  m.vocab_size = 0  # 0: taken from the tokenizer
  m.hidden_size = 128
  m.num_layers = 2
  m.num_heads = 2
  m.mlp_dim = 512
  m.max_len = 128  # size of the position table
  m.type_vocab_size = 2
  m.embed_size = 0  # ALBERT factorised embedding E; 0 means E = hidden_size
  m.share_layers = False  # ALBERT cross-layer sharing
  m.pre_ln = False  # BERT is post-LN; GPT is always pre-LN
  m.activation = 'gelu'  # gelu (BERT) | gelu_tanh (GPT-2, ALBERT) | geglu | swiglu (Llama): gated
  # learned (BERT, GPT-2) | rope (rotary: relative, learns local attention fast)
  m.positions = 'learned'
  m.rope_base = 10000.0  # rotary frequency base (Llama 3: 500000, ModernBERT: 160000)
  m.norm = 'layer'  # layer (LayerNorm) | rms (RMSNorm, no bias: Llama)
  m.first_attention_norm = True  # False: block 0 reads the embedding norm's output (ModernBERT)
  m.tie_embeddings = True  # False: logits read an output table of their own (most Llamas)
  m.use_bias = True  # False: no biases in dense layers, norms and the MLM output (Cramming)
  m.dropout_rate = 0.1
  m.attention_dropout_rate = 0.1
  m.attention = 'auto'  # auto (TPU/GPU's fused kernel where it applies) | xla | splash | cudnn
  m.layer_norm_eps = 1e-12
  m.position_offset = 0  # position p reads table row p + offset (RoBERTa: 2)
  m.scan_layers = False
  m.remat = False
  m.dtype = 'float32'  # compute dtype; parameters stay float32
  m.patch_len = 8  # patch models: time steps per patch (a token); data.seq_len counts patches
  m.channels = 0  # patch models: values per time step; 0 = from the data

  c.mlm = ml_collections.ConfigDict()
  c.mlm.rate = 0.15
  c.mlm.mask_fraction = 0.8  # of the chosen: -> [MASK]
  c.mlm.random_fraction = 0.1  # of the chosen: -> random token (the rest stay)
  c.mlm.whole_word = False
  c.mlm.masked_positions_only = True  # run the MLM head on chosen positions only

  c.data = d = ml_collections.ConfigDict()
  d.source = 'embedded'  # embedded | text | jsonl | parquet | tfds | prepared (ssljax prepare)
  #   | series (arrays of numbers: data/series.py)
  d.path = ''  # text/jsonl/parquet: a file, a folder or a glob; prepared: the folder
  #   series: ucr:NAME[:train|test] (the aeon wheel's UCR/UEA sets), FILE.npy, .npz or .csv
  d.text_field = 'text'  # jsonl key
  d.tfds_name = ''
  d.tfds_split = 'train'
  d.tfds_data_dir = ''
  d.seq_len = 128
  d.eval_fraction = 0.02  # documents held out for evaluation

  c.tokenizer = t = ml_collections.ConfigDict()
  t.path = ''  # an existing sentencepiece .model; '' trains one on the corpus
  t.vocab_size = 8000
  t.model_type = 'unigram'
  t.sample_chars = 20_000_000  # ssljax prepare trains the tokenizer on a sample this large

  c.train = tr = ml_collections.ConfigDict()
  tr.steps = 200
  tr.batch_size = 32  # global, over all devices and hosts
  tr.grad_accum = 1
  tr.seed = 0
  # Dropout bits: 'threefry2x32' (integer rounds per element, the same bits on every backend)
  # or 'rbg' / 'unsafe_rbg' (XLA's RngBitGenerator, drawn by TPU hardware; each chip draws
  # the whole global batch's bits, so any mesh gives the same ones, but CPU, GPU and TPU
  # give different ones). Masks always use threefry.
  tr.dropout_rng = 'threefry2x32'
  tr.log_every = 10
  tr.eval_every = 100
  tr.eval_batches = 4
  tr.checkpoint_every = 100
  tr.keep_checkpoints = 3  # at least 1
  tr.fresh_start = False  # True: start from step 0 when no checkpoint in WORKDIR restores
  # How a run with checkpoints continues under another train.steps: '' refuses; 'decay' falls
  # from the rate it reached to optimizer.end_learning_rate; 'rewarm' warms up again first.
  tr.extend = ''
  tr.progress = True
  tr.time_budget = 0.0  # minutes; > 0 sizes train.steps to the budget once (WORKDIR/budget.json)
  tr.init_from = ''  # a checkpoint or Hugging Face folder whose weights start a fresh run
  tr.profile_steps = 0  # > 0: trace that many steps with jax.profiler (WORKDIR/profile.md)
  tr.profile_from = 10  # ... those after this step (past compiling and warm-up)

  c.probe = p = ml_collections.ConfigDict()  # a ridge probe while pretraining
  p.task = ''  # '' = off; a task of `ssljax probe`: sst2, cola, ..., pos, table
  p.every = 0  # steps between probes; 0 = at each evaluation (train.eval_every)
  p.data_dir = ''  # as `ssljax probe --data-dir`
  p.train_file = ''  # pos, ner, table: the files
  p.eval_file = ''
  p.max_train_examples = 2000  # a fixed subset keeps each probe to seconds
  p.max_eval_examples = 1000
  p.pooling = 'mean'
  p.layer = 0  # the features of block `layer` (1 = the first); 0 = the last

  c.eval = e = ml_collections.ConfigDict()  # lm-evaluation-harness while pretraining (gpt)
  e.lm_eval_tasks = ''  # '' = off; lm-eval task names or local YAML files, comma-separated
  e.lm_eval_every = 0  # steps between runs; 0 = at each evaluation (train.eval_every)
  e.lm_eval_limit = 0  # examples per task; 0 = all
  e.lm_eval_batch_size = 16

  c.metrics = ml_collections.ConfigDict()  # where metrics go besides metrics.jsonl, tensorboard/
  c.metrics.wandb_project = ''  # '' = off; a Weights & Biases project (the `wandb` extra)
  c.metrics.wandb_entity = ''  # '' = wandb's default entity
  c.metrics.wandb_mode = ''  # '' = wandb's default (WANDB_MODE); online | offline | disabled

  c.optimizer = o = ml_collections.ConfigDict()
  o.name = 'adamw'  # adamw | lamb
  o.learning_rate = 1e-3
  o.warmup_steps = 20
  o.warmup_fraction = 0.0  # > 0: warm up over this share of train.steps instead (0.5: a triangle)
  o.decay = 'linear'  # linear | cosine | constant
  o.end_learning_rate = 0.0
  o.weight_decay = 0.01
  o.b1 = 0.9
  o.b2 = 0.999
  o.eps = 1e-6
  o.clip_norm = 1.0

  c.parallel = ml_collections.ConfigDict()
  c.parallel.strategy = 'jit'  # jit (mesh) | pmap (classic data parallel)

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # one axis may be -1: all devices the others leave
  c.mesh.fsdp = 1
  c.mesh.tensor = 1

  c.distributed = ml_collections.ConfigDict()
  c.distributed.initialize = False  # also on when SSLJAX_COORDINATOR is set
  c.distributed.coordinator_address = ''
  c.distributed.num_processes = 0
  c.distributed.process_id = -1
  c.distributed.cpu_collectives = 'gloo'
  return c


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
  for key, value in config.items():
    name = prefix + key
    if key not in reference:
      raise UserError(_unknown(name, reference, prefix, origin))
    if isinstance(value, ml_collections.ConfigDict):
      _check_keys(value, reference[key], origin, name + '.')


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


def _choice(name, value, options):
  if value not in options:
    raise UserError(f'{name}={value!r} is not one of {", ".join(map(str, options))}')


# key -> the interval its value must lie in ('[' and ']' include the bound, '(' and ')' not).
RANGES = {
    'model.vocab_size': '[0, inf)', 'model.hidden_size': '[1, inf)',
    'model.num_layers': '[1, inf)', 'model.num_heads': '[1, inf)', 'model.mlp_dim': '[1, inf)',
    'model.max_len': '[1, inf)', 'model.type_vocab_size': '[0, inf)',
    'model.embed_size': '[0, inf)', 'model.dropout_rate': '[0, 1)',
    'model.attention_dropout_rate': '[0, 1)', 'model.layer_norm_eps': '(0, inf)',
    'model.position_offset': '[0, inf)', 'model.rope_base': '(0, inf)',
    'model.patch_len': '[1, inf)', 'model.channels': '[0, inf)',
    'mlm.mask_fraction': '[0, 1]',
    'mlm.random_fraction': '[0, 1]', 'data.seq_len': '[2, inf)',
    'data.eval_fraction': '[0, 1)', 'tokenizer.vocab_size': '[6, inf)',
    'tokenizer.sample_chars': '[1, inf)',
    'train.seed': '[0, inf)', 'train.eval_every': '[0, inf)', 'train.eval_batches': '[1, inf)',
    'probe.every': '[0, inf)', 'probe.max_train_examples': '[1, inf)',
    'probe.max_eval_examples': '[1, inf)', 'eval.lm_eval_every': '[0, inf)',
    'eval.lm_eval_limit': '[0, inf)', 'eval.lm_eval_batch_size': '[1, inf)',
    'optimizer.learning_rate': '(0, inf)', 'optimizer.warmup_steps': '[0, inf)',
    'optimizer.end_learning_rate': '[0, inf)', 'optimizer.weight_decay': '[0, inf)',
    'optimizer.b1': '[0, 1)', 'optimizer.b2': '[0, 1)', 'optimizer.eps': '(0, inf)',
    'optimizer.clip_norm': '[0, inf)',
}


def in_range(name: str, value, interval: str):
  """One line naming the key, its value and the interval when `value` lies outside it."""
  low, high = (float(x) for x in interval[1:-1].split(','))
  above = value >= low if interval[0] == '[' else value > low
  below = value <= high if interval[-1] == ']' else value < high
  if not (above and below):  # NaN lies in no interval
    raise UserError(f'{name}={value} must lie in {interval}')


def validate(c):
  """Checks values a run cannot start with; device-dependent checks live in
  `pretrain.parallel`."""
  for name, interval in RANGES.items():
    section, key = name.split('.')
    in_range(name, c[section][key], interval)
  _choice('objective', c.objective, OBJECTIVES + SERIES_OBJECTIVES)
  _choice('model.arch', c.model.arch, tuple(ARCH_OBJECTIVES))
  _choice('data.source', c.data.source, ('embedded', 'text', 'jsonl', 'parquet', 'tfds',
                                        'prepared', 'series'))
  _choice('optimizer.name', c.optimizer.name, ('adamw', 'lamb'))
  _choice('optimizer.decay', c.optimizer.decay, ('linear', 'cosine', 'constant'))
  _choice('parallel.strategy', c.parallel.strategy, ('jit', 'pmap'))
  _choice('train.dropout_rng', c.train.dropout_rng, DROPOUT_RNGS)
  _choice('train.extend', c.train.extend, ('', 'decay', 'rewarm'))
  _choice('model.dtype', c.model.dtype, ('float32', 'bfloat16'))
  _choice('model.activation', c.model.activation, ('gelu', 'gelu_tanh', 'geglu', 'swiglu'))
  _choice('model.norm', c.model.norm, ('layer', 'rms'))
  _choice('model.positions', c.model.positions, ('learned', 'rope'))
  if c.objective not in ARCH_OBJECTIVES[c.model.arch]:
    raise UserError(f'objective={c.objective} does not fit model.arch={c.model.arch}: '
                    'gpt trains with clm; bert and albert with mlm, mlm_nsp or mlm_sop; '
                    'patch_encoder with masked_patch, patch_decoder with next_patch')
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
  if c.train.profile_steps < 0 or c.train.profile_from < 1:
    raise UserError(f'train.profile_steps={c.train.profile_steps} must not be negative and '
                    f'train.profile_from={c.train.profile_from} must be at least 1')
  if c.train.time_budget < 0:
    raise UserError(f'train.time_budget={c.train.time_budget} minutes must not be negative')
  if not 0 <= c.probe.layer <= c.model.num_layers:
    raise UserError(f'probe.layer={c.probe.layer}: the model has blocks 1 to '
                    f'{c.model.num_layers} (0 for the last)')
  if not 0 <= c.optimizer.warmup_fraction < 1:
    raise UserError(f'optimizer.warmup_fraction={c.optimizer.warmup_fraction} must lie in [0, 1)')
  if not 0 < c.mlm.rate < 1:
    raise UserError(f'mlm.rate={c.mlm.rate} must lie in (0, 1)')
  if c.mlm.mask_fraction + c.mlm.random_fraction > 1:
    raise UserError('mlm.mask_fraction + mlm.random_fraction must not exceed 1')
  for key in ('steps', 'batch_size', 'grad_accum', 'log_every', 'checkpoint_every',
              'keep_checkpoints'):
    if c.train[key] < 1:
      raise UserError(f'train.{key}={c.train[key]} must be at least 1')
  if c.train.batch_size % c.train.grad_accum:
    raise UserError(f'train.batch_size={c.train.batch_size} is not divisible by '
                    f'train.grad_accum={c.train.grad_accum}')


def _validate_series(c):
  """Series objectives read arrays (data.source=series) and have no text hooks."""
  series = c.objective in SERIES_OBJECTIVES
  if series != (c.data.source == 'series'):
    raise UserError(f'objective={c.objective} does not read data.source={c.data.source}: '
                    'masked_patch and next_patch read data.source=series; the text '
                    'objectives read text')
  if series and (c.probe.task or c.eval.lm_eval_tasks or c.train.init_from):
    raise UserError('probe.task, eval.lm_eval_tasks and train.init_from are for text '
                    'models; series runs are probed after pretraining with ssljax series')
