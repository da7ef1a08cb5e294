"""What a task (classification, segmentation, ...) gives the shared training loop."""

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Protocol

import jax
import numpy as np
from flax import nnx

Batch = Mapping[str, jax.Array]
"""A batch of examples. Every batch has a float ``'mask'`` of shape ``[B]``:
1 for real examples, 0 for the padding that fills the last evaluation batch."""

Metrics = dict[str, jax.Array]
"""Metric *sums* over the real (mask 1) examples of a batch, keyed by name."""

COUNT = 'count'
"""Metric key the loop adds itself: the number of real examples summed."""

MASK = 'mask'


@dataclasses.dataclass(frozen=True)
class Task:
  """The task-specific functions of a training run; both are traced by JAX.

  Attributes:
    create_model: ``(rngs, data_axis_name) -> nnx.Module``. Under ``pmap``,
      ``data_axis_name`` names the device axis; a model whose layers reduce
      over the batch (BatchNorm) passes it to them, so their statistics span
      the global batch as in the other parallel modes. Otherwise ``None``.
    train_loss: ``(model, batch) -> (loss, metric_sums)``. ``loss`` is the
      scalar that is differentiated (a mean over the batch), ``metric_sums``
      maps names to sums over real examples, e.g. ``{'loss': ..., 'accuracy':
      ...}``. The model is in training mode.
    eval_metrics: ``(model, batch) -> metric_sums`` with the model in
      evaluation mode (``model.eval()``, e.g. BatchNorm's running statistics).
  """

  create_model: Callable[[nnx.Rngs, str | None], nnx.Module]
  train_loss: Callable[[nnx.Module, Batch], tuple[jax.Array, Metrics]]
  eval_metrics: Callable[[nnx.Module, Batch], Metrics]


class DataSource(Protocol):
  """Process-local NumPy batches; see :class:`examples.training.data.ArraySource`."""

  steps_per_epoch: int
  """Training steps per epoch (the same in every process)."""

  def train_batches(self, epoch: int, start_step: int = 0) -> Iterable[dict[str, np.ndarray]]:
    """This process's part of each global batch of ``epoch``, from ``start_step`` on.

    The order must depend only on the seed and ``epoch``, so that a resumed run
    sees the same batches as an uninterrupted one.
    """

  def eval_batches(self) -> Iterable[dict[str, np.ndarray]]:
    """This process's evaluation batches, padded to full size (``'mask'`` 0).

    Every process must yield the same number of batches.
    """


def means(metric_sums: Mapping[str, float], prefix: str = '') -> dict[str, float]:
  """Turns metric sums into per-example means, e.g. ``{prefix + 'loss': ...}``; NaN if no examples."""
  count = float(metric_sums[COUNT])
  return {prefix + name: float(value) / count if count else math.nan
          for name, value in metric_sums.items() if name != COUNT}
