"""ZNorm's statistics for GPUs and TPUs: many leaves share each reduction.

The per-leaf path (:mod:`znorm_optax._moments`) reduces every leaf on its own,
which costs a GPU kernel launch or a TPU op per leaf and pass: about three
times Adam's launches on a ResNet. Here many leaves share each reduction, in
two passes over every statistic group (a leaf, or a slice of its kept axes):

1. ``raw_mean = sum(x / n)``, with ``max(x)`` and ``min(x)``;
2. ``offset = mean(x - raw_mean)`` and ``mean((x - raw_mean)**2)``, so
   ``variance = mean((x - raw_mean)**2) - offset**2``.

This is the corrected two-pass algorithm (Chan, Golub and LeVeque, 1983): the
second pass measures the first pass's rounding, so the variance stays within
1e-5 of float64 while ``raw_mean`` is off by much less than the std, that is
for every group whose mean is below about 1e6 stds and whose squared
deviations fit float32. A group with ``max == min`` is constant and maps to
exact zeros. Squared deviations past float32 make the std infinite and the
output NaN, as on the per-leaf path. No shift element is sliced out of a leaf,
which would be an op of its own per leaf on a TPU.

Two layouts of the same arithmetic, for what each compiler fuses:

* ``'packed'`` (GPUs): every group padded to whole rows of :data:`BLOCK`
  elements and all of them concatenated into one matrix, reduced row by row,
  then each group's rows merged. XLA fuses the padding and the concatenation
  into the reduction, so nothing is copied and a pass is a few kernels
  whatever the number and shapes of the leaves. Leaves sharded over Explicit
  mesh axes take the per-leaf path instead (a concatenation would gather
  them); under Auto axes the partitioner may gather them.
* ``'variadic'`` (TPUs): the leaves of one shape (and statistic axes and
  sharding) in one variadic ``lax.reduce`` per pass, with an output per leaf.
  A TPU writes a concatenation out in full; a variadic reduction reads each
  leaf where it lies.

Derivatives follow the per-leaf path (a custom JVP), whose values are the same
up to rounding.

References:
  Chan, Golub and LeVeque, `Algorithms for Computing the Sample Variance:
  Analysis and Recommendations <https://doi.org/10.2307/2683386>`_, 1983.
"""

import collections
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from znorm_optax import _leaves
from znorm_optax import _moments

LAYOUTS = ('packed', 'variadic')


def supports(leaf: jax.Array, layout: str) -> bool:
  """Whether `layout` takes the leaf; the others take the per-leaf path."""
  if not jnp.issubdtype(leaf.dtype, jnp.floating) or leaf.size == 0:
    return False
  return layout != 'packed' or _leaves.explicit_spec(leaf) is None


def standardized_grouped(
    leaves: Sequence[jax.Array],
    axes: Sequence[tuple[int, ...]],
    eps: Any,
    *,
    layout: str,
    axis_name: _leaves.AxisName = None,
) -> list[jax.Array]:
  """``(g - mean) / (std + eps)`` of each leaf over its `axes`, in its accumulation dtype."""
  axes = tuple(tuple(a) for a in axes)
  eps = jnp.asarray(_leaves.real_eps(eps), jnp.float32)
  return _standardized(layout, axes, axis_name, eps, list(leaves))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _standardized(layout, axes, axis_name, eps, leaves):
  return _moments.z_scores(leaves, tree_moments(leaves, axes, layout, axis_name), eps)


@_standardized.defjvp
def _standardized_jvp(layout, axes, axis_name, primals, tangents):
  del layout
  return jax.jvp(
      lambda eps, leaves: _moments.standardized_per_leaf(
          leaves, axes, eps, rescale=False, axis_name=axis_name), primals, tangents)


def tree_moments(
    leaves: Sequence[jax.Array],
    axes: Sequence[tuple[int, ...]],
    layout: str,
    axis_name: _leaves.AxisName = None,
) -> list[_moments.Moments]:
  """Moments of each leaf over its `axes`, as in the module docstring.

  Each :class:`~znorm_optax._moments.Moments` has ``shift`` = the raw mean (a
  constant group's value), ``offset`` = the mean's correction and no scale.
  """
  xs = [leaf.astype(_moments.accumulation_dtype(leaf.dtype)) for leaf in leaves]
  reduce = functools.partial(_REDUCTIONS[layout], axes=axes, axis_name=axis_name)
  sizes = [_leaves.group_size(x.shape, a) for x, a in zip(xs, axes)]
  if axis_name is not None:
    sizes = [size * jax.lax.psum(1, axis_name) for size in sizes]
  inverse_sizes = [1 / jnp.asarray(size, x.dtype) for x, size in zip(xs, sizes)]
  kept = [_moments.kept_shape(x, a) if len(a) < x.ndim else () for x, a in zip(xs, axes)]
  # jnp.max and jnp.min propagate NaN, so a NaN group is never taken for a constant.
  raw_means, largest, smallest = reduce([
      ([x * inverse for x, inverse in zip(xs, inverse_sizes)], 'sum'), (xs, 'max'), (xs, 'min')])
  raw_means = [jax.lax.stop_gradient(m) for m in raw_means]
  deviations = [x - m.reshape(_moments.kept_shape(x, a))
                for x, m, a in zip(xs, raw_means, axes)]
  sums, squares = reduce([(deviations, 'sum'), ([jnp.square(d) for d in deviations], 'sum')])
  moments = []
  for m, hi, lo, s, s2, inverse, shape in zip(raw_means, largest, smallest, sums, squares,
                                              inverse_sizes, kept):
    m, hi, lo, s, s2 = (v.reshape(shape) for v in (m, hi, lo, s, s2))
    constant = hi == lo
    offset = s * inverse
    variance = jnp.maximum(s2 * inverse - jnp.square(offset), 0)
    moments.append(_moments.Moments(
        scale=None,
        shift=jnp.where(constant, hi, m),
        offset=jnp.where(constant, 0, offset),
        scaled_std=jnp.where(constant, 0, jnp.sqrt(variance))))
  return moments


