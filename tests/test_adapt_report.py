"""The plots of an adaptation run read as they should: the confusion matrix's colour scale
starts at 0 and every number stands out from its cell; curves have integer epochs, a colour
per seed, the chosen epoch and the baseline; report.md shows the PNGs it sits next to."""

import json

import matplotlib.colors
import numpy as np
import pytest

from ssljax.adapt import report
from ssljax.tasks import readers

from test_adapt_results import OLD_RESULTS


def _luminance(colour):
  r, g, b = matplotlib.colors.to_rgb(colour)
  return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize('counts', [[[154, 6], [5, 159]], [[154, 159], [150, 157]],
                                    [[0, 0], [0, 0]], [[3, 40, 7], [0, 51, 2], [9, 9, 30]]])
def test_the_confusion_scale_starts_at_zero_and_numbers_stand_out(counts):
  fig = report.confusion_figure(counts, [f'c{i}' for i in range(len(counts))], 'test')
  ax = fig.axes[0]
  image = ax.images[0]
  assert image.norm.vmin == 0 and image.norm.vmax == max(np.max(counts), 1)
  texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
  assert len(texts) == np.size(counts)
  for (i, j), n in np.ndenumerate(counts):
    text = texts[i, j]
    assert text.get_text() == str(n)
    cell = image.cmap(image.norm(n))
    assert abs(_luminance(text.get_color()) - _luminance(cell)) > 0.4, (n, text.get_color())
  report._pyplot().close(fig)


def test_balanced_classes_show_both_colours_of_text():
  fig = report.confusion_figure([[154, 6], [5, 159]], ['negative', 'positive'], 'sst2')
  colours = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
  assert colours == {'154': 'white', '159': 'white', '6': 'black', '5': 'black'}
  report._pyplot().close(fig)


def test_report_md_shows_the_plots_and_curves_mark_what_was_chosen(tmp_path, monkeypatch):
  results = json.loads(OLD_RESULTS)
  figures = []
  monkeypatch.setattr(report, '_save', lambda plt, fig, out: figures.append(fig) or out)
  written = report.write(results, tmp_path, readers.GLUE['sst2'])
  assert [p.name for p in written] == ['report.md', 'curves.png', 'confusion.png']
  text = (tmp_path / 'report.md').read_text()
  assert text.startswith(report.markdown(results))
  assert '![validation metric and training loss by epoch](curves.png)' in text
  assert '![confusion matrix](confusion.png)' in text
  curves = figures[0].axes[0]
  lines = [line for line in curves.lines if line.get_label().startswith(('pretrained', 'scratch'))]
  colour = {line.get_label(): line.get_color() for line in lines}
  assert colour['pretrained seed 0'] == colour['scratch seed 0'] != colour['pretrained seed 1']
  assert {line.get_linestyle() for line in lines} == {'-', '--'}
  stars = [line for line in curves.lines if line.get_marker() == '*' and len(line.get_xdata())]
  chosen = sorted((float(s.get_xdata()[0]), r['seed']) for s, r in zip(stars, results['runs']))
  assert chosen == sorted((float(r['epoch']), r['seed']) for r in results['runs'])
  baseline = [line for line in curves.lines if line.get_label().startswith('baseline')]
  assert baseline and baseline[0].get_ydata()[0] == results['baseline']['dev']['accuracy']
  figures[0].canvas.draw()
  ticks = [t for t in curves.get_xticks() if curves.get_xlim()[0] <= t <= curves.get_xlim()[1]]
  assert ticks == [0, 1, 2]
