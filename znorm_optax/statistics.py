"""Per-leaf gradient statistics, for spotting vanishing and exploding gradients."""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from znorm_optax import _leaves


class LeafStatistics(NamedTuple):
  """Statistics of one gradient leaf, as float32 (or wider) scalars."""

  mean: jax.Array
  std: jax.Array
  l2_norm: jax.Array


def gradient_statistics(grads: Any) -> dict[str, LeafStatistics]:
  """Mean, population std and L2 norm of every leaf, keyed by its path.

  Jit-compatible. Empty leaves report NaN mean and std and a zero norm.

  Args:
    grads: a pytree of floating-point arrays.

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

  paths_and_leaves = jax.tree_util.tree_leaves_with_path(grads)
  leaves, _ = _leaves.checked_leaves(grads, caller='gradient_statistics')
  stats = _leaves.tree_moments(leaves, per_channel=False)
  return {
      jax.tree_util.keystr(path): LeafStatistics(m.mean.reshape(()), m.std.reshape(()), norm)
      for (path, _), m, norm in zip(paths_and_leaves, stats, _l2_norms(leaves))
  }


def _l2_norms(leaves: list[jax.Array]) -> list[jax.Array]:
  """L2 norm of each leaf, as sqrt(size) times its root mean square about zero."""
  flat = [g.astype(_leaves.accumulation_dtype(g.dtype)).reshape(-1) for g in leaves]
  nonempty = [f for f in flat if f.size]
  rms = iter(_leaves.root_mean_squares(
      nonempty, [jnp.zeros((), f.dtype) for f in nonempty], [(0,)] * len(nonempty)
  ))
  return [
      next(rms).reshape(()) * jnp.sqrt(jnp.asarray(f.size, f.dtype)) if f.size
      else jnp.zeros((), f.dtype)
      for f in flat
  ]
