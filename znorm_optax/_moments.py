"""Exact mean and population std of each statistic group of gradient leaves.

Two passes per leaf, accumulated in at least float32:

1. ``offset = mean(x - shift)``, where ``shift`` is an element of the group, so
   a constant group has deviations of exactly zero and a group whose mean is
   far above its spread keeps its digits;
2. ``mean(((x - shift) - offset)**2)``.

Every leaf is reduced on its own, with no branch: the program grows by a few
instructions per leaf and leaves of one shape compile to the same kernels.

Range. Plain, the squares are taken in float32 as they are. They stay exact
while the sum of a group's squared deviations fits float32, which covers every
gradient a network produces (|g - mean| up to about 1e19 / sqrt(group size));
beyond that the std is infinite and :func:`z_scores` returns NaN, never a
finite wrong value. Squares below float32's smallest normal are lost, which
only matters for stds below about 1e-18, so only where eps is tiny.
Rescaled, each group is first divided by a power of two near its largest
magnitude, and the moments are exact for every finite input, at the cost of
one more read of each leaf: ZNorm rescales where ``eps`` is below
``RESCALE_BELOW_EPS`` or traced (:func:`tiny_stds_matter`), Gradient
Centralization and :func:`gradient_statistics` always.

Complex leaves get a complex mean and the real std
``sqrt(mean(|x - mean|**2))``, the squares taken as ``re**2 + im**2``.

The reductions work on sharded leaves under ``jax.jit`` (Auto and Explicit
mesh axes) and, with ``axis_name``, across the slices that ``shard_map`` or
``pmap`` hands each device.
"""

from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from znorm_optax import _leaves
from znorm_optax._leaves import AxisName

RESCALE_BELOW_EPS = 1e-13
"""Below this eps, stds under 1e-18 (whose squares underflow) still matter next to eps."""


def accumulation_dtype(dtype) -> jnp.dtype:
  """At least float32 (complex64 for complex), so that bf16/fp16 statistics are accurate."""
  return jnp.promote_types(dtype, jnp.float32)


class Moments(NamedTuple):
  """Moments of every group of one leaf: scalars for a whole-leaf group, else shaped to broadcast.

  All fields but `scale` are in units of `scale`, a power of two per group, or
  None where the leaf's values are used as they are. For a complex leaf `shift`
  and `offset` are complex, `scale` and `scaled_std` real.
  """

  scale: jax.Array | None
  shift: jax.Array
  offset: jax.Array
  scaled_std: jax.Array

  @property
  def mean(self) -> jax.Array:
    return _unscaled(self.shift + self.offset, self.scale)

  @property
  def std(self) -> jax.Array:
    return _unscaled(self.scaled_std, self.scale)

  @property
  def root_mean_square(self) -> jax.Array:
    """`sqrt(mean**2 + std**2)`, infinite only where it exceeds the largest float."""
    return _unscaled(jnp.hypot(jnp.abs(self.shift + self.offset), self.scaled_std), self.scale)

  def scaled_deviation(self, x: jax.Array) -> jax.Array:
    """`(x - mean) / scale`, exactly zero for a constant group."""
    return (_scaled(x.astype(self.shift.dtype), self.scale) - self.shift) - self.offset

  def inverse_std(self, eps: Any) -> jax.Array:
    """`scale / (std + eps)`, NaN where the std is not finite, finite where it is zero.

    Formed without `1 / std`, which may be subnormal; an infinite std (squares
    that overflowed) would otherwise zero the whole group. A constant group's
    deviations are exactly zero, and a finite inverse keeps them zero for any
    eps, 0 included (eq. 1's 0 / 0 is NaN).
    """
    eps = _leaves.real_eps(eps)
    scaled_eps = eps if self.scale is None else eps / jax.lax.stop_gradient(self.scale)
    # The floor lifts only a zero divisor: that of a constant group where eps is
    # 0, was rounded to 0 (inject_hyperparams casts eps to float16 params' dtype)
    # or underflows next to a large scale (1e-10 / 2**99). Any other scaled std
    # is above about 1e-11, and an unscaled one comes with eps >= 1e-13. Its
    # square is a normal number, so the derivative of the inverse stays finite.
    floor = float(np.sqrt(jnp.finfo(self.scaled_std.dtype).tiny))
    divisor = jnp.maximum(self.scaled_std + scaled_eps, floor)
    # `std - std` is NaN where the std is infinite and 0 elsewhere: two
    # instructions per leaf where a select takes four.
    return 1 / divisor + (self.scaled_std - self.scaled_std)


