"""ZNorm: Z-score normalization of each gradient leaf (Yun, 2024, eq. 1)."""

import jax
import jax.numpy as jnp
import optax

from znorm_optax import _leaves
from znorm_optax import _paths


def znorm(
    eps: float = 1e-10,
    *,
    per_channel: bool = False,
    min_size: int = 2,
    mask: optax.MaskOrFn = None,
    stacked_axes: _leaves.StackedAxes = None,
    axis_name: _leaves.AxisName = None,
    kernels: str | None = None,
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
  leaves are upcast; each output keeps its leaf's dtype. A complex leaf gets a
  complex mean and the real std :math:`\sqrt{\mathrm{mean}|g - \mu|^2}`, as
  optax's optimizers treat complex parameters. They are exact (within
  1e-5 of float64) for every leaf whose squared deviations fit float32. A leaf
  containing NaN or Inf, or whose squared deviations overflow float32, becomes
  NaN in the output, never silently finite, so :func:`optax.apply_if_finite`
  can still skip the step. With ``eps`` below 1e-13 the leaves are rescaled
  first, and the statistics are exact up to the largest float32.

  Leaves whose statistic groups have fewer than ``min_size`` elements (by
  default: scalars and size-1 leaves) pass through unchanged, since eq. 1 maps
  a single element to zero and would freeze that parameter forever. Set
  ``min_size=0`` to apply eq. 1 to every leaf. Empty leaves, ``None`` and
  :class:`optax.MaskedNode` pass through.

  Args:
    eps: added to the standard deviation. Must be finite and non-negative.
      A constant leaf maps to zeros whatever ``eps``, 0 included, and so under
      :func:`optax.inject_hyperparams`, which casts ``eps`` to the params'
      dtype (float16 rounds 1e-10 to 0).
    per_channel: if True, leaves with two or more dimensions are normalized per
      output channel, over all axes but the last (Flax's ``HWIO`` conv and
      ``(in, out)`` dense layouts). Leaves of lower rank use all elements.
    min_size: smallest number of elements a statistic is taken over; smaller
      groups pass through unchanged.
    mask: a pytree of booleans with the structure of (or a prefix of) the
      params, or a callable returning one; only leaves marked True are
      normalized. It is matched to the gradients by key path, so a plain dict
      fits an ``nnx.State``; a parameter it does not cover is an error naming
      its path. For example, skip biases and normalization scales with
      ``mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)``.
    stacked_axes: axes of a leaf that index separate tensors, such as the
      layer axis of ``nnx.scan``, the member axis of an ``nnx.vmap``
      ensemble or the vocabulary axis of an embedding table (the row of a
      token absent from the batch, a zero gradient, then stays zero); each
      index along them gets statistics of its own. An int or a
      tuple of ints applies to every leaf with enough dimensions; a pytree
      prefix of the params with such leaves (``None`` for none), or a callable
      of the gradients returning one, gives each leaf its own. The prefix is
      matched by key path, so a dict of a model's parameter names fits its
      gradients as an ``nnx.State`` or a ``FrozenDict`` too. Combines with
      ``per_channel``, which then keeps the last of the remaining axes.
    axis_name: inside ``shard_map`` or ``pmap``, the mapped axis (or a tuple
      of them) over which each device holds a slice of every leaf. The
      statistics are reduced across it, so they are those of the whole leaf.
      The slices must split only axes that a statistic reduces over.
    kernels: how the statistics are computed, per platform. ``'auto'``: each
      leaf reduced on its own on CPUs (two reads of it, XLA:CPU's cheapest
      reductions); on GPUs and TPUs the leaves of one shape reduced together,
      so a step launches a few reductions instead of two per leaf (also two
      reads of each leaf; see the README's "Performance"). ``'xla'``: each leaf
      on its own on every platform. ``'grouped'``: the grouped reductions on
      every platform, e.g. to reproduce a GPU's or TPU's arithmetic on a CPU.
      ``'pallas'``: Pallas Triton kernels that read each leaf once on GPUs
      (opt-in: JAX 0.11 deprecates their backend), in interpret mode elsewhere
      (slow; for tests); they take float32, bfloat16 and float16 leaves whose
      groups are whole leaves or rows of leading ``stacked_axes``. The platform
      is the one the step is lowered for. ``None`` (the default) reads
      ``$ZNORM_OPTAX_KERNELS``, else uses ``'auto'``. With ``'pallas'``,
      :func:`jax.export` needs ``disabled_checks`` for the kernels' custom call
      (``'__gpu$xla.gpu.triton'``, which JAX gives no compatibility guarantee),
      and one export for a GPU and another platform at once needs another
      choice: JAX lowers a GPU-only branch for every platform of the export.

  Returns:
    A :class:`optax.GradientTransformation` with an empty state.

  Under :func:`optax.inject_hyperparams`, list callable or array-valued
  options in ``static_args`` (for example ``static_args=('mask',)``): optax
  otherwise calls a callable as a schedule and turns numbers into arrays. A
  mask or option that arrives so is rejected with an error that says this.

  Raises:
    ValueError: if ``eps`` is negative or not finite, ``min_size`` is
      negative or ``kernels`` is not one of the above; from ``update``, if ``stacked_axes`` does not fit a leaf (the
      message names the leaf's path).
    TypeError: if an option has a type only ``optax.inject_hyperparams``
      would give it; from ``update``, if a leaf is neither floating point nor
      complex (the message names the leaf's path).

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

    An embedding table's rows, each on its own (row 0: a token not in the batch):

    >>> grads = {'embedding': jnp.array([[0., 0., 0.], [1., 2., 6.]])}
    >>> tx = znorm_optax.znorm(stacked_axes={'embedding': 0})
    >>> import numpy as np
    >>> print(np.asarray(tx.update(grads, tx.init(grads))[0]['embedding']).round(4))
    [[ 0.      0.      0.    ]
     [-0.9258 -0.4629  1.3887]]

  References:
    Yun, `ZNorm: Z-Score Gradient Normalization Accelerating Skip-Connected
    Network Training without Architectural Modification
    <https://arxiv.org/abs/2408.01215>`_, 2024.
  """
  _leaves.check_eps(eps, 'eps', 'znorm')
  _paths.check_choice(kernels, 'znorm')
  _leaves.check_static_options(
      'znorm', mask=mask, per_channel=per_channel, stacked_axes=stacked_axes)
  static_min_size = _leaves.concrete_int(min_size)
  if static_min_size is not None and static_min_size < 0:
    raise ValueError(f'znorm: min_size must be non-negative, got {min_size}.')

  def update_fn(updates, state, params=None):
    del params
    paths, leaves, treedef = _leaves.checked_leaves(updates, caller='znorm')
    stacked = _leaves.stacked_axes_per_leaf(
        stacked_axes, updates, paths, leaves, caller='znorm')
    axes = [_leaves.statistic_axes(g.ndim, s, per_channel) for g, s in zip(leaves, stacked)]
    normalized = _normalized_leaves(leaves, axes, eps=eps, min_size=min_size,
                                    axis_name=axis_name, kernels=kernels)
    return jax.tree.unflatten(treedef, normalized), state

  return _leaves.masked(
      optax.GradientTransformation(optax.init_empty_state, update_fn), mask, caller='znorm')


def _normalized_leaves(leaves, axes, *, eps, min_size, axis_name, kernels):
  """Eq. 1 of each leaf over its `axes` where its groups have at least `min_size` elements."""
  sizes = [_leaves.group_size(g.shape, a) for g, a in zip(leaves, axes)]
  if axis_name is not None:
    sizes = [size * jax.lax.psum(1, axis_name) for size in sizes]
  # A traced min_size (optax.inject_hyperparams makes every number one) is applied with a
  # select; a concrete one decides at trace time.
  static_min_size = _leaves.concrete_int(min_size)
  chosen = [i for i, (g, size) in enumerate(zip(leaves, sizes))
            if g.size > 0 and (static_min_size is None or size >= static_min_size)]
  # Every chosen leaf at once: the grouped paths reduce many leaves together.
  standardized = _paths.standardized_on_paths(
      [leaves[i] for i in chosen], [axes[i] for i in chosen], eps, axis_name=axis_name,
      kernels=kernels)
  outputs = list(leaves)
  for i, output in zip(chosen, standardized):
    output = output.astype(leaves[i].dtype)
    outputs[i] = output if static_min_size is not None else jnp.where(
        sizes[i] >= min_size, output, leaves[i])
  return outputs
