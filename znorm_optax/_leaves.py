"""Per-leaf helpers shared by the transformations: validation and exact moments."""

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

# Leaves up to this size have their statistics computed together, a bucket at
# a time: on accelerators and CPUs alike, hundreds of tiny reductions cost far
# more in launches than in arithmetic.
BATCHED_LEAF_SIZE = 4096


def checked_leaves(tree: Any, *, caller: str) -> tuple[list[jax.Array], Any]:
  """Flattens `tree`, rejecting non-floating leaves with an error naming their path.

  `None` and `optax.MaskedNode` are empty pytree nodes, so they never appear
  among the leaves and pass through unflattening untouched.
  """
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  for path, leaf in paths_and_leaves:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f'{caller} expects floating-point gradients, but the leaf at '
          f'{jax.tree_util.keystr(path) or "<root>"} has dtype {dtype}.'
      )
  return [leaf for _, leaf in paths_and_leaves], treedef


def reduction_axes(x: jax.Array, per_channel: bool) -> tuple[int, ...]:
  """Axes a statistic reduces over: all, or all but the last (Flax layout)."""
  if per_channel and x.ndim >= 2:
    return tuple(range(x.ndim - 1))
  return tuple(range(x.ndim))


def group_size(x: jax.Array, axes: tuple[int, ...]) -> int:
  """Number of elements that share one statistic."""
  return math.prod(x.shape[axis] for axis in axes)


def accumulation_dtype(dtype) -> jnp.dtype:
  """At least float32, so that bf16/fp16 statistics are accumulated accurately."""
  return jnp.promote_types(dtype, jnp.float32)


class Moments(NamedTuple):
  """Mean, population std and `1 / (std + eps)` of a leaf, shaped to broadcast against it.

  The mean is kept as `shift + offset`, where `shift` is an element of the
  leaf and `offset` the mean of `x - shift`. Centring as `(x - shift) - offset`
  is then exact for constant leaves (zeros, not rounding noise divided by a
  tiny std) and loses no digits when |mean| >> std.
  """

  shift: jax.Array
  offset: jax.Array
  std: jax.Array
  inverse_scale: jax.Array

  @property
  def mean(self) -> jax.Array:
    return self.shift + self.offset

  def center(self, x: jax.Array) -> jax.Array:
    # The barrier keeps XLA from sharing `x - shift` between this elementwise
    # use and the reduction that computed `offset`: shared, it would be
    # written out to memory in full; unshared, each use fuses into its own loop.
    shift = jax.lax.optimization_barrier(self.shift)
    return (x.astype(shift.dtype) - shift) - self.offset


def moments(x: jax.Array, axes: tuple[int, ...], eps: Any = 0.0) -> Moments:
  """Exact two-pass mean and population std of `x` over `axes`."""
  x = x.astype(accumulation_dtype(x.dtype))
  first = tuple(slice(0, 1) if axis in axes else slice(None) for axis in range(x.ndim))
  shift = x[first]
  offset = jnp.mean(x - shift, axis=axes, keepdims=True)
  # Centring on the rounded mean costs the variance only a second-order error,
  # and keeps this pass independent of the first, so XLA fuses each reduction
  # with its own read of `x` instead of materializing `x - shift`.
  std = jnp.sqrt(jnp.mean(jnp.square(x - (shift + offset)), axis=axes, keepdims=True))
  return Moments(shift, offset, std, 1 / (std + eps))


def tree_moments(
    leaves: Sequence[jax.Array], per_channel: bool, eps: Any = 0.0
) -> list[Moments]:
  """`moments` of every leaf; small whole-leaf statistics are batched by size.

  Everything per leaf, `1 / (std + eps)` included, is computed on whole
  buckets, so a small leaf costs no kernel of its own beyond its update.
  """
  results: list[Moments | None] = [None] * len(leaves)
  buckets: dict[tuple[int, Any], list[int]] = {}
  for index, leaf in enumerate(leaves):
    axes = reduction_axes(leaf, per_channel)
    if len(axes) == leaf.ndim and 0 < leaf.size <= BATCHED_LEAF_SIZE:
      width = 1 << (leaf.size - 1).bit_length()  # Padding wastes at most half.
      buckets.setdefault((width, accumulation_dtype(leaf.dtype)), []).append(index)
    else:
      results[index] = moments(leaf, axes, eps)
  for (width, dtype), indices in buckets.items():
    batch = _stacked_moments([leaves[i] for i in indices], width, dtype, eps)
    for row, index in enumerate(indices):
      scalars = Moments(*(field[row] for field in batch))
      results[index] = Moments(*(s.reshape((1,) * leaves[index].ndim) for s in scalars))
  return results


def _stacked_moments(leaves: Sequence[jax.Array], width: int, dtype, eps: Any) -> Moments:
  """Moments of each leaf, computed as rows of one padded matrix.

  Padding repeats each row's shift, so it adds exact zeros to the sum of
  deviations; the second pass masks it out.
  """
  flat = [leaf.astype(dtype).reshape(-1) for leaf in leaves]
  sizes = jnp.array([f.size for f in flat], dtype)
  rows = jnp.stack([jnp.pad(f, (0, width - f.size), constant_values=f[0]) for f in flat])
  shift = rows[:, 0]
  deviation = rows - shift[:, None]
  offset = jnp.sum(deviation, axis=1) / sizes
  valid = jnp.arange(width)[None, :] < sizes[:, None]
  squares = jnp.where(valid, jnp.square(deviation - offset[:, None]), 0)
  std = jnp.sqrt(jnp.sum(squares, axis=1) / sizes)
  return Moments(shift, offset, std, 1 / (std + eps))
