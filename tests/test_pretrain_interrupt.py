"""Ctrl-C inside the training loop: the step is saved (also when no checkpoint was due),
Ctrl-C pressed again while that save is written is ignored, the command exits 130 with one
line, and rerunning it continues exactly where an uninterrupted run goes."""

import importlib
import signal

import numpy as np
import pytest

from ssljax import checkpoint, cli
from ssljax.pretrain import metrics

import process_helpers as ph
from conftest import tiny_overrides

cli_main = importlib.import_module('ssljax.cli.main')  # ssljax.cli.main is also a function
pytestmark = pytest.mark.slow  # two runs of the tiny model (~25 s on 2 loaded cores)


def _leaked(signum=None, frame=None):
  """Stands in for the CLI's handler (which would end this process): a Ctrl-C that reaches
  it was not held by the loop."""
  raise KeyboardInterrupt


def test_ctrl_c_saves_exits_130_and_the_rerun_continues_exactly(
    corpus_file, tokenizer_file, pretrained_run, tmp_path, capsys, monkeypatch):
  workdir = tmp_path / 'run'
  # pretrained_run's config, but no checkpoint due at step 3, where Ctrl-C stops the loop.
  argv = ['pretrain', '--workdir', str(workdir)]
  argv += [a for o in tiny_overrides(corpus_file, **{
      'tokenizer.path': tokenizer_file, 'mesh.data': 8, 'train.checkpoint_every': 5})
           for a in ('--set', o)]
  monkeypatch.setattr(cli_main, '_interrupted', _leaked)
  write, save = metrics.Writer.write, checkpoint.save

  def write_then_ctrl_c(self, step, values):
    write(self, step, values)
    if step == 1 and 'loss' in values:
      signal.raise_signal(signal.SIGINT)

  saves = []

  def save_then_ctrl_c_twice(mgr, step, *args):
    save(mgr, step, *args)  # async: its files are written while the loop goes on
    saves.append(step)
    wait = mgr.wait_until_finished

    def ctrl_c_twice_then_wait():
      signal.raise_signal(signal.SIGINT)
      signal.raise_signal(signal.SIGINT)
      wait()

    mgr.wait_until_finished = ctrl_c_twice_then_wait

  monkeypatch.setattr(metrics.Writer, 'write', write_then_ctrl_c)
  monkeypatch.setattr(checkpoint, 'save', save_then_ctrl_c_twice)
  capsys.readouterr()
  assert cli.main(argv) == 130
  assert capsys.readouterr().err == ('ssljax: interrupted at step 3: checkpoint saved; rerun '
                                     'the same command to continue\n')
  assert saves == [3] and checkpoint.held(workdir) == ['3']
  assert sorted(ph.losses(workdir)) == [1, 2, 3]

  monkeypatch.undo()
  assert cli.main(argv) == 0
  resumed, reference = ph.losses(workdir), ph.losses(pretrained_run)
  assert sorted(resumed) == sorted(reference) == list(range(1, 7))
  np.testing.assert_allclose([resumed[s] for s in range(1, 7)],
                             [reference[s] for s in range(1, 7)], rtol=1e-6)
  for a, b in zip(ph.params(workdir), ph.params(pretrained_run), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
