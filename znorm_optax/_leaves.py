"""Per-leaf helpers shared by the transformations: validation and exact moments."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def map_float_leaves(fn: Callable[[jax.Array], Any], tree: Any, *, caller: str) -> Any:
  """Maps `fn` over the leaves of `tree`, rejecting non-floating leaves by path.

  `None` and `optax.MaskedNode` are empty pytree nodes, so they pass through
  untouched without reaching `fn`.
  """

  def checked(path, leaf):
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f'{caller} expects floating-point gradients, but the leaf at '
          f'{jax.tree_util.keystr(path) or "<root>"} has dtype {dtype}.'
      )
    return fn(leaf)

  return jax.tree_util.tree_map_with_path(checked, tree)


def reduction_axes(x: jax.Array, per_channel: bool) -> tuple[int, ...]:
  """Axes a statistic reduces over: all, or all but the last (Flax layout)."""
  if per_channel and x.ndim >= 2:
    return tuple(range(x.ndim - 1))
  return tuple(range(x.ndim))


def group_size(x: jax.Array, axes: tuple[int, ...]) -> int:
  """Number of elements that share one statistic."""
  size = 1
  for axis in axes:
    size *= x.shape[axis]
  return size


def accumulation_dtype(dtype) -> jnp.dtype:
  """At least float32, so that bf16/fp16 statistics are accumulated exactly enough."""
  return jnp.promote_types(dtype, jnp.float32)


def centered(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """Returns `(x - mean(x), mean(x))` over `axes`, in at least float32.

  The mean is taken of `x - x[first]` rather than of `x`, so a constant leaf
  centres to exact zeros and a large offset (|mean| >> std) does not cancel
  catastrophically. XLA fuses the shift into the reduction: no extra pass.
  """
  x = x.astype(accumulation_dtype(x.dtype))
  shift = jax.lax.stop_gradient(_first_along(x, axes))
  deviation = x - shift
  deviation_mean = jnp.mean(deviation, axis=axes, keepdims=True)
  return deviation - deviation_mean, shift + deviation_mean


def _first_along(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  index = tuple(slice(0, 1) if axis in axes else slice(None) for axis in range(x.ndim))
  return x[index]


def population_std(centered_x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  """Population std from already-centred values: a second, exact pass."""
  return jnp.sqrt(jnp.mean(jnp.square(centered_x), axis=axes, keepdims=True))
