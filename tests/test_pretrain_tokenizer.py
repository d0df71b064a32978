"""The workdir's tokenizer is the run's only once the run has checkpointed: a leftover from a
run that failed earlier is ignored and replaced by the configured one."""

import logging

from ssljax import tokenizers
from ssljax.data import corpus
from ssljax.pretrain import loop as train

from conftest import tiny_config


def test_a_leftover_tokenizer_is_replaced(corpus_file, tokenizer_file, tmp_path, caplog):
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file})
  docs = corpus.load_documents(config.data)[:40]
  stale = tokenizers.train(docs, 200, tmp_path / 'stale')  # another corpus and vocab_size
  stale.save(tmp_path / 'run')
  with caplog.at_level(logging.WARNING):
    tok = train.load_tokenizer(config, tmp_path / 'run', docs)
  assert tok.model_proto == tokenizer_file.read_bytes() and tok.vocab_size == 400
  assert (tmp_path / 'run' / 'tokenizer.model').read_bytes() == tokenizer_file.read_bytes()
  assert 'left by a run that saved no checkpoint' in caplog.text
  assert sorted(p.name for p in (tmp_path / 'run').iterdir()) == ['tokenizer.model']


def test_a_checkpointed_runs_tokenizer_is_kept(corpus_file, tokenizer_file, tmp_path):
  config = tiny_config(corpus_file, **{'tokenizer.path': tokenizer_file})
  docs = corpus.load_documents(config.data)[:40]
  own = tokenizers.train(docs, 200, tmp_path / 'own')
  own.save(tmp_path / 'run')
  (tmp_path / 'run' / 'checkpoints' / '3').mkdir(parents=True)
  assert train.load_tokenizer(config, tmp_path / 'run', docs).model_proto == own.model_proto
