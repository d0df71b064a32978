"""`ssljax prepare`: a corpus -> tokenizer + token shards + manifest, on Apache Beam.

Two pipelines over the planned splits (`sources.py`): one samples documents for the
tokenizer (skipped with tokenizer.path), one tokenizes every split into a train and an
eval shard. Each split is one unit of work that writes its own files, whole or not at
all, then a small record of them (`shards/split-NNNNN.json`); a rerun after a crash skips
the splits that have a record, so no document is lost or written twice. The manifest is
written last, from the records. With no pipeline options the DirectRunner runs one worker
process per core; `--runner=DataflowRunner ...` (or Flink, Spark) runs the same pipeline
on a cluster.
"""

import json
import logging
import os
import tempfile
import threading
import time

import apache_beam as beam
import ml_collections
import numpy as np
import tqdm
from apache_beam.options import pipeline_options as po

from ssljax import paths, tokenizers
from ssljax.data import examples as examples_lib, prepared, shards, store as store_lib
from ssljax.errors import UserError
from ssljax.prepare import sources

log = logging.getLogger(__name__)

STATE = '.prepare.json'
_ENCODE_BATCH = 256  # documents tokenized per call
_FAILED = 'failed-'  # + split index: a worker's failure, as `_Worker.process` records it


def pipeline_options(beam_args, workers: int | None = None):
  """Beam's options from command-line style `beam_args`; without a runner, the local
  DirectRunner with one worker process per core (or `workers`)."""
  options = po.PipelineOptions(list(beam_args))
  options.view_as(po.WorkerOptions).default_sdk_harness_log_level = (
      options.view_as(po.WorkerOptions).default_sdk_harness_log_level or 'WARNING')
  standard = options.view_as(po.StandardOptions)
  if standard.runner is None:
    standard.runner = 'DirectRunner'
    direct = options.view_as(po.DirectOptions)
    direct.direct_num_workers = workers or os.cpu_count() or 1
    many = direct.direct_num_workers > 1
    direct.direct_running_mode = 'multi_processing' if many else 'in_memory'
  return options


def fingerprint(config, plan: sources.Plan) -> str:
  """What the prepared folder depends on: the source, the tokenizer settings, the split."""
  tok = config.tokenizer
  tokenizer = (shards.sha256(paths.path(tok.path).read_bytes()) if tok.path else
               [tok.vocab_size, tok.model_type, tok.sample_chars])
  return sources.hash_of(prepared.FORMAT, plan.fingerprint, tokenizer, config.train.seed,
                         config.data.eval_fraction)


def prepare(config, out, beam_args=(), workers: int | None = None,
            split_bytes: int = 64 << 20, progress: bool = True) -> dict:
  """Prepares the corpus `config.data` names into `out`; returns the manifest."""
  out = paths.path(out)
  plan = sources.plan(config.data, split_bytes)
  print_ = tqdm.tqdm.write
  key = fingerprint(config, plan)
  _claim(out, key)
  manifest_file = out / prepared.MANIFEST
  options = pipeline_options(beam_args, workers)
  tokenizer = _tokenizer(config, out, plan, options)
  folder = out / 'shards'
  folder.mkdir(parents=True, exist_ok=True)
  _remove_partials(folder)
  _verify(folder, plan, key, tokenizer)
  todo = [s for s in plan.splits if not (folder / _record_name(s)).exists()]
  if not todo and manifest_file.exists():
    manifest = _manifest(config, out, plan, tokenizer, key)
    if manifest_file.read_bytes() == _manifest_bytes(manifest):
      print_(f'{out} is already prepared from this source and config; every shard checked')
      return manifest
    print_(f'{manifest_file} differs from what the shards record: rewriting it')
  started = time.perf_counter()
  if todo:
    encode = _Encode(config.to_dict(), os.fspath(folder), tokenizer.kind,
                     tokenizer.model_proto, key)
    with _Progress(folder, len(plan.splits), len(plan.splits) - len(todo), progress):
      _run(options, 'encode', todo, encode, folder)
  manifest = _manifest(config, out, plan, tokenizer, key)
  seconds = time.perf_counter() - started
  shards.write_atomic(manifest_file, _manifest_bytes(manifest))
  if (out / '.work').exists():  # the tokenizer's sample
    (out / '.work').rmtree()
  train = manifest['splits']['train']
  print_(f'prepared {out}: {train["documents"]} training documents, {train["tokens"]} tokens '
         f'in {len(train["shards"])} shards, {manifest["splits"]["eval"]["documents"]} held '
         f'out ({seconds:.0f} s)')
  return manifest


