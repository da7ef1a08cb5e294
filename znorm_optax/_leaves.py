"""Per-leaf helpers shared by the transformations: validation and statistic groups."""

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

AxisName = str | tuple[str, ...] | None
StackedAxes = int | Sequence[int] | Any | Callable[[optax.Params], Any] | None
"""None, an int or tuple of ints for every leaf, or a pytree prefix (or a callable
returning one) whose leaves are such specs."""

_INJECT_HINT = (
    'Under optax.inject_hyperparams, pass static_args=({name!r},): otherwise '
    'optax treats a callable as a schedule and a number as a traced hyperparameter.'
)


def checked_leaves(tree: Any, *, caller: str) -> tuple[list[str], list[jax.Array], Any]:
  """Paths, leaves and treedef of `tree`, rejecting non-floating leaves by path.

  `None` and `optax.MaskedNode` are empty pytree nodes, so they never appear
  among the leaves and pass through unflattening untouched.
  """
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  paths = [jax.tree_util.keystr(path) or '<root>' for path, _ in paths_and_leaves]
  leaves = [jnp.asarray(leaf) for _, leaf in paths_and_leaves]
  for path, leaf in zip(paths, leaves):
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
      raise TypeError(
          f'{caller} expects floating-point gradients, but the leaf at {path} has '
          f'dtype {leaf.dtype}.'
      )
  return paths, leaves, treedef


def check_eps(eps: Any, name: str, caller: str) -> None:
  """Rejects a concrete eps that is negative, non-finite or not a scalar."""
  try:
    value = np.asarray(eps, dtype=np.float64)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    return  # Traced, e.g. under inject_hyperparams inside jit: nothing to check.
  if value.ndim != 0 or not math.isfinite(value) or value < 0:
    raise ValueError(f'{caller}: {name} must be a finite, non-negative scalar, got {eps!r}.')


def concrete_int(value: Any) -> int | None:
  """`value` as an int, or None where it is traced."""
  try:
    return int(value)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
    return None


def concrete_float(value: Any) -> float | None:
  """`value` as a float, or None where it is traced."""
  try:
    return float(value)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    return None


def check_static_options(
    caller: str, *, mask: Any = None, per_channel: Any = False, stacked_axes: Any = None
) -> None:
  """Rejects option values that only optax.inject_hyperparams would produce.

  inject_hyperparams calls a callable `mask` with the step count and turns
  numbers into arrays; left alone, either would silently change what is
  normalized.
  """
  if mask is not None and not callable(mask) and _is_scalar(mask):
    raise TypeError(
        f'{caller}: mask must be a pytree of booleans or a callable returning one, got '
        f'{mask!r}. ' + _INJECT_HINT.format(name='mask'))
  if not isinstance(per_channel, (bool, np.bool_)):
    raise TypeError(
        f'{caller}: per_channel must be a bool, got {per_channel!r}. '
        + _INJECT_HINT.format(name='per_channel'))
  if isinstance(stacked_axes, (jax.Array, np.ndarray)):
    raise TypeError(
        f'{caller}: stacked_axes must be an int, a tuple of ints, a pytree of them or a '
        f'callable, got {stacked_axes!r}. ' + _INJECT_HINT.format(name='stacked_axes'))


def _is_scalar(value: Any) -> bool:
  return isinstance(value, (bool, int, float, np.generic, np.ndarray, jax.Array))


def _is_axes(value: Any) -> bool:
  """Whether `value` is one leaf's spec: None, an int, or a tuple/list of ints."""
  if value is None or isinstance(value, (int, np.integer)):
    return True
  return isinstance(value, (tuple, list)) and all(
      isinstance(a, (int, np.integer)) for a in value)


def stacked_axes_per_leaf(
    stacked_axes: StackedAxes, tree: Any, paths: Sequence[str], leaves: Sequence[jax.Array],
    *, caller: str,
) -> list[tuple[int, ...]]:
  """The non-negative stacked axes of every leaf of `tree`, in leaf order.

  An int or tuple applies to every leaf with enough dimensions; a pytree
  prefix (or a callable of `tree` returning one) gives each subtree its own.
  """
  if callable(stacked_axes):
    stacked_axes = stacked_axes(tree)
  if _is_axes(stacked_axes):
    specs = [stacked_axes] * len(leaves)
    lenient = True
  else:
    try:
      full = jax.tree.map(
          lambda spec, subtree: jax.tree.map(lambda _: _Spec(spec), subtree),
          stacked_axes, tree, is_leaf=_is_axes)
    except ValueError as error:
      raise ValueError(
          f'{caller}: stacked_axes must be an int, a tuple of ints, or a pytree prefix of '
          f'the gradients with such leaves: {error}') from None
    specs = [s.axes for s in jax.tree.leaves(full, is_leaf=lambda x: isinstance(x, _Spec))]
    lenient = False
  return [_normalized_axes(spec, leaf.ndim, path, lenient, caller)
          for spec, leaf, path in zip(specs, leaves, paths)]


class _Spec:
  """Wraps one leaf's spec so that tuples are not flattened as pytrees."""

  def __init__(self, axes):
    self.axes = axes


def _normalized_axes(
    spec: Any, ndim: int, path: str, lenient: bool, caller: str
) -> tuple[int, ...]:
  if spec is None:
    return ()
  axes = (spec,) if isinstance(spec, (int, np.integer)) else tuple(spec)
  if any(not -ndim <= int(a) < ndim for a in axes):
    if lenient:  # A tree-wide spec skips leaves with too few dimensions.
      return ()
    raise ValueError(
        f'{caller}: stacked_axes {spec!r} is out of range for the leaf at {path} with '
        f'{ndim} dimensions.')
  normalized = tuple(sorted({int(a) % ndim for a in axes}))
  if len(normalized) != len(axes):
    raise ValueError(f'{caller}: stacked_axes {spec!r} repeats an axis for the leaf at {path}.')
  return normalized


def statistic_axes(
    ndim: int, stacked: tuple[int, ...] = (), per_channel: bool = False
) -> tuple[int, ...]:
  """Axes one statistic reduces over.

  All axes but the stacked ones; with `per_channel`, also all but the last of
  those when two or more remain (the output channel of Flax's layouts).
  """
  axes = tuple(a for a in range(ndim) if a not in stacked)
  if per_channel and len(axes) >= 2:
    return axes[:-1]
  return axes


def group_size(shape: Sequence[int], axes: Sequence[int]) -> int:
  """Number of elements that share one statistic."""
  return math.prod(shape[axis] for axis in axes)
