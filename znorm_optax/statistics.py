"""Per-leaf gradient statistics, for spotting vanishing and exploding gradients."""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from znorm_optax import _leaves
from znorm_optax import _moments


class LeafStatistics(NamedTuple):
  """Statistics of one gradient leaf, as float32 (or wider) scalars.

  A complex leaf's mean is complex; its std and L2 norm are real.
  """

  mean: jax.Array
  std: jax.Array
  l2_norm: jax.Array


def gradient_statistics(
    grads: Any,
    *,
    stacked_axes: _leaves.StackedAxes = None,
    axis_name: _leaves.AxisName = None,
) -> dict[str, LeafStatistics]:
  """Mean, population std and L2 norm of every leaf, keyed by its path.

  Jit-compatible, exact (see :func:`znorm_optax.znorm`) and finite for any
  finite input, except an L2 norm beyond the largest float. Empty leaves report
  NaN mean and std and a zero norm.

  Args:
    grads: a pytree of floating-point arrays.
    stacked_axes: axes that index separate tensors (stacked layers, ensemble
      members); each statistic then has the shape of those axes, one value per
      index. See :func:`znorm_optax.znorm` for the accepted forms.
    axis_name: inside ``shard_map`` or ``pmap``, the mapped axis over which
      each device holds a slice of every leaf; the statistics are those of the
      whole leaf.

  Returns:
    A dict from each leaf's path (as :func:`jax.tree_util.keystr` writes it)
    to its :class:`LeafStatistics`, in the tree's leaf order.

  Example:
    >>> import jax.numpy as jnp
    >>> import znorm_optax
    >>> grads = {'dense': {'kernel': jnp.array([[3., 4.], [0., 0.]])}}
    >>> stats = znorm_optax.gradient_statistics(grads)
    >>> print(list(stats))
    ["['dense']['kernel']"]
    >>> print(stats["['dense']['kernel']"])
    LeafStatistics(mean=Array(1.75, dtype=float32), std=Array(1.7853571, dtype=float32), l2_norm=Array(5., dtype=float32))
  """
  _leaves.check_static_options('gradient_statistics', stacked_axes=stacked_axes)
  paths, leaves, _ = _leaves.checked_leaves(grads, caller='gradient_statistics')
  stacked = _leaves.stacked_axes_per_leaf(
      stacked_axes, grads, paths, leaves, caller='gradient_statistics')
  axes = [_leaves.statistic_axes(g.ndim, s) for g, s in zip(leaves, stacked)]
  stats = _moments.tree_moments(leaves, axes, rescale=True, axis_name=axis_name)
  results = {}
  for path, g, s, a, m in zip(paths, leaves, stacked, axes, stats):
    shape = tuple(g.shape[axis] for axis in s)
    size = _leaves.group_size(g.shape, a)
    if axis_name is not None:
      size *= jax.lax.psum(1, axis_name)
    l2_norm = jnp.sqrt(jnp.asarray(size, m.scaled_std.dtype)) * m.root_mean_square
    if g.size == 0:
      l2_norm = jnp.zeros_like(l2_norm)
    results[path] = LeafStatistics(
        *(v.reshape(shape) for v in (m.mean, m.std, l2_norm)))
  return results
