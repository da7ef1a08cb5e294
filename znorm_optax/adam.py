"""ZNorm embedded in Adam (Yun, 2024, Algorithm 1)."""

import jax.numpy as jnp
import optax

from znorm_optax import _leaves
from znorm_optax import _paths
from znorm_optax.normalization import znorm


def znorm_adam(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_root: float = 0.0,
    znorm_eps: float = 1e-10,
    per_channel: bool = False,
    min_size: int = 2,
    mu_dtype: jnp.dtype | None = None,
    mask: optax.MaskOrFn = None,
    stacked_axes: _leaves.StackedAxes = None,
    axis_name: _leaves.AxisName = None,
    kernels: str | None = None,
) -> optax.GradientTransformation:
  """Adam whose gradients are Z-score normalized per leaf first (Algorithm 1).

  The gradient of every leaf is normalized with :func:`znorm_optax.znorm`
  right after it is computed, and the normalized gradient drives Adam's first
  and second moments. The updates equal those of
  ``optax.chain(znorm(znorm_eps), optax.adam(learning_rate, b1, b2, eps))``.

  Args:
    learning_rate: a fixed step size or an :class:`optax.Schedule`.
    b1: exponential decay rate of the first moment.
    b2: exponential decay rate of the second moment.
    eps: Adam's epsilon, added to the root of the second moment.
    eps_root: Adam's epsilon inside the root.
    znorm_eps: ZNorm's epsilon, added to each leaf's standard deviation.
    per_channel: normalize per output channel; see :func:`znorm`.
    min_size: smallest statistic group that is normalized; see :func:`znorm`.
    mu_dtype: dtype of the first moment; defaults to the gradients' dtype.
    mask: which leaves ZNorm normalizes; Adam updates every leaf.
    stacked_axes: axes that index separate tensors; see :func:`znorm`.
    axis_name: the mapped axis over which devices hold slices of each leaf;
      see :func:`znorm`.
    kernels: ``'auto'``, ``'xla'``, ``'grouped'`` or ``'pallas'``: how ZNorm's
      statistics are computed on each platform; see :func:`znorm`.

  Returns:
    A :class:`optax.GradientTransformation`.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import znorm_optax
    >>> params = {'w': jnp.array([1., 2., 3.])}
    >>> tx = znorm_optax.znorm_adam(learning_rate=0.1)
    >>> state = tx.init(params)
    >>> grads = {'w': jnp.array([0.5, 1., 3.])}
    >>> updates, state = tx.update(grads, state, params)
    >>> print([f'{u:.5f}' for u in updates['w']])  # Adam's first step: -0.1 * sign.
    ['0.10000', '0.10000', '-0.10000']

  References:
    Yun, `ZNorm: Z-Score Gradient Normalization Accelerating Skip-Connected
    Network Training without Architectural Modification
    <https://arxiv.org/abs/2408.01215>`_, 2024.

    Kingma and Ba, `Adam: A Method for Stochastic Optimization
    <https://arxiv.org/abs/1412.6980>`_, 2014.
  """
  _leaves.check_eps(znorm_eps, 'znorm_eps', 'znorm_adam')  # Named as the caller knows it.
  _paths.check_choice(kernels, 'znorm_adam')
  _leaves.check_static_options(
      'znorm_adam', mask=mask, per_channel=per_channel, stacked_axes=stacked_axes)
  return optax.chain(
      znorm(znorm_eps, per_channel=per_channel, min_size=min_size, mask=mask,
            stacked_axes=stacked_axes, axis_name=axis_name, kernels=kernels),
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype),
      optax.scale_by_learning_rate(learning_rate),
  )
