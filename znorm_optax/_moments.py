"""Exact mean and population std of each statistic group of gradient leaves.

Two passes per leaf, accumulated in at least float32:

1. ``offset = mean(x - shift)``, where ``shift`` is an element of the group, so
   a constant group has deviations of exactly zero and a group whose mean is
   far above its spread keeps its digits;
2. ``mean(((x - shift) - offset)**2)``.

When a result leaves float32's range (an exploding gradient whose squares
overflow, squares that underflow, or ``x - shift`` itself overflowing) both
passes are redone, under one ``lax.cond`` for the whole tree, on values scaled
by a power of two per group. The moments then stay exact and finite for any
finite input.

Small whole-leaf groups of equal size are stacked and reduced together, so a
tree of hundreds of biases and norm scales costs a few kernels, not hundreds.

The reductions work on sharded leaves under ``jax.jit`` (Auto and Explicit
mesh axes) and, with ``axis_name``, across the slices that ``shard_map`` or
``pmap`` hands each device.
"""

from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from znorm_optax._leaves import AxisName

# Whole-leaf groups up to this size are stacked with the others of their size
# and reduced together.
BATCHED_LEAF_SIZE = 4096


def accumulation_dtype(dtype) -> jnp.dtype:
  """At least float32, so that bf16/fp16 statistics are accumulated accurately."""
  return jnp.promote_types(dtype, jnp.float32)


class Moments(NamedTuple):
  """Moments of every group of one leaf, each shaped to broadcast against the leaf.

  All fields but `scale` are in units of `scale`, a power of two per group that
  is 1 unless the leaf's values are too large or too small for their squares.
  """

  scale: jax.Array
  shift: jax.Array
  offset: jax.Array
  scaled_std: jax.Array

  @property
  def mean(self) -> jax.Array:
    return self.scale * (self.shift + self.offset)

  @property
  def std(self) -> jax.Array:
    return self.scale * self.scaled_std

  def scaled_deviation(self, x: jax.Array) -> jax.Array:
    """`(x - mean) / scale`, exactly zero for a constant group."""
    # The barrier keeps XLA from sharing `x - shift` between this elementwise
    # use and the reduction that computed `offset`: shared, it would be
    # written out to memory in full; unshared, each use fuses into its own loop.
    shift = jax.lax.optimization_barrier(self.shift)
    return (x.astype(shift.dtype) * (1 / self.scale) - shift) - self.offset

  def centered(self, x: jax.Array) -> jax.Array:
    """`x - mean`."""
    return self.scaled_deviation(x) * self.scale

  def standardized(self, x: jax.Array, eps: Any) -> jax.Array:
    """`(x - mean) / (std + eps)`, without forming the (possibly subnormal) `1 / std`."""
    # A multiply by a per-group reciprocal, where a per-element divide would
    # stop XLA from fusing the normalization into the consumer's loop.
    inverse = 1 / (self.scaled_std + eps / self.scale)
    return self.scaled_deviation(x) * inverse


