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
  """Paths, leaves and treedef of `tree`, rejecting leaves neither floating nor complex by path.

  `None` and `optax.MaskedNode` are empty pytree nodes, so they never appear
  among the leaves and pass through unflattening untouched.
  """
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  paths = [jax.tree_util.keystr(path) or '<root>' for path, _ in paths_and_leaves]
  leaves = [jnp.asarray(leaf) for _, leaf in paths_and_leaves]
  for path, leaf in zip(paths, leaves):
    if not jnp.issubdtype(leaf.dtype, jnp.inexact):
      raise TypeError(
          f'{caller} expects floating-point or complex gradients, but the leaf at {path} has '
          f'dtype {leaf.dtype}.'
      )
  return paths, leaves, treedef


def explicit_spec(x: jax.Array) -> tuple | None:
  """The per-dimension spec of `x`'s sharding where its mesh has Explicit axes, else None.

  The one test for Explicit sharding: such leaves need their slices and
  groupings stated (an Explicit mesh has no rule for some of them).
  """
  sharding = getattr(jax.typeof(x), 'sharding', None)
  mesh = getattr(sharding, 'mesh', None)
  if mesh is None or jax.sharding.AxisType.Explicit not in (getattr(mesh, 'axis_types', None)
                                                           or ()):
    return None
  return tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))


def real_eps(eps: Any) -> Any:
  """`eps` as a real number.

  optax.inject_hyperparams casts every float hyperparameter to the params'
  dtype, so complex params turn eps into a complex number with no imaginary part.
  """
  return jnp.real(eps) if jnp.iscomplexobj(eps) else eps


def check_eps(eps: Any, name: str, caller: str) -> None:
  """Rejects a concrete eps that is negative, non-finite, not a scalar or not real."""
  try:
    value = np.asarray(eps)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    return  # Traced, e.g. under inject_hyperparams inside jit: nothing to check.
  if np.iscomplexobj(value) and not np.any(value.imag):
    value = value.real  # Complex params under inject_hyperparams make it complex.
  if np.iscomplexobj(value):
    raise ValueError(f'{caller}: {name} must be real, got {eps!r}.')
  value = value.astype(np.float64)
  if value.ndim != 0 or not math.isfinite(value) or value < 0:
    raise ValueError(f'{caller}: {name} must be a finite, non-negative scalar, got {eps!r}.')


def concrete_int(value: Any) -> int | None:
  """`value` as an int, or None where it is traced."""
  try:
    return int(value)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
    return None


def concrete_float(value: Any) -> float | None:
  """`value` (real, or complex with no imaginary part) as a float, or None where it is traced."""
  try:
    return float(real_eps(value))
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
  prefix (or a callable of `tree` returning one) gives each subtree its own,
  matched by key path (see :func:`per_leaf_by_path`).
  """
  if callable(stacked_axes):
    stacked_axes = stacked_axes(tree)
  if _is_axes(stacked_axes):
    specs = [stacked_axes] * len(leaves)
    lenient = True
  else:
    specs = per_leaf_by_path(
        stacked_axes, tree, is_leaf=_is_axes, what='stacked_axes', caller=caller)
    lenient = False
  return [_normalized_axes(spec, leaf.ndim, path, lenient, caller)
          for spec, leaf, path in zip(specs, leaves, paths)]


def per_leaf_by_path(
    prefix: Any, tree: Any, *, is_leaf: Callable[[Any], bool] | None, what: str, caller: str,
) -> list[Any]:
  """For every leaf of `tree`, in leaf order, the leaf of `prefix` at a prefix of its key path.

  Keys are compared, not containers: a plain dict of specs for a model fits
  its gradients as an `nnx.State`, a `FrozenDict` or a dict alike, and an
  `nnx.Variable` counts as the array it holds. Entries of `prefix` that no
  leaf reaches (a masked-out subtree) are ignored.

  Raises:
    ValueError: naming the first leaf of `tree` that no entry of `prefix` reaches.
  """
  entries, _ = jax.tree_util.tree_flatten_with_path(prefix, is_leaf=is_leaf)
  by_keys = {_keys(path): value for path, value in entries}
  values = []
  for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = _keys(path)
    found = next((keys[:n] for n in range(len(keys), -1, -1) if keys[:n] in by_keys), None)
    if found is None:
      raise ValueError(
          f'{caller}: {what} (a pytree prefix of the gradients, matched by key path) has no '
          f'entry for the leaf at {jax.tree_util.keystr(path) or "<root>"}.')
    values.append(by_keys[found])
  return values


def leaves_by_path(prefix: Any, tree: Any, *, what: str, caller: str) -> Any:
  """`tree` with each leaf replaced by the leaf of `prefix` at a prefix of its key path.

  Makes a mask given for a model fit its gradients whatever container holds
  them, as :func:`per_leaf_by_path` does; a callable mask is applied to `tree`.
  """
  if callable(prefix):
    prefix = prefix(tree)
  values = per_leaf_by_path(prefix, tree, is_leaf=None, what=what, caller=caller)
  return jax.tree.unflatten(jax.tree.structure(tree), values)


def masked(
    tx: optax.GradientTransformation, mask: optax.MaskOrFn, *, caller: str
) -> optax.GradientTransformation:
  """`optax.masked(tx, mask)`, with `mask` matched to the gradients by key path.

  `tx` itself where `mask` is None. optax.masked would need the mask in the
  gradients' own containers, which `nnx.Optimizer` hands over as an `nnx.State`.
  """
  if mask is None:
    return tx
  return optax.masked(
      tx, lambda tree: leaves_by_path(mask, tree, what='mask', caller=caller))


def _keys(path: Sequence[Any]) -> tuple[Any, ...]:
  """A key path as plain keys; an `nnx.Variable`'s trailing `.value` is dropped."""
  if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == 'value':
    path = path[:-1]
  return tuple(_key(entry) for entry in path)


def _key(entry: Any) -> Any:
  """The dict key, attribute name or index of one key path entry."""
  for field in ('key', 'name', 'idx'):
    if hasattr(entry, field):
      return getattr(entry, field)
  return str(entry)


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