_COMBINE = {'sum': jax.lax.add, 'max': jax.lax.max, 'min': jax.lax.min}
_REDUCE = {'sum': jnp.sum, 'max': jnp.max, 'min': jnp.min}
_IDENTITY = {'sum': 0.0, 'max': -np.inf, 'min': np.inf}
_ACROSS_DEVICES = {'sum': jax.lax.psum, 'max': jax.lax.pmax, 'min': jax.lax.pmin}

BLOCK = 1024
"""Elements per row of the packed layout's matrix, and blocks per row of its merges."""


def _variadic_reduce(statistics, *, axes, axis_name):
  """Each statistic of each leaf's groups: one variadic reduction per group of leaves.

  A group is the leaves of one shape, statistic axes and (under Explicit mesh
  axes) sharding, so that a variadic reduction of them is well formed.
  """
  first_values = statistics[0][0]
  groups = collections.defaultdict(list)
  for i, (x, a) in enumerate(zip(first_values, axes)):
    groups[(x.shape, x.dtype, a, _leaves.explicit_spec(x))].append(i)
  results = [[None] * len(first_values) for _ in statistics]
  for (_, _, group_axes, _), members in groups.items():
    operands = [values[i] for values, _ in statistics for i in members]
    kinds = [kind for _, kind in statistics for _ in members]

    def combine(left, right, kinds=kinds):
      return tuple(_COMBINE[k](a, b) for k, a, b in zip(kinds, left, right))

    identities = tuple(jnp.asarray(_IDENTITY[k], o.dtype) for k, o in zip(kinds, operands))
    reduced = iter(jax.lax.reduce(tuple(operands), identities, combine, group_axes))
    for j, (_, kind) in enumerate(statistics):
      for i in members:
        results[j][i] = _across_devices(next(reduced), kind, axis_name)
  return results


def _packed_reduce(statistics, *, axes, axis_name):
  """Each statistic of each leaf's groups, from one reduction of all leaves at once.

  Every group (a leaf, or a row of its kept axes) is padded with the
  statistic's identity to whole rows of :data:`BLOCK` elements, and all of
  them are concatenated into one matrix; XLA fuses the padding and the
  concatenation into the reduction that reads the leaves. Each group's blocks
  are then merged, a few kernels whatever the number of leaves.
  """
  first_values = statistics[0][0]
  # Each leaf as a matrix with a row per group: kept axes first, reduced axes last.
  orders = [tuple(k for k in range(x.ndim) if k not in a) + tuple(a)
            for x, a in zip(first_values, axes)]
  group_sizes = [_leaves.group_size(x.shape, a) for x, a in zip(first_values, axes)]
  num_groups = [x.size // n for x, n in zip(first_values, group_sizes)]
  blocks_per_group = [-(-n // BLOCK) for n in group_sizes]
  results = []
  for values, kind in statistics:
    pieces = []
    for x, order, rows, n, blocks in zip(values, orders, num_groups, group_sizes,
                                         blocks_per_group):
      matrix = jnp.transpose(x, order).reshape(rows, n)
      padded = jnp.pad(matrix, ((0, 0), (0, blocks * BLOCK - n)),
                       constant_values=_IDENTITY[kind])
      pieces.append(padded.reshape(rows * blocks, BLOCK))
    per_block = _REDUCE[kind](jnp.concatenate(pieces), axis=1)
    lengths = np.repeat(blocks_per_group, num_groups)
    per_group = _merge_segments(per_block, lengths, kind)
    starts = np.cumsum([0] + num_groups)
    results.append([_across_devices(per_group[start:start + rows], kind, axis_name)
                    for start, rows in zip(starts, num_groups)])
  return results


def _merge_segments(values, lengths, kind):
  """The `kind` reduction of each run of `lengths[i]` consecutive `values`.

  Runs are padded with the identity to whole rows of :data:`BLOCK`, gathered
  into one matrix and reduced row by row, until each run is one value: a
  tree of reductions, as accurate as one reduction of the run.
  """
  lengths = np.asarray(lengths)
  while lengths.size and lengths.max() > 1:
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    blocks = -(-lengths // BLOCK)
    columns = np.arange(blocks.max() * BLOCK)
    index = np.concatenate([start + columns[:b * BLOCK] for start, b in zip(starts, blocks)])
    valid = np.concatenate([columns[:b * BLOCK] < n for n, b in zip(lengths, blocks)])
    gathered = jnp.where(valid, values[np.where(valid, index, 0)], _IDENTITY[kind])
    values = _REDUCE[kind](gathered.reshape(-1, BLOCK), axis=1)
    lengths = blocks
  return values


def _across_devices(value, kind, axis_name):
  return value if axis_name is None else _ACROSS_DEVICES[kind](value, axis_name)


_REDUCTIONS = {'packed': _packed_reduce, 'variadic': _variadic_reduce}