def tree_moments(
    leaves: Sequence[jax.Array],
    axes: Sequence[tuple[int, ...]],
    *,
    eps: Any = 0.0,
    axis_name: AxisName = None,
    with_std: bool = True,
) -> list[Moments]:
  """Exact moments of each leaf over its `axes`, as described in the module docstring.

  Args:
    leaves: floating-point arrays.
    axes: for each leaf, the axes one statistic reduces over.
    eps: the epsilon the std will be added to. Stds far below it need not be
      exact, which spares the rescaled pass for tiny gradients.
    axis_name: the mapped axis (or axes) over which each device holds a slice
      of every leaf; the moments are then those of the whole leaf.
    with_std: whether to take the second pass; without it, `scaled_std` is NaN.

  Returns:
    One :class:`Moments` per leaf. Empty groups have NaN moments.
  """
  xs = [leaf.astype(accumulation_dtype(leaf.dtype)) for leaf in leaves]
  blocks = _blocks(xs, axes, axis_name)
  live_xs, live_axes = [b.values for b in blocks], [b.axes for b in blocks]
  plain = _scaled_moments(live_xs, live_axes, None, axis_name, with_std)
  unit = [jnp.ones_like(shift) for shift in plain[0]]

  def rescaled(_):
    scales = [_power_of_two_scale(x, a, axis_name) for x, a in zip(live_xs, live_axes)]
    return scales, _scaled_moments(live_xs, live_axes, scales, axis_name, with_std)

  checks = [jnp.isfinite(v) for v in plain[1] + plain[2]]
  checks += [~_too_small(ms, eps) for ms in plain[2]]
  needs_rescaling = ~jnp.all(jnp.stack([jnp.all(c) for c in checks])) if checks else False
  scales, (shifts, offsets, mean_squares) = jax.lax.cond(
      needs_rescaling, rescaled, lambda _: (unit, plain), None)

  results = [_empty_moments(x, a) for x, a in zip(xs, axes)]
  if not with_std:
    mean_squares = [jnp.full_like(offset, jnp.nan) for offset in offsets]
  for block, *fields in zip(blocks, scales, shifts, offsets, mean_squares):
    stats = Moments(*fields[:3], _safe_sqrt(fields[3]))
    if not block.stacked:
      results[block.leaves[0]] = stats
      continue
    for row, index in enumerate(block.leaves):
      shape = (1,) * xs[index].ndim
      results[index] = Moments(*(field[row].reshape(shape) for field in stats))
  return results


class _Block(NamedTuple):
  """Values whose groups are reduced together: one leaf, or equal-sized small leaves as rows."""

  values: jax.Array
  axes: tuple[int, ...]
  leaves: list[int]  # The leaf of the block, or of each of its rows.
  stacked: bool


def _blocks(xs, axes, axis_name) -> list[_Block]:
  """Every non-empty leaf as a block, with small whole-leaf groups of one size stacked.

  Hundreds of tiny reductions (biases, norm scales) cost far more in kernel
  launches than in arithmetic; stacked, a size costs a few kernels.
  """
  blocks, buckets = [], {}
  for index, (x, a) in enumerate(zip(xs, axes)):
    if not x.size:
      continue
    if (len(a) == x.ndim and x.size <= BATCHED_LEAF_SIZE and axis_name is None
        and not _is_sharded_explicitly(x)):
      buckets.setdefault((x.size, x.dtype), []).append(index)
    else:
      blocks.append(_Block(x, a, [index], stacked=False))
  for indices in buckets.values():
    if len(indices) == 1:
      blocks.append(_Block(xs[indices[0]], axes[indices[0]], indices, stacked=False))
    else:
      rows = jnp.stack([xs[i].reshape(-1) for i in indices])
      blocks.append(_Block(rows, (1,), indices, stacked=True))
  return blocks


def _scaled_moments(xs, axes, scales, axis_name, with_std):
  """Both passes on `x / scale` (or `x`): shifts, offsets and mean squares per group."""
  scaled = xs if scales is None else [x * (1 / scale) for x, scale in zip(xs, scales)]
  shifts = [_common_first_element(x, a, axis_name) for x, a in zip(scaled, axes)]
  offsets = [_mean(x - s, a, axis_name) for x, s, a in zip(scaled, shifts, axes)]
  if not with_std:
    return shifts, offsets, []
  # Deviations as `(x - shift) - offset`, exact even where the mean's rounding
  # is as large as the spread. The barrier keeps this `x - shift` apart from
  # the first pass's, so each pass fuses with its own read of `x` instead of
  # sharing one written out to memory.
  mean_squares = [
      _mean(jnp.square((x - jax.lax.optimization_barrier(s)) - o), a, axis_name)
      for x, s, o, a in zip(scaled, shifts, offsets, axes)
  ]
  return shifts, offsets, mean_squares