def tree_moments(
    leaves: Sequence[jax.Array],
    axes: Sequence[tuple[int, ...]],
    *,
    rescale: bool,
    axis_name: AxisName = None,
    with_std: bool = True,
) -> list[Moments]:
  """Exact moments of each leaf over its `axes`, as described in the module docstring.

  Args:
    leaves: floating-point or complex arrays.
    axes: for each leaf, the axes one statistic reduces over.
    rescale: whether to divide each group by a power of two first, so that the
      moments are exact for any finite input.
    axis_name: the mapped axis (or axes) over which each device holds a slice
      of every leaf; the moments are then those of the whole leaf.
    with_std: whether to take the second pass; without it, `scaled_std` is NaN.

  Returns:
    One :class:`Moments` per leaf. Empty groups have NaN moments.
  """
  xs = [leaf.astype(accumulation_dtype(leaf.dtype)) for leaf in leaves]
  live = [i for i, x in enumerate(xs) if x.size]
  scales = {i: _power_of_two_scale(xs[i], axes[i], axis_name) if rescale else None
            for i in live}
  values = {i: _scaled(xs[i], scales[i]) for i in live}
  # On the CPU, a scalar that XLA can fold into a full-size loop gets written
  # out at full size in front of the reduction that reads it; the barriers keep
  # each scalar a scalar, so both passes read the leaf directly.
  shifts = _cpu_barrier(
      {i: _common_first_element(values[i], axes[i], axis_name) for i in live})
  offsets = {i: _mean(values[i] - shifts[i], axes[i], axis_name) for i in live}
  results = [_empty_moments(x, a) for x, a in zip(xs, axes)]
  if not with_std:
    for i in live:
      std = jnp.full(offsets[i].shape, jnp.nan, _real_dtype(offsets[i].dtype))
      results[i] = Moments(scales[i], shifts[i], offsets[i], std)
    return results
  # Deviations as `(x - shift) - offset`, exact even where the mean's rounding
  # is as large as the spread. Fresh copies of the scalars keep this pass's
  # `x - shift` from being shared with the first pass's (and written out).
  shifts, offsets = _cpu_barrier((shifts, offsets))
  for i in live:
    deviation = (values[i] - shifts[i]) - offsets[i]
    mean_square = _mean(_squared_magnitude(deviation), axes[i], axis_name)
    results[i] = Moments(scales[i], shifts[i], offsets[i], _safe_sqrt(mean_square))
  return results


def z_scores(
    leaves: Sequence[jax.Array], moments: Sequence[Moments], eps: Any
) -> list[jax.Array]:
  """`(x - mean) / (std + eps)` of each leaf, in its accumulation dtype; NaN where std is inf."""
  scalars = [(m.shift, m.offset, m.inverse_std(eps)) for m in moments]
  # As in tree_moments: the scalars stay scalars, and the normalization fuses
  # into whatever consumes it (Adam's moments) instead of being written out.
  scalars = _cpu_barrier(scalars)
  return [m._replace(shift=shift, offset=offset).scaled_deviation(x) * inverse
          for x, m, (shift, offset, inverse) in zip(leaves, moments, scalars)]


def standardized_per_leaf(
    leaves: Sequence[jax.Array], axes: Sequence[tuple[int, ...]], eps: Any, *, rescale: bool,
    axis_name: AxisName = None,
) -> list[jax.Array]:
  """Eq. 1 of each leaf over its `axes`, each leaf reduced on its own (the per-leaf path)."""
  return z_scores(leaves, tree_moments(leaves, axes, rescale=rescale, axis_name=axis_name),
                     eps)


def center(leaves: Sequence[jax.Array], moments: Sequence[Moments]) -> list[jax.Array]:
  """`x - mean` of each leaf, in its accumulation dtype."""
  scalars = _cpu_barrier([(m.shift, m.offset) for m in moments])
  return [_unscaled(m._replace(shift=shift, offset=offset).scaled_deviation(x), m.scale)
          for x, m, (shift, offset) in zip(leaves, moments, scalars)]


def tiny_stds_matter(eps: Any) -> bool:
  """Whether stds whose squares underflow float32 can still show next to `eps`."""
  concrete = _leaves.concrete_float(eps)
  return concrete is None or concrete < RESCALE_BELOW_EPS


def _real_dtype(dtype) -> jnp.dtype:
  """The dtype of `dtype`'s real part: float32 for complex64, `dtype` itself if real."""
  return jnp.finfo(dtype).dtype


def _squared_magnitude(x: jax.Array) -> jax.Array:
  """`|x|**2`, real: for complex `x`, `re**2 + im**2`, exact where `abs(x)**2` rounds twice."""
  if jnp.iscomplexobj(x):
    return jnp.square(jnp.real(x)) + jnp.square(jnp.imag(x))
  return jnp.square(x)


