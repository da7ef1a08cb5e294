"""``--config.log_gradient_statistics``: per-layer gradient norm and std at log steps.

The caller (the study) hands the loop a :class:`StepStatistics`: the train step
calls it with each step's gradient, and it computes, only at log steps, the L2
norm and the population std of every parameter leaf's gradient twice: as
backpropagation gives it (``before``) and as the method's gradient transform
hands it to the optimizer's moments (``after``; e.g. z-scored). It returns them
as one ``(4, columns)`` array, which the loop reads together with the rest of
the log step's values: no step waits for the host. The core computes nothing
itself, so it knows no method.

Process 0 writes them to ``<workdir>/gradient_statistics.jsonl``, one record
per log step::

  {"step": 50, "norm_before": {"blocks/0/conv1/conv/kernel": 0.31, ...},
   "std_before": {...}, "norm_after": {...}, "std_after": {...}}

with the leaves in parameter (tree) order. A stacked leaf (``stacked_axes``,
e.g. the layers of ``nnx.scan``) has one entry per layer:
``"blocks/qkv/kernel/0"``, ``"blocks/qkv/kernel/1"``, ...
"""

import os
from collections.abc import Sequence
from typing import Protocol

import jax
import numpy as np

from examples.training import metrics_log

FILENAME = 'gradient_statistics.jsonl'
STATISTICS = ('norm_before', 'std_before', 'norm_after', 'std_after')
"""The rows of the array a :class:`StepStatistics` returns, and the keys of a record."""


class StepStatistics(Protocol):
  """The train step's hook: the statistics of a log step's gradient, a ``(4, columns)`` array."""

  names: Sequence[str]
  """The columns' names: each record's keys under every statistic."""

  def __call__(self, step: jax.Array, grads, params) -> jax.Array:
    """The rows of :data:`STATISTICS` if ``step`` (steps run, after this one) logs, else NaN.

    ``grads`` and ``params`` are pure dicts; the gradient is the global
    (averaged) one.
    """


def record(step: int, names: list[str], statistics: np.ndarray) -> dict:
  """The JSONL record of one log step from the ``(4, leaves)`` array."""
  return {'step': step, **{name: dict(zip(names, map(float, row), strict=True))
                           for name, row in zip(STATISTICS, statistics, strict=True)}}


class GradientStatisticsLog(metrics_log.JsonLinesLog):
  """``<workdir>/gradient_statistics.jsonl``: one record per log step."""

  def __init__(self, workdir: str):
    super().__init__(os.path.join(workdir, FILENAME))

  def start(self, step: int) -> None:
    """Keeps only the records up to ``step``, where this run starts (0 or a checkpoint's).

    Records of later steps belong to a run that went on past that checkpoint,
    or to another run in the same work directory.

    Raises:
      ValueError: naming the file, if it cannot be read: nothing else holds its records.
    """
    if self._enabled and os.path.exists(self.path):
      try:
        records = metrics_log.read(self.path)
        kept = [record for record in records if record['step'] <= step]
      except (ValueError, KeyError, TypeError) as error:  # No checkpoint holds these records.
        what = (error if isinstance(error, ValueError)
                else f'{self.path} holds a record without a step')
        raise ValueError(f'{what}; repair it or move it aside to continue.') from error
      self.rewrite(kept)