def _manifest_bytes(manifest: dict) -> bytes:
  return json.dumps(manifest, indent=1).encode()


def _verify(folder: paths.Path, plan: sources.Plan, key: str, tokenizer):
  """Checks each finished split against its record: its shards' sizes and sha256, and its
  chunk indexes against the shards' document indexes. A chunk index that differs is
  rewritten from its shard; a split with a record that does not decode, was written with
  another tokenizer, or whose shard is missing or damaged loses its record, so that the
  encode pipeline writes it again. Every shard is read once."""
  proto_sha = shards.sha256(tokenizer.model_proto)
  for split in plan.splits:
    record_file = folder / _record_name(split)
    if not record_file.exists():
      continue
    problem = _split_problem(folder, record_file, key, proto_sha)
    if problem:
      tqdm.tqdm.write(f'{problem}: writing split {split.index} again')
      record_file.unlink()


def _split_problem(folder, record_file, key, proto_sha) -> str | None:
  """What is wrong with the split `record_file` records, or None; repairs its chunk
  indexes on the way (they are computed from the shard, which the sha256 vouches for)."""
  try:
    record = json.loads(record_file.read_bytes())
    entries = [record[name] for name in prepared.SPLITS if record[name]]
    if record['fingerprint'] != key or record.get('tokenizer', proto_sha) != proto_sha:
      return f'{record_file} was written for another config or tokenizer'
    checks = [(e['name'], e['bytes'], e['sha256'], e['documents'], e['chunks'])
              for e in entries]
  except (ValueError, KeyError, TypeError):
    return f'{record_file} does not decode'
  for name, size, sha, docs, chunks in checks:
    shard = folder / name
    if not shard.exists():
      return f'shard {shard} is missing'
    data = shard.read_bytes()
    if len(data) != size or shards.sha256(data) != sha:
      return f'shard {shard} does not match its recorded size and sha256'
    offsets = np.frombuffer(data, '<i8', docs + 1, shards.HEADER)
    for chunk_key in chunks:
      index = folder / f'{name}.chunks-{chunk_key}'
      size_, min_len = (int(v) for v in chunk_key.split('-'))
      want = store_lib.chunk_counts(np.diff(offsets), size_, min_len).astype('<i8').tobytes()
      if not index.exists() or index.read_bytes() != want:
        tqdm.tqdm.write(f'chunk index {index} is missing or damaged: rewriting it')
        shards.write_atomic(index, want)
  return None


def _claim(out: paths.Path, key: str):
  """`out` holds nothing, or an earlier prepare of the same source and config."""
  state = out / STATE
  if state.exists():
    if json.loads(state.read_text()).get('fingerprint') != key:
      raise UserError(f'{out} holds a corpus prepared from another source or config; use a '
                      'new --out, or delete that folder to prepare it again')
    return
  if out.exists() and any(out.iterdir()):
    raise UserError(f'--out {out} is a folder with other files; give a new or empty folder')
  out.mkdir(parents=True, exist_ok=True)
  shards.write_atomic(state, json.dumps({'fingerprint': key}).encode())


def _remove_partials(folder: paths.Path):
  """Files a killed worker left half written (local folders only: uploads are whole)."""
  if not paths.is_remote(folder):
    for partial in folder.glob('*.partial-*'):
      partial.unlink()


