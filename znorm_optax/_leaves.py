"""Per-leaf helpers shared by the transformations: validation and exact moments."""

import itertools
import math
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

# Leaves up to this size have their statistics computed together, a bucket at
# a time: on accelerators and CPUs alike, hundreds of tiny reductions cost far
# more in launches than in arithmetic.
BATCHED_LEAF_SIZE = 2048


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
  return [jnp.asarray(leaf) for _, leaf in paths_and_leaves], treedef


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
  tiny std) and keeps the digits of `x - mean` when |mean| >> std. The std
  pass centres on the rounded `shift + offset`, which perturbs the variance
  only to second order.
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


def moments(x: jax.Array, per_channel: bool, eps: Any = 0.0) -> Moments:
  """Exact two-pass mean and population std of `x`; see `tree_moments`."""
  return tree_moments([x], per_channel, eps)[0]


def tree_moments(
    leaves: Sequence[jax.Array], per_channel: bool, eps: Any = 0.0
) -> list[Moments]:
  """Exact two-pass moments of every leaf, computed a group of leaves at a time.

  Small whole-leaf statistics are stacked into one padded matrix per size
  bucket, so a bucket costs a few kernels where every leaf would otherwise
  cost a handful of tiny ones whose launches take longer than their
  arithmetic. Larger leaves and per-channel statistics are reduced in place.
  """
  groups: list[_Group] = []
  buckets: dict[tuple[int, Any], list[int]] = {}
  for index, leaf in enumerate(leaves):
    axes = reduction_axes(leaf, per_channel)
    if len(axes) == leaf.ndim and 0 < leaf.size <= BATCHED_LEAF_SIZE:
      width = 1 << (leaf.size - 1).bit_length()  # Padding wastes at most half.
      buckets.setdefault((width, accumulation_dtype(leaf.dtype)), []).append(index)
    else:
      groups.append(_single_leaf(leaf, axes, index))
  for (width, dtype), indices in buckets.items():
    groups.append(_bucket([leaves[i] for i in indices], width, dtype, indices))

  stds = root_mean_squares(
      [group.values for group in groups],
      [group.shift + group.offset for group in groups],
      [group.axes for group in groups],
      # With eps > 0 a zero std is harmless, whether the leaf is constant or its
      # squares underflowed: eps dominates either way.
      rescale_zeros=jnp.asarray(eps) == 0,
  )
  stds = [std if g.std_correction is None else std * g.std_correction
          for g, std in zip(groups, stds)]
  # One kernel for every reciprocal; each leaf's update then slices its own.
  inverse_scales = _split(1 / (_concatenate(stds) + eps), stds)
  results: list[Moments | None] = [None] * len(leaves)
  for group, std, inverse_scale in zip(groups, stds, inverse_scales):
    stats = Moments(group.shift, group.offset, std, inverse_scale)
    if group.std_correction is None:
      results[group.indices[0]] = stats
      continue
    for row, index in enumerate(group.indices):
      shape = (1,) * leaves[index].ndim
      results[index] = Moments(*(field[row].reshape(shape) for field in stats))
  return results


def _concatenate(arrays: Sequence[jax.Array]) -> jax.Array:
  return jnp.concatenate([a.reshape(-1) for a in arrays]) if arrays else jnp.zeros(0)


def _split(flat: jax.Array, like: Sequence[jax.Array]) -> list[jax.Array]:
  """Undoes `_concatenate`, with each piece cast back to its original dtype."""
  ends = itertools.accumulate(a.size for a in like)
  return [flat[end - a.size:end].reshape(a.shape).astype(a.dtype) for a, end in zip(like, ends)]


class _Group(NamedTuple):
  """Values whose statistics are reduced together, with their first pass done."""

  values: jax.Array  # What the std pass reduces over `axes`.
  axes: tuple[int, ...]
  shift: jax.Array
  offset: jax.Array
  std_correction: Any  # None, or per-row factors from the std over the padded width.
  indices: list[int]  # Leaf of each row (stacked) or of the whole group.


