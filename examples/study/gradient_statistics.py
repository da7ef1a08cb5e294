"""The study's gradient statistics for ``--config.log_gradient_statistics``.

They are the training core's :class:`examples.training.gradient_log.StepStatistics`,
computed with :func:`znorm_optax.gradient_statistics` before and after the
method's gradient transform; the core only calls them and writes the log.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

import znorm_optax
from examples.study import methods
from examples.training import tree_paths


class StepStatistics:
  """Each leaf's gradient norm and std before and after ``gradient_transform``, at log steps.

  Args:
    gradient_transform: what the optimizer applies to the raw gradient before
      its moments. It must be stateless (an empty state), as z-scoring,
      centralizing and clipping are: the step applies it afresh to read its
      output.
    every_steps: the log interval; the statistics are computed when the step
      counter after the step is a multiple of it, and are NaN otherwise.
    params: a pure-dict tree like the parameters (only its structure and
      shapes are read), to check ``gradient_transform``.
    stacked_axes: the parameters' stacked axes (:data:`methods.StackedAxes`);
      each index along them is a layer with statistics of its own.

  Raises:
    ValueError: if ``gradient_transform`` keeps state.
  """

  def __init__(self, gradient_transform: optax.GradientTransformation, every_steps: int, params,
               stacked_axes: methods.StackedAxes = None):
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
                  for name, shape in zip(tree_paths.leaf_names(params), shapes, strict=True)
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


def for_run(config: ml_collections.ConfigDict, model: nnx.Module,
            gradient_transform: optax.GradientTransformation,
            stacked_axes: methods.StackedAxes = None) -> StepStatistics | None:
  """The run's :class:`StepStatistics` for ``model`` (abstract, from ``nnx.eval_shape``, will do).

  ``None`` without ``--config.log_gradient_statistics``.
  """
  if not config.log_gradient_statistics:
    return None
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  return StepStatistics(gradient_transform, config.log_every_steps, params, stacked_axes)
