"""What a person reads after an adaptation run: a markdown table and PNG plots.

`write` covers one run's results.json: the metric table (median, mean +- std over seeds)
with the trivial baseline's row, the learning rates chosen, the warnings (a median that does
not beat the baseline, a classifier collapsed to one class), validation curves of every
seed coloured by init (pretrained vs scratch), the confusion matrix summed over seeds, and
accuracy against the number of shots for prompting. `write_suite` covers `ssljax
evaluate`: one table of tasks by method and init with a baseline column, the GLUE score,
and a bar chart of probe vs fine-tune.
"""

import numpy as np

from ssljax import paths, progress
from ssljax.adapt.results import SeedResult, seed_results


def _pyplot():
  import matplotlib  # slow; only when plotting
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def _cell(stats) -> str:
  if len(stats['values']) == 1:
    return f'{stats["median"]:.4f}'
  return f'{stats["median"]:.4f} ({stats["mean"]:.4f} ± {stats["std"]:.4f})'


def _layer(results) -> str:
  """Which blocks a probe read: those chosen on validation by group ('best'), or 'features
  of block k; ' when one lower than the last was asked for."""
  if not results['method'].startswith('probe'):
    return ''
  layer = str(results.get('settings', {}).get('probe', {}).get('layer', 0))
  if layer == 'best':
    chosen: dict[str, list[str]] = {}
    for run in results['runs']:
      chosen.setdefault(run['group'], []).append(str(run.get('layer', '?')))
    return ('block chosen on validation by seed: ' +
            ', '.join(f'{group} {"/".join(blocks)}' for group, blocks in chosen.items()) + '; ')
  if layer in ('0', 'last', str(results['model']['num_layers'])):
    return ''
  return f'features of block {layer}; '


def markdown(results: dict) -> str:
  """The results table: one row per group (init, or shots) and split, then the baseline's;
  the learning rates chosen, and the warnings (not beating the baseline, collapse)."""
  names = results['metrics_names']
  lines = [f'# {results["task"]}: {results["method"]}', '',
           f'checkpoint `{results["checkpoint"]}` (step {results["checkpoint_step"]}), '
           f'{results["model"]["arch"]} {results["model"]["num_layers"]} x '
           f'{results["model"]["hidden_size"]}, {results["model"]["params"]:,} parameters; '
           f'{_layer(results)}seeds {results["seeds"]}; train examples '
           f'{results["examples"]["train"]}; {results["seconds"]:.0f} s.', '',
           'Median over seeds (mean ± sample std).', '',
           '| run | split | ' + ' | '.join(names) + ' |',
           '|---|---|' + '---|' * len(names)]
  for group, splits in results['metrics'].items():
    for split, stats in splits.items():
      lines.append(f'| {group} | {split} (n={results["examples"][split]}) | ' +
                   ' | '.join(_cell(stats[n]) for n in names) + ' |')
  lines += _baseline_rows(results) + _grid_table(results)
  lines += ['', *(f'**Warning:** {w}.' for w in results.get('warnings', ()))]
  return '\n'.join(lines) + '\n'


def _baseline_rows(results) -> list[str]:
  """A table row per split for the trivial baseline, and any metric it has beyond the
  table's (the training mean's squared error)."""
  names, lines, extra = results['metrics_names'], [], []
  for split, metrics in results.get('baseline', {}).items():
    lines.append(f'| baseline: {results["baseline_name"]} | {split} '
                 f'(n={results["examples"][split]}) | ' +
                 ' | '.join(f'{metrics[n]:.4f}' for n in names) + ' |')
    extra += [f'{name} {value:.4f} on {split}' for name, value in metrics.items()
              if name not in names]
  return lines + ([f'\nThe baseline\'s {", ".join(extra)}.'] if extra else [])