def _cpu_barrier(values):
  """`values` behind an optimization barrier where the computation is lowered for a CPU.

  Elsewhere XLA fuses the scalars into the kernels that read them, which is
  what a GPU or TPU wants: a barrier there would make each one a kernel launch.
  """
  if not jax.tree.leaves(values):
    return values
  return jax.lax.platform_dependent(
      values, cpu=jax.lax.optimization_barrier, default=lambda v: v)


# The scale is a constant of each group: stop_gradient keeps its (zero)
# derivative symbolic, where an instantiated one would meet 0 / scale**2.
def _scaled(x, scale):
  return x if scale is None else x * (1 / jax.lax.stop_gradient(scale))


def _unscaled(x, scale):
  return x if scale is None else x * jax.lax.stop_gradient(scale)


def _power_of_two_scale(x, axes, axis_name):
  """2**e with max|x| < 2**(e + 1) per group, so squares of `x / scale` fit float32.

  A group's spread is either zero or at least 2**-24 of its largest magnitude,
  so the squared deviations of `x / scale` cannot underflow either.
  """
  largest = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=axes, keepdims=_keepdims(x, axes)))
  if axis_name is not None:
    largest = jax.lax.pmax(largest, axis_name)
  finfo = jnp.finfo(x.dtype)
  _, exponent = jnp.frexp(largest)
  # Clipped so that the scale and its reciprocal are both normal numbers.
  exponent = jnp.clip(exponent, finfo.minexp + 1, finfo.maxexp - 2)
  return jnp.ldexp(jnp.ones_like(largest), exponent)


def _keepdims(x, axes) -> bool:
  """Whether groups keep their axes: a whole-leaf group's moments are scalars.

  A scalar broadcasts against the leaf in one instruction; every instruction
  per leaf adds to the compile time.
  """
  return len(axes) < x.ndim


def _mean(x, axes, axis_name):
  total = jnp.sum(x, axis=axes, keepdims=_keepdims(x, axes))
  count = _leaves.group_size(x.shape, axes)
  if axis_name is not None:
    total = jax.lax.psum(total, axis_name)
    count = count * jax.lax.psum(1, axis_name)
  return total / count


def _common_first_element(x, axes, axis_name):
  """An element of each group, the same on every device of `axis_name`."""
  first = tuple(slice(0, 1) if axis in axes else slice(None) for axis in range(x.ndim))
  element = _slice(x, first, axes)
  if not _keepdims(x, axes):
    element = element.reshape(())
  if axis_name is not None:
    # The first device's element, exactly: every other device adds zeros.
    is_first = jax.lax.axis_index(axis_name) == 0
    element = jax.lax.psum(jnp.where(is_first, element, 0), axis_name)
  return jax.lax.stop_gradient(element)


def _slice(x, index, axes):
  """`x[index]`, also where `index` cuts a dimension sharded over Explicit mesh axes."""
  spec = _leaves.explicit_spec(x)
  if spec is None or all(spec[axis] is None for axis in axes):
    return x[index]
  out_spec = PartitionSpec(*(None if axis in axes else spec[axis] for axis in range(x.ndim)))
  # Explicit sharding has no rule for a size-1 slice of a sharded dimension;
  # in Auto mode the partitioner takes it from the device that holds it.
  slice_in_auto_mode = jax.sharding.auto_axes(lambda y: y[index], out_sharding=out_spec)
  if jax.sharding.get_abstract_mesh().empty:
    # Under jit without jax.set_mesh, auto_axes needs the leaf's own mesh.
    with jax.sharding.use_abstract_mesh(jax.typeof(x).sharding.mesh):
      return slice_in_auto_mode(x)
  return slice_in_auto_mode(x)


def kept_shape(x, axes):
  return tuple(1 if axis in axes else n for axis, n in enumerate(x.shape))


def _empty_moments(x, axes) -> Moments:
  shape = kept_shape(x, axes) if _keepdims(x, axes) else ()
  nan = jnp.full(shape, jnp.nan, x.dtype)
  return Moments(None, nan, nan, jnp.full(shape, jnp.nan, _real_dtype(x.dtype)))


@jax.custom_jvp
def _safe_sqrt(x: jax.Array) -> jax.Array:
  """`sqrt(x)` whose derivative at 0 is 0 instead of inf (which makes NaNs downstream)."""
  return jnp.sqrt(x)


@_safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  root = jnp.sqrt(x)
  positive = x > 0
  return root, jnp.where(positive, t / (2 * jnp.where(positive, root, 1)), 0)
