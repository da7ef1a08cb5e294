"""ZNorm's statistics for GPUs and TPUs: the leaves of one shape share each reduction.

The per-leaf path (:mod:`znorm_optax._moments`) reduces every leaf on its own,
which costs a GPU kernel launch or a TPU op per leaf and pass: about three
times Adam's launches on a ResNet. Here the leaves are grouped by shape (and
statistic axes), and each group is reduced at once, in two passes:

1. ``raw_mean = sum(x / n)``, with ``max(x)`` and ``min(x)``;
2. ``offset = mean(x - raw_mean)`` and ``mean((x - raw_mean)**2)``, so
   ``variance = mean((x - raw_mean)**2) - offset**2``.

This is the corrected two-pass algorithm (Chan, Golub and LeVeque, 1983): the
second pass measures the first pass's rounding, so the variance stays within
1e-5 of float64 while ``raw_mean`` is off by much less than the std, that is
for every leaf whose mean is below about 1e6 stds and whose squared deviations
fit float32. A group with ``max == min`` is constant and maps to exact zeros.
Squared deviations past float32 make the std infinite and the output NaN, as
on the per-leaf path. No shift element is sliced out of a leaf, which would
be an op of its own per leaf on a TPU.

Two layouts of the same arithmetic:

* ``'stacked'`` (GPUs, and CPUs where asked for): each group's leaves are
  stacked and reduced along the new axis's complement. XLA fuses the stack
  into the reduction, so nothing is copied, and one kernel reduces the whole
  group; the normalization then fuses into Adam's update.
* ``'variadic'`` (TPUs): one variadic ``lax.reduce`` per group and pass, with
  an output per leaf. A TPU writes a stack out in full; a variadic reduction
  reads each leaf where it lies.

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

LAYOUTS = ('stacked', 'variadic')


def supports(leaf: jax.Array) -> bool:
  """Whether this path takes the leaf; complex and empty leaves take the per-leaf path."""
  return jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.size > 0


def standardized(
    leaves: Sequence[jax.Array],
    axes: Sequence[tuple[int, ...]],
    eps: Any,
    *,
    layout: str,
    axis_name: _leaves.AxisName = None,
) -> list[jax.Array]:
  """``(g - mean) / (std + eps)`` of each leaf over its `axes`, in its accumulation dtype."""
  axes = tuple(tuple(a) for a in axes)
  return _standardized(layout, axes, axis_name, jnp.asarray(eps, jnp.float32), list(leaves))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _standardized(layout, axes, axis_name, eps, leaves):
  return _moments.standardize(leaves, tree_moments(leaves, axes, layout, axis_name), eps)


@_standardized.defjvp
def _standardized_jvp(layout, axes, axis_name, primals, tangents):
  del layout

  def per_leaf(eps, leaves):
    moments = _moments.tree_moments(leaves, axes, rescale=False, axis_name=axis_name)
    return _moments.standardize(leaves, moments, eps)

  return jax.jvp(per_leaf, primals, tangents)


def tree_moments(
    leaves: Sequence[jax.Array],
    axes: Sequence[tuple[int, ...]],
    layout: str,
    axis_name: _leaves.AxisName = None,
) -> list[_moments.Moments]:
  """Moments of each leaf over its `axes`, leaves of one group reduced together.

  A group is the leaves of one shape, statistic axes and (under Explicit mesh
  axes) sharding, so that a stack or a variadic reduction of them is well
  formed. Each :class:`~znorm_optax._moments.Moments` has ``shift`` = the raw
  mean (a constant group's value), ``offset`` = the mean's correction and no
  scale.
  """
  xs = [leaf.astype(_moments.accumulation_dtype(leaf.dtype)) for leaf in leaves]
  groups = collections.defaultdict(list)
  for i, (x, a) in enumerate(zip(xs, axes)):
    groups[(x.shape, x.dtype, a, _moments._explicit_spec(x))].append(i)
  results = [None] * len(xs)
  reduce = _stacked_reduce if layout == 'stacked' else _variadic_reduce
  for (shape, _, group_axes, _), members in groups.items():
    moments = _group_moments([xs[i] for i in members], group_axes, reduce, axis_name)
    for i, m in zip(members, moments):
      results[i] = m
  return results


def _group_moments(xs, axes, reduce, axis_name):
  """The moments of leaves of one shape, as in the module docstring."""
  size = _leaves.group_size(xs[0].shape, axes)
  if axis_name is not None:
    size = size * jax.lax.psum(1, axis_name)
  kept = _moments.kept_shape(xs[0], axes) if len(axes) < xs[0].ndim else ()
  inverse_size = 1 / jnp.asarray(size, xs[0].dtype)
  # jnp.max and jnp.min propagate NaN, so a NaN group is never taken for a constant.
  raw_means, largest, smallest = reduce(
      xs, axes, [(lambda x: x * inverse_size, 'sum'), (None, 'max'), (None, 'min')], axis_name)
  raw_means = [jax.lax.stop_gradient(m.reshape(kept)) for m in raw_means]
  deviations = [x - m.reshape(_moments.kept_shape(x, axes)) for x, m in zip(xs, raw_means)]
  sums, squares = reduce(
      deviations, axes, [(None, 'sum'), (jnp.square, 'sum')], axis_name)
  moments = []
  for m, hi, lo, s, s2 in zip(raw_means, largest, smallest, sums, squares):
    constant = (hi == lo).reshape(kept)
    offset = s.reshape(kept) * inverse_size
    variance = jnp.maximum(s2.reshape(kept) * inverse_size - jnp.square(offset), 0)
    moments.append(_moments.Moments(
        scale=None,
        shift=jnp.where(constant, hi.reshape(kept), m),
        offset=jnp.where(constant, 0, offset),
        scaled_std=jnp.where(constant, 0, jnp.sqrt(variance))))
  return moments


_COMBINE = {'sum': jax.lax.add, 'max': jax.lax.max, 'min': jax.lax.min}
_IDENTITY = {'sum': 0.0, 'max': -np.inf, 'min': np.inf}
_ACROSS_DEVICES = {'sum': jax.lax.psum, 'max': jax.lax.pmax, 'min': jax.lax.pmin}


def _stacked_reduce(xs, axes, statistics, axis_name):
  """Each statistic of each leaf, from one reduction of the stacked leaves per statistic."""
  stack_axes = tuple(a + 1 for a in axes)
  results = []
  for transform, kind in statistics:
    stacked = jnp.stack([x if transform is None else transform(x) for x in xs])
    reduced = {'sum': jnp.sum, 'max': jnp.max, 'min': jnp.min}[kind](stacked, axis=stack_axes)
    if axis_name is not None:
      reduced = _ACROSS_DEVICES[kind](reduced, axis_name)
    results.append(list(reduced))
  return results


def _variadic_reduce(xs, axes, statistics, axis_name):
  """Each statistic of each leaf, from one variadic reduction of all of them."""
  operands, kinds = [], []
  for transform, kind in statistics:
    operands += [x if transform is None else transform(x) for x in xs]
    kinds += [kind] * len(xs)

  def combine(left, right):
    return tuple(_COMBINE[k](a, b) for k, a, b in zip(kinds, left, right))

  identities = tuple(jnp.asarray(_IDENTITY[k], xs[0].dtype) for k in kinds)
  reduced = jax.lax.reduce(tuple(operands), identities, combine, axes)
  if axis_name is not None:
    reduced = [_ACROSS_DEVICES[k](r, axis_name) for k, r in zip(kinds, reduced)]
  count = len(xs)
  return [list(reduced[j * count:(j + 1) * count]) for j in range(len(statistics))]