def _grid_table(results) -> list[str]:
  """Each seed's validation score at every learning rate tried, and the one chosen."""
  runs = [r for r in seed_results(results) if len(r.grid or ()) > 1]
  if not runs:
    return []
  main = results['metrics_names'][0]
  rates = [progress.rate(t.lr) for t in runs[0].grid or ()]
  lr = results['settings'].get('finetune', {}).get('lr', 'auto')
  lines = ['', f'Learning rate and epoch chosen on the validation split carved from train '
           f'(finetune.lr={lr}); validation {main} at the best epoch of each rate:', '',
           '| run | seed | lr | epoch | ' + ' | '.join(rates) + ' |',
           '|---|---|---|---|' + '---|' * len(rates)]
  for r in runs:
    assert r.lr is not None  # a grid of rates is fine-tuning's
    lines.append(f'| {r.group} | {r.seed} | {progress.rate(r.lr)} | {r.epoch} | ' +
                 ' | '.join(f'{t.val:.4f}' for t in r.grid or ()) + ' |')
  return lines


# What each plot shows, as report.md captions it.
_CAPTIONS = {'curves.png': 'validation metric and training loss by epoch',
             'confusion.png': 'confusion matrix', 'shots.png': 'accuracy against shots'}


def write(results: dict, workdir, spec) -> list[paths.Path]:
  """The plots that fit the method and task, then report.md showing them; returns the
  paths written."""
  workdir = paths.path(workdir)
  plots = []
  runs = seed_results(results)
  if any(r.curve for r in runs):
    plots.append(_curves(runs, results, workdir / 'curves.png'))
  if spec.kind == 'classification' and 'confusion_matrix' in _first_eval(runs[0]):
    plots.append(_confusion(runs, spec, workdir / 'confusion.png'))
  if any(r.shots is not None for r in runs):
    plots.append(_shots(runs, results, workdir / 'shots.png'))
  paths.write_whole(workdir / 'report.md', markdown(results) + embedded(plots))
  return [workdir / 'report.md', *plots]


def embedded(plots) -> str:
  """Markdown that shows each PNG (written next to report.md) under the tables."""
  if not plots:
    return ''
  return '\n' + ''.join(f'![{_CAPTIONS.get(p.name, p.stem)}]({p.name})\n\n' for p in plots)


def _first_eval(one: SeedResult) -> dict:
  return next(iter(one.evals.values()))


def _curves(runs: list[SeedResult], results, out):
  """Validation metric (and training loss) by epoch, or by penalty for ridge: one colour
  per seed, a line style per init, a star where each seed's chosen epoch (or penalty) is,
  and the trivial baseline's score on the evaluation split as a dotted line."""
  plt = _pyplot()
  from matplotlib import ticker
  main = results['metrics_names'][0]
  curves = [(r, r.curve or []) for r in runs]
  has_loss = any('loss' in p for _, curve in curves for p in curve)
  fig, axes = plt.subplots(1, 1 + has_loss, figsize=(6 + 5 * has_loss, 4), squeeze=False)
  seeds = list(dict.fromkeys(r.seed for r in runs))
  colours = {seed: plt.cm.tab10.colors[i % 10] for i, seed in enumerate(seeds)}
  styles = dict(zip(dict.fromkeys(r.group for r in runs), ('-', '--', ':', '-.')))
  x = 'epoch' if 'epoch' in curves[0][1][0] else 'lambda'  # the ridge probe's penalty
  chosen = {'epoch': lambda r: r.epoch, 'lambda': lambda r: r.penalty}[x]
  for r, curve in curves:
    style = dict(color=colours[r.seed], linestyle=styles[r.group])
    label = f'{r.group} seed {r.seed}'
    points = [(p[x], p[f'val_{main}']) for p in curve]
    axes[0, 0].plot(*zip(*points), marker='o', markersize=4, label=label, **style)
    best = [(px, py) for px, py in points if px == chosen(r)]
    if best:
      axes[0, 0].plot(*best[0], marker='*', markersize=14, color=colours[r.seed],
                      markeredgecolor='black', linestyle='none')
    losses = [(p['epoch'], p['loss']) for p in curve if 'loss' in p]
    if has_loss and losses:
      axes[0, 1].plot(*zip(*losses), marker='o', markersize=4, label=label, **style)
  split, base = next(iter(results.get('baseline', {}).items()), (None, {}))
  if main in base:
    axes[0, 0].axhline(base[main], color='grey', linestyle=':', linewidth=1.5,
                       label=f'baseline ({results["baseline_name"]}) on {split}')
  axes[0, 0].plot([], [], marker='*', markersize=12, color='white', markeredgecolor='black',
                  linestyle='none', label=f'chosen {x}')
  axes[0, 0].set(xlabel=x, ylabel=f'validation {main}', xscale='log' if x == 'lambda' else 'linear',
                 title=f'{results["task"]} {results["method"]}')
  if has_loss:
    axes[0, 1].set(xlabel='epoch', ylabel='training loss (mean over the epoch)',
                   title='training loss')
  for ax in axes[0]:
    if x == 'epoch':
      ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return _save(plt, fig, out)