def _run(options, name: str, splits, fn, where: paths.Path):
  """Runs `fn` over the splits, writing into `where`. A runner hands a worker's exception
  back as text, so a worker records its failure as a file (`_Worker.process`), read here:
  a worker's UserError comes back as one, and so does a full disk."""
  try:
    with beam.Pipeline(options=options) as p:
      _ = (p | f'{name}: splits' >> beam.Create(list(splits))
           | f'{name}: spread' >> beam.Reshuffle()
           | f'{name}: work' >> beam.ParDo(fn))
  except Exception as e:
    failures = _take_failures(where)
    if isinstance(e, UserError):  # a runner in this process raised the worker's own
      raise
    lines = [f['line'] for f in failures if f['kind'] == 'input']
    if lines:
      raise UserError(lines[0]) from None
    if failures or paths.disk_full(where):  # a full disk may refuse the record too
      raise UserError(f'{where}: no space left on the device (or the disk quota is '
                      'exceeded); free some space and rerun the same command: it keeps the '
                      'splits already written') from None
    raise
  _take_failures(where)  # a bundle that failed, then succeeded when the runner retried it


def _take_failures(where: paths.Path) -> list[dict]:
  """The failures workers recorded in `where`, read and removed: a rerun starts clean."""
  failures = []
  for record in sorted(where.glob(f'{_FAILED}*')):
    failures.append(json.loads(record.read_text()))
    record.unlink()
  return failures


def _tokenizer(config, out: paths.Path, plan: sources.Plan, options) -> tokenizers.Tokenizer:
  """tokenizer.path's, or one trained on a bounded, seeded sample of the documents."""
  file = out / 'tokenizer.model'
  if config.tokenizer.path:
    tokenizer = tokenizers.load(config.tokenizer.path)
    if tokenizer.kind != 'sentencepiece':
      raise UserError(f'tokenizer.path {config.tokenizer.path} is a {tokenizer.kind} '
                      'tokenizer; prepare takes sentencepiece .model files')
  elif file.exists() and (kept := _kept_tokenizer(file, out / STATE)) is not None:
    return kept
  else:
    tokenizer = _train_tokenizer(config, out, plan, options)
  shards.write_atomic(file, tokenizer.model_proto)
  state = out / STATE
  shards.write_atomic(state, json.dumps(json.loads(state.read_bytes()) | {
      'tokenizer_sha256': shards.sha256(tokenizer.model_proto)}).encode())
  return tokenizer


def _kept_tokenizer(file: paths.Path, state: paths.Path) -> tokenizers.Tokenizer | None:
  """The tokenizer an earlier prepare trained into `file`, or None when the file no longer
  holds it (it is trained again, and every split written with another is encoded again)."""
  want = json.loads(state.read_bytes()).get('tokenizer_sha256')
  data = file.read_bytes()
  if want is not None and shards.sha256(data) != want:
    tqdm.tqdm.write(f'{file} differs from the tokenizer prepare trained: training it again')
    return None
  return tokenizers.load(file)


def _train_tokenizer(config, out, plan, options):
  chars = config.tokenizer.sample_chars
  rate = min(1.0, 2 * chars / max(plan.num_bytes, 1))
  work = out / '.work'
  work.mkdir(parents=True, exist_ok=True)
  todo = [s for s in plan.splits if not (work / f'sample-{s.index:05d}.json').exists()]
  if todo:
    tqdm.tqdm.write(f'sampling documents for the tokenizer from {len(plan.splits)} splits')
    _run(options, 'sample', todo, _Sample(config.to_dict(), os.fspath(work), rate), work)
  sample = []
  for s in plan.splits:
    sample += json.loads((work / f'sample-{s.index:05d}.json').read_text())
  sample.sort()
  kept, total = [], 0
  for _, text in sample:
    if total >= chars:
      break
    kept.append(text)
    total += len(text)
  if not kept:
    raise UserError(f'the {config.data.source} corpus {config.data.path or ""} has no '
                    'non-blank document; point data.* at a corpus with text')
  tqdm.tqdm.write(f'training a {config.tokenizer.model_type} tokenizer on {len(kept)} '
                  f'sampled documents ({total} characters)')
  state = out / STATE
  sampled = json.loads(state.read_text()) | {'sample': {'documents': len(kept),
                                                       'characters': total}}
  shards.write_atomic(state, json.dumps(sampled).encode())
  with tempfile.TemporaryDirectory() as tmp:
    tokenizer = tokenizers.train(kept, config.tokenizer.vocab_size,
                                 paths.path(tmp) / 'tokenizer', config.tokenizer.model_type)
  return tokenizer


