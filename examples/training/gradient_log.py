"""``--config.log_gradient_statistics``: per-layer gradient norm and std at log steps.

The train step computes, with :func:`znorm_optax.gradient_statistics`, the L2
norm and the population std of every parameter leaf's gradient twice: as
backpropagation gives it (``before``) and as the caller's gradient transform
hands it to the optimizer's moments (``after``; e.g. z-scored). It does so
only at log steps (``lax.cond`` on the step counter) and returns them as one ``(4, leaves)`` array, which the loop reads together
with the rest of the log step's values: no step waits for the host.

Process 0 writes them to ``<workdir>/gradient_statistics.jsonl``, one record
per log step::

  {"step": 50, "norm_before": {"blocks/0/conv1/conv/kernel": 0.31, ...},
   "std_before": {...}, "norm_after": {...}, "std_after": {...}}

with the leaves in parameter (tree) order. A stacked leaf (``stacked_axes``,
e.g. the layers of ``nnx.scan``) has one entry per layer:
``"blocks/qkv/kernel/0"``, ``"blocks/qkv/kernel/1"``, ...
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import znorm_optax
from examples.training import metrics_log

FILENAME = 'gradient_statistics.jsonl'
STATISTICS = ('norm_before', 'std_before', 'norm_after', 'std_after')
"""The rows of the array :class:`StepStatistics` returns, and the keys of a record."""


def leaf_names(params) -> list[str]:
  """``'blocks/0/conv1/conv/kernel'`` for each leaf of a pytree, in leaf order."""
  return [jax.tree_util.keystr(path, simple=True, separator='/')
          for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


class StepStatistics:
  """The train step's part: the statistics at log steps, as a ``(4, leaves)`` array.

  Args:
    gradient_transform: what the optimizer applies to the raw gradient before
      its moments. It must be stateless (an empty state), as z-scoring,
      centralizing and clipping are: the step applies it afresh to read its
      output.
    every_steps: the log interval; the statistics are computed when the step
      counter after the step is a multiple of it, and are NaN otherwise.
    params: a pure-dict tree like the parameters (only its structure and
      shapes are read), to check ``gradient_transform``.
    stacked_axes: the parameters' stacked axes in any form
      :func:`znorm_optax.gradient_statistics` takes, for a pure-dict tree;
      each index along them is a layer with statistics of its own.

  Raises:
    ValueError: if ``gradient_transform`` keeps state.
  """

  def __init__(self, gradient_transform: optax.GradientTransformation, every_steps: int, params,
               stacked_axes: Any = None):
    state = jax.eval_shape(gradient_transform.init, params)
    if jax.tree.leaves(state):
      raise ValueError(
          '--config.log_gradient_statistics=True needs a stateless gradient transform (the part '
          f'of the optimizer before its moments), but this one keeps state {state}.')
    self._transform = gradient_transform
    self._every_steps = every_steps
    self._stacked_axes = stacked_axes
    shapes = [s.std.shape for s in jax.eval_shape(self._statistics, params).values()]
    self.names = [name if not shape else f'{name}/{"/".join(map(str, index))}'
                  for name, shape in zip(leaf_names(params), shapes, strict=True)
                  for index in np.ndindex(shape)]

  def _statistics(self, grads):
    return znorm_optax.gradient_statistics(grads, stacked_axes=self._stacked_axes)

  def _compute(self, grads, params) -> jax.Array:
    after, _ = self._transform.update(grads, self._transform.init(params), params)
    before_stats = self._statistics(grads).values()
    after_stats = self._statistics(after).values()
    rows = ([s.l2_norm for s in before_stats], [s.std for s in before_stats],
            [s.l2_norm for s in after_stats], [s.std for s in after_stats])
    return jnp.stack([jnp.concatenate([jnp.ravel(value) for value in row]) for row in rows])

  def __call__(self, step: jax.Array, grads, params) -> jax.Array:
    """Statistics of ``grads`` (pure dicts, global) if ``step`` (steps run, after this one) logs."""
    shape = jax.eval_shape(self._compute, grads, params)
    return jax.lax.cond(step % self._every_steps == 0, self._compute,
                        lambda *_: jnp.full(shape.shape, jnp.nan, shape.dtype), grads, params)


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