def _single_leaf(leaf: jax.Array, axes: tuple[int, ...], index: int) -> _Group:
  x = leaf.astype(accumulation_dtype(leaf.dtype))
  if x.size == 0:
    nan = jnp.full([1 if axis in axes else n for axis, n in enumerate(x.shape)], jnp.nan, x.dtype)
    return _Group(nan, axes, nan, nan, None, [index])
  first = tuple(slice(0, 1) if axis in axes else slice(None) for axis in range(x.ndim))
  shift = x[first]
  return _Group(x, axes, shift, jnp.mean(x - shift, axis=axes, keepdims=True), None, [index])


def _bucket(leaves: Sequence[jax.Array], width: int, dtype, indices: list[int]) -> _Group:
  """Leaves stacked as the rows of one matrix, padded to `width`.

  Padding repeats each row's shift, so it adds exact zeros to the sum of
  deviations; for the std pass it is replaced by the row's mean, adding exact
  zeros again, and the std over the full width is rescaled to the row's size.
  """
  flat = [leaf.astype(dtype).reshape(-1) for leaf in leaves]
  sizes = jnp.array([f.size for f in flat], dtype)[:, None]
  rows = jnp.stack([jnp.pad(f, (0, width - f.size), constant_values=f[0]) for f in flat])
  shift = rows[:, :1]
  offset = jnp.sum(rows - shift, axis=1, keepdims=True) / sizes
  padding = jnp.arange(width)[None, :] >= sizes
  values = jnp.where(padding, shift + offset, rows)
  return _Group(values, (1,), shift, offset, jnp.sqrt(width / sizes), indices)


def root_mean_squares(
    xs: Sequence[jax.Array],
    centers: Sequence[jax.Array],
    axes: Sequence[tuple[int, ...]],
    rescale_zeros: Any = True,
) -> list[jax.Array]:
  """`sqrt(mean((x - center)**2))` of each array, even where the squares would not fit.

  Squares of deviations beyond about 1.8e19 overflow float32 and those below
  about 1e-19 underflow, which would turn a finite exploding gradient into
  zeros, or a tiny one into infinities. When any mean of squares falls out of
  the normal range, all are recomputed on deviations scaled by their maximum
  magnitude; that extra pass runs only then, under one `lax.cond`. A mean of
  squares of exactly zero (a constant leaf, or one whose squares all
  underflowed) triggers it only where `rescale_zeros` is true, so that leaves
  with zero gradients do not cost the whole tree a rescaled pass every step.

  Centring on the rounded mean, rather than as `(x - shift) - offset`, costs
  the variance only a second-order error, and keeps this pass independent of
  the first, so XLA fuses each reduction with its own read of `x` instead of
  writing `x - shift` out to memory.
  """
  mean_squares = [
      jnp.mean(jnp.square(x - c), axis=a, keepdims=True) for x, c, a in zip(xs, centers, axes)
  ]
  flat = _concatenate(mean_squares)
  finfo = jnp.finfo(flat.dtype)
  out_of_range = (
      jnp.isinf(flat)
      | ((flat > 0) & (flat < finfo.smallest_normal / finfo.eps))
      | ((flat == 0) & rescale_zeros)
  )

  def rescaled(operands):
    results = []
    for x, c, a in zip(*operands, axes):
      deviation = x - c
      scale = jnp.max(jnp.abs(deviation), axis=a, keepdims=True)
      scale = jnp.where((scale > 0) & jnp.isfinite(scale), scale, 1)
      results.append(scale * jnp.sqrt(jnp.mean(jnp.square(deviation / scale), axis=a, keepdims=True)))
    return _concatenate(results).astype(flat.dtype)

  stds = jax.lax.cond(
      jnp.any(out_of_range), rescaled, lambda _: jnp.sqrt(flat), (list(xs), list(centers))
  )
  return _split(stds, mean_squares)
