"""Turns sweep results into the paper's table (mean ± std over seeds) and curves."""

import collections
import os
from collections.abc import Sequence

import numpy as np
from matplotlib import figure as mpl_figure
from matplotlib import ticker

from examples.training import methods as methods_lib
from examples.training.sweep import RunResult

Column = tuple[str, str, int]
"""``(history key, column label, decimals)`` for a table column or a plot."""


def _group(results: Sequence[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
  groups = collections.defaultdict(list)
  for result in results:
    groups[result.model, result.method].append(result)
  return groups


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def markdown_table(results: Sequence[RunResult], columns: Sequence[Column], dataset: str) -> str:
  """The paper's table layout: one row per model and method, final-epoch values.

  Each cell is ``mean ± std`` over seeds (sample std).
  """
  header = ['Dataset', 'Model', 'Method'] + [label for _, label, _ in columns] + ['Seeds']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for (model, method), runs in _group(results).items():
    cells = [dataset, model, methods_lib.DESCRIPTIONS.get(method, method)]
    for key, _, decimals in columns:
      mean, std = mean_and_std([run.history[-1][key] for run in runs])
      cells.append(f'{mean:.{decimals}f} ± {std:.{decimals}f}')
    cells.append(str(len(runs)))
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot_curves(results: Sequence[RunResult], curves: Sequence[Column], path: str) -> str:
  """Per-epoch curves, one line per method (mean over seeds, band = ±1 std).

  One row of panels per model, one panel per entry of ``curves``.

  Returns:
    ``path``, where the PNG was written.
  """
  groups = _group(results)
  models = list(dict.fromkeys(model for model, _ in groups))
  # A bare Figure (no pyplot) renders to files without choosing a backend, so importing this
  # module leaves a notebook's inline plotting alone.
  figure = mpl_figure.Figure(figsize=(5 * len(curves), 3.6 * len(models)))
  axes = figure.subplots(len(models), len(curves), squeeze=False)
  for row, model in enumerate(models):
    for (key, label, _), ax in zip(curves, axes[row]):
      for (group_model, method), runs in groups.items():
        if group_model != model:
          continue
        values = np.array([[record[key] for record in run.history] for run in runs])
        epochs = np.arange(1, values.shape[1] + 1)
        mean = values.mean(0)
        std = values.std(0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
        ax.plot(epochs, mean, label=methods_lib.DESCRIPTIONS.get(method, method))
        ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
      ax.set(title=f'{model}: {label}', xlabel='epoch', ylabel=label)
      ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
      ax.grid(alpha=0.3)
  axes[0, -1].legend(fontsize='small')
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=120)
  return path


def write_report(
    results: Sequence[RunResult],
    workdir: str,
    *,
    dataset: str,
    table_columns: Sequence[Column],
    curves: Sequence[Column],
) -> tuple[str, str]:
  """Writes ``table.md`` and ``curves.png`` into ``workdir``.

  Returns:
    ``(markdown table text, path of the PNG)``.
  """
  table = markdown_table(results, table_columns, dataset)
  with open(os.path.join(workdir, 'table.md'), 'w') as f:
    f.write(table)
  return table, plot_curves(results, curves, os.path.join(workdir, 'curves.png'))
