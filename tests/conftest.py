"""8 simulated CPU devices for every test, and a small real-text corpus for quick runs."""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import pathlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from ssljax import config as config_lib  # noqa: E402
from ssljax.data import corpus  # noqa: E402
from ssljax.pretrain import profile  # noqa: E402

# Tests build the same tiny programs many times: XLA's persistent cache compiles each once.
jax.config.update('jax_compilation_cache_dir', tempfile.mkdtemp(prefix='ssljax-test-xla-'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def pytest_configure(config):
  config.addinivalue_line('markers', 'libtpu: loads libtpu for compile-only TPU devices; '
                          'runs after every other test')


def pytest_collection_modifyitems(items):
  """Tests that load libtpu run last, in each xdist worker too (workers take tests in this
  order): with libtpu loaded for compile-only devices, jax.profiler.start_trace segfaults,
  and a profiling test after them would take the worker down."""
  items.sort(key=lambda item: item.get_closest_marker('libtpu') is not None)


@pytest.fixture(autouse=True)
def _libtpu_only_where_marked(request):
  before = profile.compile_only_libtpu()
  yield
  if not before and profile.compile_only_libtpu() and not request.node.get_closest_marker(
      'libtpu'):
    pytest.fail('this test loaded libtpu: mark it pytest.mark.libtpu, so that it runs last')


def tiny_overrides(corpus_path, **extra):
  """--set style overrides for a model and run small enough for a CPU test."""
  values = {
      'data.source': 'text', 'data.path': str(corpus_path), 'data.seq_len': 32,
      'model.max_len': 32, 'model.hidden_size': 32, 'model.num_heads': 2,
      'model.mlp_dim': 64, 'model.num_layers': 2, 'model.dropout_rate': 0.0,
      'model.attention_dropout_rate': 0.0, 'tokenizer.vocab_size': 400,
      'train.batch_size': 16, 'train.steps': 6, 'train.log_every': 1,
      'train.eval_every': 0, 'train.checkpoint_every': 3, 'train.progress': False,
      'optimizer.warmup_steps': 2, 'mesh.data': 1,
  } | extra
  return [f'{k}={v}' for k, v in values.items()]


def tiny_config(corpus_path, config_file=None, **extra):
  return config_lib.load(config_file, tiny_overrides(corpus_path, **extra))


@pytest.fixture(scope='session')
def corpus_file(tmp_path_factory) -> pathlib.Path:
  """~120 real documents (pydoc topics and stdlib docstrings), blank-line separated."""
  docs = [d.replace('\n\n', '\n') for d in corpus.embedded_documents()[:120]]
  path = tmp_path_factory.mktemp('corpus') / 'docs.txt'
  path.write_text('\n\n'.join(docs))
  return path


@pytest.fixture(scope='session')
def tokenizer_file(corpus_file, tmp_path_factory) -> pathlib.Path:
  """A tokenizer trained once on `corpus_file`, so runs in tests skip training it."""
  from ssljax import tokenizers as tokenizer
  prefix = tmp_path_factory.mktemp('tokenizer') / 'tok'
  tokenizer.train(corpus.load_documents(tiny_config(corpus_file).data), 400, prefix)
  return prefix.with_suffix('.model')


def pretrained_run_config(corpus_file, tokenizer_file, **extra):
  """The config of `pretrained_run`, with `extra` overrides."""
  return tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file, 'mesh.data': 8} | extra)


@pytest.fixture(scope='session')
def pretrained_run(corpus_file, tokenizer_file, tmp_path_factory) -> pathlib.Path:
  """A finished 6-step tiny BERT run on 8 devices (checkpoints at steps 3 and 6)."""
  from ssljax.pretrain import loop as train
  path = tmp_path_factory.mktemp('run')
  train.pretrain(pretrained_run_config(corpus_file, tokenizer_file), path)
  return path


@pytest.fixture
def run_copy(pretrained_run, tmp_path) -> pathlib.Path:
  """A copy of `pretrained_run` to continue, change or break."""
  shutil.copytree(pretrained_run, tmp_path / 'run')
  return tmp_path / 'run'


def run_steps(config, workdir, steps):
  """Losses of `steps` training steps from init, and the final params on the host."""
  import jax

  from ssljax.pretrain import loop as train
  run = train.setup(config, workdir)
  state = run.strategy.init(config.train.seed)
  losses = []
  for _ in range(steps):
    state, metrics = run.strategy.step(state, run.strategy.put_batch(next(run.batches)))
    losses.append(float(metrics['loss']))
  return losses, jax.device_get(run.strategy.to_save(state).params)