def _confusion(runs: list[SeedResult], spec, out):
  """Rows: true label, columns: predicted; counts of the first init summed over seeds."""
  group = runs[0].group
  split = next(iter(runs[0].evals))
  counts = np.sum([r.evals[split]['confusion_matrix'] for r in runs if r.group == group],
                  axis=0)
  fig = confusion_figure(counts, spec.labels, f'{spec.name} {split}, {group} '
                         f'({sum(r.group == group for r in runs)} seeds summed)')
  return _save(_pyplot(), fig, out)


def confusion_figure(counts, labels, title):
  """The counts on a colour scale from 0 (white) to the largest count, each cell's number
  in black or white, whichever stands out from the cell's own colour."""
  plt = _pyplot()
  counts = np.asarray(counts)
  fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 3, 1.2 * len(labels) + 2))
  image = ax.imshow(counts, cmap='Blues', vmin=0, vmax=max(int(counts.max()), 1))
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='examples')
  for (i, j), n in np.ndenumerate(counts):
    ax.text(j, i, int(n), ha='center', va='center', color=text_colour(image.cmap(image.norm(n))))
  ticks = range(len(labels))
  ax.set_xticks(ticks, labels, rotation=45, ha='right')
  ax.set_yticks(ticks, labels)
  ax.set(xlabel='predicted', ylabel='true', title=title)
  return fig


def text_colour(rgba) -> str:
  """Black on a light background, white on a dark one (relative luminance, WCAG)."""
  r, g, b = rgba[:3]
  return 'white' if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else 'black'


def _shots(runs: list[SeedResult], results, out):
  """The main metric against the number of demonstrations, median and every seed."""
  plt = _pyplot()
  main = results['metrics_names'][0]
  fig, ax = plt.subplots(figsize=(6, 4))
  for init in dict.fromkeys(r.init for r in runs):
    mine = [r for r in runs if r.init == init]
    for split in mine[0].evals:
      ks = sorted({r.shots for r in mine if r.shots is not None})
      values = [[r.evals[split]['metrics'][main] for r in mine if r.shots == k]
                for k in ks]
      ax.plot(ks, [np.median(v) for v in values], marker='o', label=f'{init} {split}')
      for k, v in zip(ks, values):
        ax.scatter([k] * len(v), v, s=8, alpha=0.4)
  ax.set(xlabel='demonstrations (k)', ylabel=main, title=f'{results["task"]}: k-shot')
  ax.grid(alpha=0.3)
  ax.legend()
  return _save(plt, fig, out)


def _save(plt, fig, out):
  paths.save_figure(fig, out)
  plt.close(fig)
  return out


