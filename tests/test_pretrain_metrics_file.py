"""metrics.jsonl after a crash: a torn last line is cut away before appending, the rows of
steps a resumed run logs again are not kept twice, and `plot` reads what is readable."""

import json

import numpy as np

from ssljax import cli
from ssljax.pretrain import metrics


def _rows(steps):
  return ''.join(json.dumps({'step': s, 'loss': 10.0 - s}) + '\n' for s in steps)


def test_a_resume_after_a_torn_write_keeps_one_row_per_step(tmp_path):
  # Checkpoint at step 6, rows logged through step 8, killed while writing step 9's row.
  (tmp_path / 'metrics.jsonl').write_text(_rows(range(1, 9)) + '{"step": 9, "lo')
  writer = metrics.Writer(tmp_path)
  for step in (7, 8, 9):  # the resumed run logs from step 7 again
    writer.write(step, {'loss': 1.0})
  writer.close()
  rows = metrics.read(tmp_path)
  assert [r['step'] for r in rows] == list(range(1, 10))
  assert [r['loss'] for r in rows] == [10.0 - s for s in range(1, 7)] + [1.0] * 3


def test_plot_reads_what_is_readable(tmp_path, capsys):
  (tmp_path / 'metrics.jsonl').write_text(_rows(range(1, 5)) + '{"step": 5, "lo')
  assert [r['step'] for r in metrics.read(tmp_path)] == [1, 2, 3, 4]
  assert cli.main(['plot', str(tmp_path)]) == 0
  assert (tmp_path / 'loss.png').stat().st_size > 1000
  assert cli.main(['plot', str(tmp_path / 'none')]) == 2
  assert capsys.readouterr().err.count('\n') == 1


def test_bytes_that_are_not_utf8_are_a_torn_line_not_a_stop(tmp_path):
  """A block of metrics.jsonl overwritten with bytes that are not UTF-8: the resumed run
  cuts that line like a torn one and keeps writing; plot reads the rest."""
  text = _rows(range(1, 7)).encode()
  broken = text.replace(b'"step": 3', b'"st\xff\xfe": 3')
  (tmp_path / 'metrics.jsonl').write_bytes(broken)
  assert [r['step'] for r in metrics.read(tmp_path)] == [1, 2, 4, 5, 6]
  writer = metrics.Writer(tmp_path)
  for step in (7, 8):
    writer.write(step, {'loss': 1.0})
  writer.close()
  assert [r['step'] for r in metrics.read(tmp_path)] == [1, 2, 4, 5, 6, 7, 8]
  assert (tmp_path / 'metrics.jsonl').read_bytes().decode('utf-8')  # clean again


def test_a_gpt_plot_draws_its_loss_once_and_its_perplexity(tmp_path, monkeypatch):
  rows = [{'step': s, 'loss': 6.0 - s / 10, 'clm_loss': 6.0 - s / 10,
           'clm_perplexity': float(np.exp(6.0 - s / 10)), 'clm_accuracy': s / 100}
          for s in range(1, 21)]
  rows += [{'step': s, 'eval_loss': 6.1 - s / 10, 'eval_clm_loss': 6.1 - s / 10}
           for s in (10, 20)]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  figures = []
  monkeypatch.setattr(metrics.paths, 'save_figure', lambda fig, out: figures.append(fig))
  metrics.plot(tmp_path)
  loss, perplexity, accuracy = figures[0].axes
  assert [line.get_label() for line in loss.lines] == ['clm_loss (= loss)',
                                                       'eval_clm_loss (= eval_loss)']
  assert perplexity.get_yscale() == 'log'
  drawn = {line.get_label(): line.get_ydata() for line in perplexity.lines}
  assert set(drawn) == {'clm_perplexity', 'eval_clm_perplexity'}
  np.testing.assert_allclose(drawn['eval_clm_perplexity'], np.exp([5.1, 4.1]))
  assert [line.get_label() for line in accuracy.lines] == ['clm_accuracy']


def test_an_mlm_nsp_plot_keeps_every_loss(tmp_path, monkeypatch):
  rows = [{'step': s, 'loss': 7.0 - s / 10, 'mlm_loss': 6.5 - s / 10, 'nsp_loss': 0.5}
          for s in range(1, 5)]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  figures = []
  monkeypatch.setattr(metrics.paths, 'save_figure', lambda fig, out: figures.append(fig))
  metrics.plot(tmp_path)
  assert len(figures[0].axes) == 1
  assert [line.get_label() for line in figures[0].axes[0].lines] == ['loss', 'mlm_loss',
                                                                     'nsp_loss']