class _Worker(beam.DoFn):
  """A DoFn that ends its worker process with the command that started it.

  The DirectRunner's workers are processes of their own: after a Ctrl-C (the CLI exits at
  once) or a kill -9 of the command they went on encoding and writing into --out. In a
  worker process (not the one that built the pipeline) a thread watches the parent and
  exits once it is gone; every file is written whole, so a rerun finds no torn one.
  """

  def __init__(self, where: str):
    super().__init__()
    self._launcher = os.getpid()
    self.where = where  # the folder it writes into, and where a failure is recorded

  def process(self, split):
    """`work` on one split; a UserError or a full disk is also recorded beside the output
    (its kind and line), for `_run` to read."""
    try:
      yield from self.work(split)
    except UserError as e:
      self._record(split, 'input', str(e))
      raise
    except OSError as e:
      if e.errno in paths.DISK_FULL:
        self._record(split, 'disk_full', str(e))
      raise

  def _record(self, split, kind: str, line: str):
    try:
      paths.write_whole(paths.path(self.where) / f'{_FAILED}{split.index:05d}.json',
                        json.dumps({'kind': kind, 'line': line}))
    except OSError:
      pass  # a full disk refuses the record too: `_run` then asks the disk

  def work(self, split):
    raise NotImplementedError

  def setup(self):
    if os.getpid() == self._launcher:
      return
    parent = os.getppid()

    def watch():
      while os.getppid() == parent:
        time.sleep(0.5)
      os._exit(1)

    threading.Thread(target=watch, daemon=True, name='ssljax-parent-watch').start()


def _doc_keys(split: sources.Split, count: int) -> np.ndarray:
  """A number per document of a split, for the seeded draws (sample, held-out split)."""
  return np.uint64(split.index) * np.uint64(2**32) + np.arange(count, dtype=np.uint64)


class _Sample(_Worker):
  """Beam DoFn: a split's documents drawn with probability `rate`, with their draws."""

  def __init__(self, config: dict, work: str, rate: float):
    super().__init__(work)
    self.config, self.rate = config, rate

  def work(self, split):
    config = ml_collections.ConfigDict(self.config)
    docs = list(sources.documents(split, config.data))
    draws = examples_lib.uniform(config.train.seed, _doc_keys(split, len(docs)), 7)
    kept = [(float(u), d) for u, d in zip(draws, docs) if u < self.rate]
    shards.write_atomic(paths.path(self.where) / f'sample-{split.index:05d}.json',
                        json.dumps(kept).encode())
    yield split.index


def _record_name(split: sources.Split) -> str:
  return f'split-{split.index:05d}.json'


class _Encode(_Worker):
  """Beam DoFn: one split tokenized into its train and eval shards (and their chunk index
  for the config's objective and length), then the record that says they are whole."""

  def __init__(self, config: dict, folder: str, kind: str, proto: bytes, key: str):
    super().__init__(folder)
    self.config, self.kind, self.proto, self.key = config, kind, proto, key
    self._tokenizer: tokenizers.Tokenizer | None = None

  def work(self, split):
    config = ml_collections.ConfigDict(self.config)
    if self._tokenizer is None:
      self._tokenizer = tokenizers.from_proto(self.kind, self.proto)
    tokenizer, folder = self._tokenizer, paths.path(self.where)
    token_docs = []
    batch = []
    for doc in sources.documents(split, config.data):
      batch.append(doc)
      if len(batch) == _ENCODE_BATCH:
        token_docs += tokenizer.encode(batch)
        batch = []
    token_docs += tokenizer.encode(batch) if batch else []
    token_docs = [t for t in token_docs if len(t)]
    held = (examples_lib.uniform(config.train.seed, _doc_keys(split, len(token_docs)), 8)
            < config.data.eval_fraction)
    chunking = examples_lib.chunking(config.objective, config.data.seq_len)
    dtype = shards.token_dtype(tokenizer.vocab_size)
    record = {'fingerprint': self.key, 'split': split.index,
              'tokenizer': shards.sha256(self.proto)}
    for name, keep in (('train', ~held), ('eval', held)):
      docs = [t for t, k in zip(token_docs, keep) if k]
      record[name] = None
      if docs:
        shard = f'{name}-{split.index:05d}'
        data = shards.encode(docs, dtype)
        if chunking:
          index = shards.chunk_index_bytes(docs, *chunking)
          shards.write_atomic(folder / f'{shard}.chunks-{chunking[0]}-{chunking[1]}', index)
        shards.write_atomic(folder / shard, data)
        record[name] = {'name': shard, 'documents': len(docs),
                        'tokens': int(sum(len(d) for d in docs)), 'bytes': len(data),
                        'sha256': shards.sha256(data),
                        'chunks': ({store_lib.chunk_key(*chunking): int(
                            np.frombuffer(index, '<i8')[-1])} if chunking else {})}
    shards.write_atomic(folder / _record_name(split), json.dumps(record).encode())
    yield split.index


