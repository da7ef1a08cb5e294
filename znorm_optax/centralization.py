"""Gradient Centralization for Flax parameter layouts."""

import jax
import optax

from znorm_optax import _leaves
from znorm_optax.normalization import MaskOrFn


def centralize(*, mask: MaskOrFn = None) -> optax.GradientTransformation:
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
    mask: a pytree of booleans with the structure of (or a prefix of) the
      params, or a callable returning one; only leaves marked True are
      centralized.

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

  def centralize_leaf(g):
    if g.ndim < 2 or g.size == 0:
      return g
    return _leaves.moments(g, per_channel=True).center(g).astype(g.dtype)

  def update_fn(updates, state, params=None):
    del params
    leaves, treedef = _leaves.checked_leaves(updates, caller='centralize')
    return jax.tree.unflatten(treedef, [centralize_leaf(g) for g in leaves]), state

  tx = optax.GradientTransformation(optax.init_empty_state, update_fn)
  return tx if mask is None else optax.masked(tx, mask)
