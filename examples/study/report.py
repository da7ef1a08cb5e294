"""Turns sweep results into the paper's table (mean ± std over seeds), curves and gradient figure."""

import collections
import itertools
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from matplotlib import figure as mpl_figure
from matplotlib import ticker

from examples.study import methods as methods_lib
from examples.study import sweep
from examples.study.sweep import RunResult
from examples.training import gradient_log
from examples.training import metrics_log

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


def welch_t(a: Sequence[float], b: Sequence[float]) -> float:
  """Welch's t of ``mean(a) - mean(b)`` (sample variances; NaN where either has one value)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or len(b) < 2:
    return float('nan')
  with np.errstate(divide='ignore', invalid='ignore'):
    return float((a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


def differences_table(results: Sequence[RunResult], columns: Sequence[Column]) -> str:
  """Every pair of a model's methods: the difference of their final-epoch means, and Welch's t.

  A row ``A | B`` holds ``mean(A) - mean(B)`` over seeds, A the later method
  of the sweep, and its t in brackets. With three seeds a side, ``|t|`` above
  about 4.3 (two-sided 5% at 2 degrees of freedom, the fewest Welch's test
  gives them) is beyond the seeds' noise.
  """
  header = ['Model', 'Method', 'Minus'] + [f'Δ {label} (t)' for _, label, _ in columns]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  groups = _group(results)
  for model in dict.fromkeys(model for model, _ in groups):
    names = [method for group_model, method in groups if group_model == model]
    for earlier, later in itertools.combinations(names, 2):
      cells = [model, methods_lib.DESCRIPTIONS.get(later, later),
               methods_lib.DESCRIPTIONS.get(earlier, earlier)]
      for key, _, decimals in columns:
        a, b = ([run.history[-1][key] for run in groups[model, name]] for name in (later, earlier))
        cells.append(f'{np.mean(a) - np.mean(b):+.{decimals}f} ({welch_t(a, b):+.1f})')
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
  return _save(figure, axes, path)


def _save(figure: mpl_figure.Figure, axes: np.ndarray, path: str) -> str:
  """Integer x ticks and a grid on every panel, the legend on the top right one, the PNG."""
  for ax in axes.flat:
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
  axes[0, -1].legend(fontsize='small')
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=120)
  return path


class DepthProfile(NamedTuple):
  """The gradient norm of every parameter leaf of one model and method, over its seeds."""

  names: list[str]
  """The leaves in parameter (tree) order: the depth axis."""
  steps: tuple[int, int]
  """The first and the last logged step (of the first seed)."""
  norms: np.ndarray
  """``(2, seeds, leaves)``: each leaf's gradient L2 norm before the method's
  transform at those two steps."""


def gradient_depth_profiles(results: Sequence[RunResult],
                            workdir: str) -> dict[tuple[str, str], DepthProfile]:
  """Per-layer gradient norms of the runs that logged them (``--config.log_gradient_statistics``).

  Args:
    results: a sweep's results.
    workdir: the sweep's work directory, which holds each run's
      ``gradient_statistics.jsonl``.

  Returns:
    ``(model, method) -> DepthProfile`` for each group whose runs all logged
    gradient statistics.
  """
  profiles = {}
  for key, runs in _group(results).items():
    paths = [os.path.join(sweep.run_directory(workdir, run.model, run.method, run.seed),
                          gradient_log.FILENAME) for run in runs]
    records = [metrics_log.read(path) for path in paths if os.path.exists(path)]
    if len(records) < len(runs) or not all(records):
      continue
    names = list(records[0][0]['norm_before'])
    norms = np.array([[list(run[i]['norm_before'].values()) for run in records] for i in (0, -1)])
    profiles[key] = DepthProfile(names, (records[0][0]['step'], records[0][-1]['step']), norms)
  return profiles


def plot_gradient_norms(profiles: dict[tuple[str, str], DepthProfile], path: str) -> str:
  """Gradient norm against depth, one colour per method (mean over seeds), log scale.

  One row of panels per model: the first and the last logged step. The x axis
  is the leaf index in parameter order; a line joins the weight matrices and
  convolution kernels (leaves named ``kernel``), and the other leaves (biases,
  normalization scales) are dots.

  Returns:
    ``path``, where the PNG was written.
  """
  models = list(dict.fromkeys(model for model, _ in profiles))
  figure = mpl_figure.Figure(figsize=(11, 3.8 * len(models)))
  axes = figure.subplots(len(models), 2, squeeze=False)
  for row, model in enumerate(models):
    groups = {method: p for (m, method), p in profiles.items() if m == model}
    for column, when in enumerate(('first', 'last')):
      ax = axes[row, column]
      for color, (method, profile) in enumerate(groups.items()):
        norms = profile.norms[column].mean(0)
        kernels = np.array([name.rsplit('/', 1)[-1] == 'kernel' for name in profile.names])
        index = np.arange(len(norms))
        line = kernels if kernels.any() else np.ones_like(kernels)
        ax.plot(index[line], norms[line], marker='.', color=f'C{color}',
                label=methods_lib.DESCRIPTIONS.get(method, method))
        ax.plot(index[~line], norms[~line], '.', color=f'C{color}', alpha=0.35)
      steps = sorted({p.steps[column] for p in groups.values()})
      ax.set(title=f'{model}: {when} logged step ({", ".join(map(str, steps))})',
             xlabel='leaf index (parameter order)', ylabel='gradient L2 norm', yscale='log')
  return _save(figure, axes, path)


def write_report(
    results: Sequence[RunResult],
    workdir: str,
    *,
    dataset: str,
    table_columns: Sequence[Column],
    curves: Sequence[Column],
) -> tuple[str, str]:
  """Writes ``table.md``, ``differences.md`` (:func:`differences_table`) and ``curves.png``.

  If the runs logged gradient statistics, also ``gradient_norms.png``: see
  :func:`gradient_depth_profiles` and :func:`plot_gradient_norms`.

  Returns:
    ``(markdown table text, path of the PNG)``.
  """
  table = markdown_table(results, table_columns, dataset)
  with open(os.path.join(workdir, 'table.md'), 'w') as f:
    f.write(table)
  with open(os.path.join(workdir, 'differences.md'), 'w') as f:
    f.write(differences_table(results, table_columns))
  profiles = gradient_depth_profiles(results, workdir)
  if profiles:
    plot_gradient_norms(profiles, os.path.join(workdir, 'gradient_norms.png'))
  return table, plot_curves(results, curves, os.path.join(workdir, 'curves.png'))