def suite_markdown(suite) -> str:
  """Tasks by (method, init): the median of each split's first metric."""
  columns = list(dict.fromkeys(c for t in suite['tasks'].values() for c in t))
  lines = [f'# Evaluation of `{suite["checkpoint"]}`', '',
           'Median over seeds of each task\'s main metric (first listed).', '',
           '| task | split | metric | ' + ' | '.join(columns) + ' |',
           '|---|---|---|' + '---|' * len(columns)]
  for task, by_column in suite['tasks'].items():
    first = next(iter(by_column.values()))
    for split, stats in first.items():
      metric = next(iter(stats))
      cells = [f'{by_column[c][split][metric]["median"]:.4f}' if c in by_column else ''
               for c in columns]
      lines.append(f'| {task} | {split} | {metric} | ' + ' | '.join(cells) + ' |')
  for column, score in suite.get('glue_average', {}).items():
    lines.append(f'\nGLUE average ({column}, {score["tasks"]} tasks'
                 f'{"" if score["complete"] else ", not all nine: not the GLUE score"}): '
                 f'{score["value"]:.4f}')
  lines += ['', *(f'**Warning:** {w}.' for w in suite.get('warnings', ()))]
  return '\n'.join(lines) + '\n'


def write_suite(suite, workdir) -> list[paths.Path]:
  """report.md and methods.png (a bar per task and method/init) for `ssljax evaluate`."""
  workdir = paths.path(workdir)
  paths.write_whole(workdir / 'report.md', suite_markdown(suite))
  plt = _pyplot()
  names = list(suite['tasks'])
  columns = list(dict.fromkeys(c for t in suite['tasks'].values() for c in t))
  width = 0.8 / len(columns)
  fig, ax = plt.subplots(figsize=(2 + 1.5 * len(names), 4))
  for i, column in enumerate(columns):
    medians, errors = [], []
    for task in names:
      stats = _main_stats(suite['tasks'][task].get(column))
      medians.append(stats['median'] if stats else np.nan)
      errors.append(stats['std'] if stats else 0)
    ax.bar(np.arange(len(names)) + i * width, medians, width, yerr=errors, label=column)
  ax.set_xticks(np.arange(len(names)) + width * (len(columns) - 1) / 2, names)
  ax.set(ylabel='main metric (median over seeds)', title='probe vs fine-tune')
  ax.grid(alpha=0.3, axis='y')
  ax.legend(fontsize=8)
  return [workdir / 'report.md', _save(plt, fig, workdir / 'methods.png')]


def _main_stats(by_split):
  if not by_split:
    return None
  stats = next(iter(by_split.values()))
  return next(iter(stats.values()))


def plot_compare(out, file):
  """compare.png: for each task, method and split, every seed's main metric of A and of B
  on one row (medians as bars), so a delta shows next to the spread of seeds."""
  plt = _pyplot()
  rows = [r for r in out['rows'] if r['main']]
  fig, ax = plt.subplots(figsize=(7, 1.2 + 0.6 * len(rows)))
  colours = dict(zip(out['names'], plt.cm.tab10.colors))
  for y, row in enumerate(rows):
    for side, name, shift in (('a', out['names'][0], 0.15), ('b', out['names'][1], -0.15)):
      values = row[side]['values']
      ax.scatter(values, [y + shift] * len(values), color=colours[name], s=25, alpha=0.7,
                 label=name if y == 0 else None)
      ax.plot([row[side]['median']] * 2, [y + shift - 0.12, y + shift + 0.12],
              color=colours[name], linewidth=2.5)
  ax.set_yticks(range(len(rows)), [f'{r["task"]} {r["method"]} {r["group"]}\n{r["split"]} '
                                   f'{r["metric"]}' for r in rows], fontsize=8)
  ax.set_ylim(-0.6, len(rows) - 0.4)
  ax.invert_yaxis()
  ax.set(xlabel='main metric (dots: seeds, bars: medians)',
         title=f'{out["names"][0]} against {out["names"][1]}')
  ax.grid(alpha=0.3, axis='x')
  ax.legend(fontsize=8)
  return _save(plt, fig, file)
