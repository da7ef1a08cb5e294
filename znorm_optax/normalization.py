"""ZNorm: Z-score normalization of each gradient leaf (Yun, 2024, eq. 1)."""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from znorm_optax import _leaves

MaskOrFn = Any | Callable[[optax.Params], Any] | None


def znorm(
    eps: float = 1e-10,
    *,
    per_channel: bool = False,
    min_size: int = 2,
    mask: MaskOrFn = None,
) -> optax.GradientTransformation:
  r"""Normalizes each gradient leaf to zero mean and unit standard deviation.

  Each leaf :math:`g` is replaced by

  .. math::
    g' = \frac{g - \mu(g)}{\sigma(g) + \epsilon},

  where :math:`\mu` and :math:`\sigma` are the mean and the population standard
  deviation over all of the leaf's elements (eq. 1 of the paper). Chain it in
  front of an adaptive optimizer, as the paper does with Adam:
  ``optax.chain(znorm(), optax.adam(1e-3))``.

  The statistics are accumulated in at least float32, so bfloat16 and float16
  leaves are upcast; each output keeps its leaf's dtype. A leaf containing NaN
  or Inf becomes NaN in the output, never silently finite, so
  :func:`optax.apply_if_finite` can still skip the step.

  Leaves whose statistic groups have fewer than ``min_size`` elements (by
  default: scalars and size-1 leaves) pass through unchanged, since eq. 1 maps
  a single element to zero and would freeze that parameter forever. Set
  ``min_size=0`` to apply eq. 1 to every leaf. Empty leaves, ``None`` and
  :class:`optax.MaskedNode` pass through.

  Args:
    eps: added to the standard deviation, so constant leaves map to zero
      instead of NaN. Must be finite and non-negative.
    per_channel: if True, leaves with two or more dimensions are normalized per
      output channel, over all axes but the last (Flax's ``HWIO`` conv and
      ``(in, out)`` dense layouts). Leaves of lower rank use all elements.
    min_size: smallest number of elements a statistic is taken over; smaller
      groups pass through unchanged.
    mask: a pytree of booleans with the structure of (or a prefix of) the
      params, or a callable returning one; only leaves marked True are
      normalized. For example, skip biases and normalization scales with
      ``mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)``.

  Returns:
    A :class:`optax.GradientTransformation` with an empty state.

  Raises:
    ValueError: if ``eps`` is negative or not finite, or ``min_size`` is
      negative.
    TypeError: from ``update``, if a leaf is not floating point; the message
      names the leaf's path.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import znorm_optax
    >>> grads = {'w': jnp.array([[1., 2.], [3., 6.]]), 'b': jnp.array([5.])}
    >>> tx = znorm_optax.znorm()
    >>> updates, _ = tx.update(grads, tx.init(grads))
    >>> print(updates['w'])
    [[-1.069045  -0.5345225]
     [ 0.         1.6035674]]
    >>> print(updates['b'])  # a single element passes through
    [5.]
    >>> optimizer = optax.chain(znorm_optax.znorm(), optax.adam(1e-3))

  References:
    Yun, `ZNorm: Z-Score Gradient Normalization Accelerating Skip-Connected
    Network Training without Architectural Modification
    <https://arxiv.org/abs/2408.01215>`_, 2024.
  """
  check_eps(eps, 'eps')
  static_min_size = _concrete_int(min_size)
  if static_min_size is not None and static_min_size < 0:
    raise ValueError(f'znorm: min_size must be non-negative, got {min_size}.')

  def update_fn(updates, state, params=None):
    del params
    leaves, treedef = _leaves.checked_leaves(updates, caller='znorm')
    sizes = [_leaves.group_size(g, _leaves.reduction_axes(g, per_channel)) for g in leaves]
    # A traced min_size (optax.inject_hyperparams makes every number one) is
    # applied with a select; a concrete one decides at trace time.
    normalized = [
        i for i, size in enumerate(sizes)
        if size > 0 and (static_min_size is None or size >= static_min_size)
    ]
    stats = _leaves.tree_moments([leaves[i] for i in normalized], per_channel, eps)
    for i, moments in zip(normalized, stats):
      g = leaves[i]
      # A multiply by a precomputed reciprocal, where a per-element divide would
      # stop XLA from fusing the normalization into each of Adam's moment updates.
      output = (moments.center(g) * moments.inverse_scale).astype(g.dtype)
      leaves[i] = output if static_min_size is not None else jnp.where(
          sizes[i] >= min_size, output, g)
    return jax.tree.unflatten(treedef, leaves), state

  tx = optax.GradientTransformation(optax.init_empty_state, update_fn)
  return tx if mask is None else optax.masked(tx, mask)


def _concrete_int(value: Any) -> int | None:
  """`value` as an int, or None where it is traced."""
  try:
    return int(value)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
    return None


def check_eps(eps: Any, name: str) -> None:
  """Rejects a concrete eps that is negative, non-finite or not a scalar."""
  try:
    value = np.asarray(eps, dtype=np.float64)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    return  # Traced, e.g. under inject_hyperparams inside jit: nothing to check.
  if value.ndim != 0 or not math.isfinite(value) or value < 0:
    raise ValueError(f'znorm: {name} must be a finite, non-negative scalar, got {eps!r}.')
