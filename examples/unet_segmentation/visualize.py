"""PNG grids of image / ground truth / each method's prediction on the same evaluation images."""

import os
from collections.abc import Mapping

import numpy as np
from matplotlib import figure as mpl_figure

from examples.study import methods as methods_lib


def example_indices(labels: np.ndarray, count: int) -> np.ndarray:
  """``count`` evaluation images with a lesion, evenly spread; the same for every run."""
  with_lesion = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
  candidates = with_lesion if len(with_lesion) >= count else np.arange(len(labels))
  return candidates[np.linspace(0, len(candidates) - 1, min(count, len(candidates))).astype(int)]


def prediction_grid(images: np.ndarray, labels: np.ndarray,
                    predictions: Mapping[str, np.ndarray], path: str, title: str = '') -> str:
  """One row per image: the image, its ground truth, then each prediction's mask.

  Args:
    images: uint8 images (N, H, W, C); C = 3 is shown as RGB, else the first channel.
    labels: binary ground truth (N, H, W, 1).
    predictions: column title -> binary predicted masks (N, H, W, 1).
    path: where the PNG goes.
    title: figure title.

  Returns:
    ``path``.
  """
  columns = ['image', 'ground truth'] + list(predictions)
  # A bare Figure (no pyplot) renders to files without choosing a backend, so importing this
  # module leaves a notebook's inline plotting alone.
  figure = mpl_figure.Figure(figsize=(1.8 * len(columns), 1.8 * len(images) + 0.4))
  axes = figure.subplots(len(images), len(columns), squeeze=False)
  for row, image in enumerate(images):
    panels = [image if image.shape[-1] == 3 else image[..., 0], labels[row, ..., 0]]
    panels += [masks[row, ..., 0] for masks in predictions.values()]
    for column, (panel, ax) in enumerate(zip(panels, axes[row])):
      ax.imshow(panel, cmap=None if panel.ndim == 3 else 'gray', vmin=0,
                vmax=255 if column == 0 else 1, interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(columns[column], fontsize=8)
  figure.suptitle(title)
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=100)
  return path


def write_prediction_grids(run_dirs: Mapping[str, Mapping[str, str]], workdir: str,
                           evaluation: Mapping[str, np.ndarray]) -> list[str]:
  """Writes ``<workdir>/predictions_<model>.png`` from the runs' ``predictions.npz``.

  Args:
    run_dirs: model -> method -> the work directory of the run to show (e.g. its first seed).
    workdir: where the PNGs go.
    evaluation: the evaluation arrays the runs predicted ('image', 'label').

  Returns:
    The paths written.
  """
  paths = []
  for model, method_dirs in run_dirs.items():
    predictions, indices = {}, None
    for method, run_dir in method_dirs.items():
      with np.load(os.path.join(run_dir, 'predictions.npz')) as saved:
        indices = saved['indices']
        predictions[methods_lib.DESCRIPTIONS.get(method, method)] = saved['predictions']
    paths.append(prediction_grid(evaluation['image'][indices], evaluation['label'][indices],
                                 predictions, os.path.join(workdir, f'predictions_{model}.png'),
                                 title=model))
  return paths