def _manifest(config, out, plan, tokenizer, key) -> dict:
  records = [json.loads((out / 'shards' / _record_name(s)).read_text()) for s in plan.splits]
  splits: dict[str, dict] = {}
  chunks: dict[str, dict[str, list]] = {}
  for name in prepared.SPLITS:
    entries = [r[name] for r in records if r[name]]
    splits[name] = {'documents': sum(e['documents'] for e in entries),
                    'tokens': sum(e['tokens'] for e in entries),
                    'shards': [{k: e[k] for k in ('name', 'documents', 'tokens', 'bytes',
                                                  'sha256')} for e in entries]}
    for e in entries:
      for chunk, count in e['chunks'].items():
        chunks.setdefault(chunk, {}).setdefault(name, []).append(count)
  data = {k: config.data[k] for k in ('source', 'path', 'text_field', 'tfds_name',
                                      'tfds_split', 'tfds_data_dir', 'eval_fraction')}
  return {
      'format': prepared.FORMAT,
      'fingerprint': key,
      'source': {'fingerprint': plan.fingerprint, 'data': data, 'splits': len(plan.splits),
                 'bytes': plan.num_bytes},
      'tokenizer': {'file': 'tokenizer.model', 'kind': tokenizer.kind,
                    'vocab_size': tokenizer.vocab_size,
                    'sha256': shards.sha256(tokenizer.model_proto),
                    'path': config.tokenizer.path,
                    'sample': json.loads((out / STATE).read_text()).get('sample')},
      'seed': config.train.seed,
      'splits': splits,
      'chunks': chunks,
  }


class _Progress:
  """A bar over the splits done, with tokens/s, read from the records workers write."""

  def __init__(self, folder, total: int, done: int, enabled: bool):
    self.folder, self.done, self.enabled = folder, done, enabled
    self.bar = tqdm.tqdm(total=total, initial=done, unit='split', disable=not enabled,
                         dynamic_ncols=True)
    self.stop = threading.Event()
    self.thread = threading.Thread(target=self._watch, daemon=True)

  def _records(self) -> set:
    return {r.name for r in self.folder.glob('split-*.json')}

  def _watch(self):
    """Splits done so far; tokens/s counts only what this run tokenized (a rerun's
    earlier records count as done, not as speed)."""
    started, earlier, tokens = time.perf_counter(), self._records(), 0
    seen = set(earlier)
    while not self.stop.wait(2.0):
      for name in self._records() - seen:
        seen.add(name)
        entry = json.loads((self.folder / name).read_text())
        tokens += sum(entry[k]['tokens'] for k in prepared.SPLITS if entry.get(k))
      self.bar.n = min(self.bar.total, len(seen))
      self.bar.set_postfix(tokens_per_s=f'{tokens / (time.perf_counter() - started):.3g}')

  def __enter__(self):
    if self.enabled:
      self.thread.start()
    return self

  def __exit__(self, *exc):
    self.stop.set()
    if self.enabled:
      self.thread.join()
    self.bar.close()
