"""Gradient Centralization for Flax parameter layouts."""

import jax
import optax

from znorm_optax import _leaves
from znorm_optax import _moments


def centralize(
    *,
    mask: optax.MaskOrFn = None,
    stacked_axes: _leaves.StackedAxes = None,
    axis_name: _leaves.AxisName = None,
) -> optax.GradientTransformation:
  """Subtracts from each weight gradient its mean over all axes but the last.

  Gradient Centralization (GC) removes the mean of every output channel's
  gradient. Flax stores conv kernels as ``HWIO`` and dense kernels as
  ``(in, out)``, so the output channel is the last axis and the mean is taken
  over all the others. :func:`optax.centralize` keeps axis 0 instead, which is
  the output channel in PyTorch's ``OIHW`` / ``(out, in)`` layout but the
  kernel height or the input features in Flax's; on Flax models it therefore
  centralizes the wrong slices. As in the GC paper, leaves with fewer than two
  dimensions (biases, normalization scales) pass through unchanged.

  Args:
    mask: a pytree of booleans that is a prefix of the params by key path
      (a dict fits an ``nnx.State`` of the same keys), or a callable returning
      one; only leaves marked True are centralized.
    stacked_axes: axes that index separate tensors (stacked layers, ensemble
      members); each index is centralized on its own, and the rule above
      applies to the remaining axes. See :func:`znorm_optax.znorm`.
    axis_name: inside ``shard_map`` or ``pmap``, the mapped axis over which
      each device holds a slice of every leaf; see :func:`znorm_optax.znorm`.

  Returns:
    A :class:`optax.GradientTransformation` with an empty state.

  Example:
    >>> import jax.numpy as jnp
    >>> import znorm_optax
    >>> grads = {'kernel': jnp.array([[1., 10.], [3., 20.]]), 'bias': jnp.array([1., 2.])}
    >>> tx = znorm_optax.centralize()
    >>> updates, _ = tx.update(grads, tx.init(grads))
    >>> print(updates['kernel'])
    [[-1. -5.]
     [ 1.  5.]]
    >>> print(updates['bias'])
    [1. 2.]

  References:
    Yong et al., `Gradient Centralization: A New Optimization Technique for
    Deep Neural Networks <https://arxiv.org/abs/2004.01461>`_, 2020.
  """

  _leaves.check_static_options('centralize', mask=mask, stacked_axes=stacked_axes)

  def update_fn(updates, state, params=None):
    del params
    paths, leaves, treedef = _leaves.checked_leaves(updates, caller='centralize')
    stacked = _leaves.stacked_axes_per_leaf(
        stacked_axes, updates, paths, leaves, caller='centralize')
    return jax.tree.unflatten(treedef, _centralized_leaves(leaves, stacked, axis_name)), state

  return _leaves.masked(
      optax.GradientTransformation(optax.init_empty_state, update_fn), mask, caller='centralize')


def _centralized_leaves(leaves, stacked, axis_name):
  """Each leaf of two or more unstacked dimensions minus its mean over all but the last."""
  chosen = [i for i, (g, s) in enumerate(zip(leaves, stacked)) if g.ndim - len(s) >= 2 and g.size]
  kept = [leaves[i] for i in chosen]
  axes = [_leaves.statistic_axes(leaves[i].ndim, stacked[i], per_channel=True) for i in chosen]
  # Rescaled, so that means of values near the largest float stay exact.
  moments = _moments.tree_moments(kept, axes, rescale=True, axis_name=axis_name, with_std=False)
  outputs = list(leaves)
  for i, centered in zip(chosen, _moments.center(kept, moments)):
    outputs[i] = centered.astype(leaves[i].dtype)
  return outputs