def _too_small(mean_square: jax.Array, eps: Any) -> jax.Array:
  """Whether squares may have underflowed where the std still matters next to eps."""
  finfo = jnp.finfo(mean_square.dtype)
  small = mean_square < finfo.smallest_normal / finfo.eps
  # Below this the std is under 1e-5 of eps, and its error cannot show.
  threshold = 1e-5 * jnp.asarray(eps, mean_square.dtype)
  return small & (jnp.sqrt(finfo.smallest_normal / finfo.eps) > threshold)


def _power_of_two_scale(x, axes, axis_name):
  """2**e with max|x| < 2**(e + 1) per group, so squares of `x / scale` fit float32."""
  largest = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=axes, keepdims=True))
  if axis_name is not None:
    largest = jax.lax.pmax(largest, axis_name)
  finfo = jnp.finfo(x.dtype)
  _, exponent = jnp.frexp(largest)
  # Clipped so that the scale and its reciprocal are both normal numbers.
  exponent = jnp.clip(exponent, finfo.minexp + 1, finfo.maxexp - 2)
  return jnp.ldexp(jnp.ones_like(largest), exponent)


def _mean(x, axes, axis_name):
  total = jnp.sum(x, axis=axes, keepdims=True)
  count = _size(x, axes)
  if axis_name is not None:
    total = jax.lax.psum(total, axis_name)
    count = count * jax.lax.psum(1, axis_name)
  return total / count


def _size(x, axes) -> int:
  size = 1
  for axis in axes:
    size *= x.shape[axis]
  return size


def _common_first_element(x, axes, axis_name):
  """An element of each group, the same on every device of `axis_name`."""
  first = tuple(slice(0, 1) if axis in axes else slice(None) for axis in range(x.ndim))
  element = _slice(x, first, axes)
  if axis_name is not None:
    # The first device's element, exactly: every other device adds zeros.
    is_first = jax.lax.axis_index(axis_name) == 0
    element = jax.lax.psum(jnp.where(is_first, element, 0), axis_name)
  return jax.lax.stop_gradient(element)


def _slice(x, index, axes):
  """`x[index]`, also where `index` cuts a dimension sharded over Explicit mesh axes."""
  spec = _explicit_spec(x)
  if spec is None or all(spec[axis] is None for axis in axes):
    return x[index]
  out_spec = PartitionSpec(*(None if axis in axes else spec[axis] for axis in range(x.ndim)))
  # Explicit sharding has no rule for a size-1 slice of a sharded dimension;
  # in Auto mode the partitioner takes it from the device that holds it.
  return jax.sharding.auto_axes(lambda y: y[index], out_sharding=out_spec)(x)


def _explicit_spec(x) -> tuple | None:
  """The per-dimension spec of `x`'s sharding where it uses Explicit mesh axes, else None."""
  sharding = getattr(jax.typeof(x), 'sharding', None)
  mesh = getattr(sharding, 'mesh', None)
  if mesh is None or not getattr(mesh, 'axis_types', None):
    return None
  explicit = {name for name, kind in zip(mesh.axis_names, mesh.axis_types)
              if kind == jax.sharding.AxisType.Explicit}
  if not explicit:
    return None
  spec = tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))
  return spec


def _is_sharded_explicitly(x) -> bool:
  spec = _explicit_spec(x)
  return spec is not None and any(s is not None for s in spec)


def _kept_shape(x, axes):
  return tuple(1 if axis in axes else n for axis, n in enumerate(x.shape))


def _empty_moments(x, axes) -> Moments:
  nan = jnp.full(_kept_shape(x, axes), jnp.nan, x.dtype)
  return Moments(jnp.ones_like(nan), nan, nan, nan)


def _safe_sqrt(x: jax.Array) -> jax.Array:
  """`sqrt(x)` whose derivative at 0 is 0 instead of inf (which makes NaNs downstream)."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), x)
