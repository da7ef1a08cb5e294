"""ZNorm's statistics in one read of each leaf, as Pallas kernels (Triton lowering on GPUs).

The XLA path (:mod:`znorm_optax._moments`) reads a leaf twice for its
statistics. Here a kernel reads each block of a leaf once and keeps it in
registers while it takes that block's partial moments:

* ``scale``, a power of two with ``max|x| < 2 * scale`` over the block, so the
  squares of ``y = x / scale`` neither overflow nor underflow;
* ``shift``, the block's first ``y``, so a constant block has deviations of
  exactly zero and a block whose mean is far above its spread keeps its digits;
* ``residual``, the block's mean of ``y`` minus ``shift``;
* ``m2``, the block's sum of squared deviations of ``y`` from its mean.

XLA then merges each leaf's partials (Chan et al.'s pairwise formula, summed
over all blocks at once) into a :class:`~znorm_optax._moments.Moments`, so the
normalization itself stays a per-leaf elementwise expression that XLA fuses
into whatever consumes it: Adam's update and ``optax.apply_updates``. The
normalized gradient is never written to memory, and the step reads ``g`` once
more than Adam does (8 passes against Adam's 7).

Leaves of up to ``PACKED_LEAF_SIZE`` elements are copied into one buffer, each
padded to whole blocks, and reduced by one kernel; the merge of every leaf's
partials is a few kernels whatever the number of leaves. A step on a tree of
hundreds of small leaves thus launches O(1) statistics kernels, and one more
per large leaf.

The kernels take float32 whole-leaf groups. Other leaves (other dtypes,
``per_channel`` or ``stacked_axes`` groups, ``axis_name``, leaves sharded over
Explicit mesh axes) take the XLA path, leaf by leaf. Pallas calls have no
derivative rules: a custom JVP differentiates the XLA path instead.

Whether the kernels are used is decided by :func:`kernels`: the environment
variable ``ZNORM_OPTAX_KERNELS`` (``xla``, ``auto`` or ``pallas``), else
``_DEFAULT_KERNELS``. Under ``auto`` and ``pallas`` the platform a
computation is lowered for picks the branch (``lax.platform_dependent``), so a
CPU computation in a process whose default backend is a GPU still lowers.
"""

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pl_triton

from znorm_optax import _moments

KERNELS_ENV = 'ZNORM_OPTAX_KERNELS'
# 'xla': the XLA path everywhere. 'auto': Pallas on GPUs, XLA on CPUs and TPUs.
# 'pallas': Pallas everywhere, in interpret mode off GPUs (for tests; slow).
# The Pallas path has only been run in interpret mode on a CPU so far: set this
# to 'auto' once benchmarks/pallas_check.py passes on a GPU.
_DEFAULT_KERNELS = 'xla'

BLOCK = 8192
"""Elements per program of a large leaf's kernel (a power of two, as Triton needs)."""
PACKED_BLOCK = 1024
"""Elements per program of the packed small leaves' kernel."""
PACKED_LEAF_SIZE = 1 << 16
"""Leaves up to this size are packed into one buffer and reduced by one kernel."""
_NUM_WARPS = 8

# float32 exponent field: a biased exponent e stands for 2**(e - 127). Clipped
# to [1, 253] so that 2**(e - 127) and its reciprocal are both normal numbers.
_MANTISSA_BITS = 23
_MIN_EXPONENT, _MAX_EXPONENT = 1, 253


def kernels() -> str:
  """The selected path: 'xla', 'auto' or 'pallas' (see `_DEFAULT_KERNELS`)."""
  choice = os.environ.get(KERNELS_ENV, _DEFAULT_KERNELS)
  if choice not in ('xla', 'pallas', 'auto'):
    raise ValueError(
        f'{KERNELS_ENV} must be one of xla, pallas or auto, got {choice!r}.')
  return choice


def supports(leaf: jax.Array, axes: Sequence[int], axis_name: Any) -> bool:
  """Whether the kernels can take this leaf's statistics; the others take the XLA path."""
  return (leaf.dtype == jnp.float32 and leaf.size > 0 and axis_name is None
          and tuple(axes) == tuple(range(leaf.ndim)) and not _is_sharded_explicitly(leaf))


def _is_sharded_explicitly(x) -> bool:
  sharding = getattr(jax.typeof(x), 'sharding', None)
  mesh = getattr(sharding, 'mesh', None)
  if not getattr(mesh, 'axis_types', None):
    return False
  explicit = {name for name, kind in zip(mesh.axis_names, mesh.axis_types)
              if kind == jax.sharding.AxisType.Explicit}
  used = set()
  for entry in sharding.spec:
    used.update(entry if isinstance(entry, tuple) else (entry,))
  return bool(explicit & used)


def standardized(leaves: Sequence[jax.Array], eps: Any) -> list[jax.Array]:
  """``(g - mean) / (std + eps)`` of each float32 leaf over all its elements.

  The platform the computation is lowered for picks the branch: the kernels on
  GPUs; elsewhere the XLA path, or with ``kernels() == 'pallas'`` the kernels
  in interpret mode.
  """
  on_gpu = functools.partial(_standardized, False)
  elsewhere = (functools.partial(_standardized, True) if kernels() == 'pallas'
               else _xla_standardized)
  return jax.lax.platform_dependent(
      jnp.asarray(eps, jnp.float32), list(leaves), cuda=on_gpu, rocm=on_gpu, default=elsewhere)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _standardized(interpret, eps, leaves):
  return _moments.standardize(leaves, leaf_moments(leaves, interpret), eps)


@_standardized.defjvp
def _standardized_jvp(interpret, primals, tangents):
  del interpret
  return jax.jvp(_xla_standardized, primals, tangents)


def _xla_standardized(eps, leaves):
  moments = _moments.tree_moments(
      leaves, [tuple(range(g.ndim)) for g in leaves], rescale=_moments.tiny_stds_matter(eps))
  return _moments.standardize(leaves, moments, eps)


def leaf_moments(leaves: Sequence[jax.Array], interpret: bool) -> list[_moments.Moments]:
  """Moments of every element of each float32 leaf, read once by a Pallas kernel."""
  packed = [i for i, g in enumerate(leaves) if g.size <= PACKED_LEAF_SIZE]
  large = [i for i, g in enumerate(leaves) if g.size > PACKED_LEAF_SIZE]
  partials, counts, owners = [], [], []
  if packed:
    sizes = [leaves[i].size for i in packed]
    blocks = [math.ceil(size / PACKED_BLOCK) for size in sizes]
    buffer = jnp.concatenate([
        jnp.pad(leaves[i].reshape(-1), (0, b * PACKED_BLOCK - size))
        for i, size, b in zip(packed, sizes, blocks)])
    block_counts = np.concatenate([_block_counts(size, PACKED_BLOCK) for size in sizes])
    partials.append(_packed_partials(buffer, block_counts, interpret))
    counts.append(block_counts)
    owners += [np.full(b, i) for i, b in zip(packed, blocks)]
  for i in large:
    size = leaves[i].size
    partials.append(_leaf_partials(leaves[i].reshape(-1), interpret))
    counts.append(_block_counts(size, BLOCK))
    owners.append(np.full(math.ceil(size / BLOCK), i))
  fields = [jnp.concatenate(column) for column in zip(*partials)]
  per_leaf = _merge(fields, np.concatenate(counts), np.concatenate(owners), len(leaves))
  return [
      _moments.Moments(*(field[i].reshape((1,) * g.ndim) for field in per_leaf))
      for i, g in enumerate(leaves)
  ]


def _block_counts(size: int, block: int) -> np.ndarray:
  counts = np.full(math.ceil(size / block), block, np.int32)
  counts[-1] = size - block * (len(counts) - 1)
  return counts


def _partials_kernel(*refs, block: int, size: int | None):
  """One block's scale, shift, residual and m2 (see the module docstring).

  The block's valid elements come first: `size` elements of the leaf in all,
  or, where `size` is None, as many as the block's entry in a counts input.
  """
  if size is None:
    count_ref, x_ref, *out_refs = refs
    count = count_ref[...]
  else:
    x_ref, *out_refs = refs
    count = jnp.minimum(block, size - pl.program_id(0) * block)
  scale_ref, shift_ref, residual_ref, m2_ref = out_refs
  valid = jnp.arange(block) < count
  # Masked: the last block of a leaf reaches past its end.
  x = pl_triton.load(x_ref, mask=valid, other=0.0)
  largest = jnp.max(jnp.abs(x))
  exponent = jax.lax.shift_right_logical(
      jax.lax.bitcast_convert_type(largest, jnp.int32), _MANTISSA_BITS)
  exponent = jnp.clip(exponent, _MIN_EXPONENT, _MAX_EXPONENT)
  scale = _power_of_two(exponent)
  y = x * _power_of_two(_MIN_EXPONENT + _MAX_EXPONENT - exponent)  # Exact: x / scale.
  shift = jnp.sum(jnp.where(jnp.arange(block) == 0, y, 0.0))
  count = count.astype(jnp.float32)
  deviation = jnp.where(valid, y - shift, 0.0)
  offset = jnp.sum(deviation) / count
  centred = jnp.where(valid, deviation - offset, 0.0)
  # `offset` is rounded; `correction` is what that rounding left in the mean,
  # and removing count * correction**2 makes m2 the sum about the exact mean.
  correction = jnp.sum(centred) / count
  scale_ref[...] = scale
  shift_ref[...] = shift
  residual_ref[...] = offset + correction
  m2_ref[...] = jnp.sum(centred * centred) - count * correction * correction


def _power_of_two(biased_exponent):
  return jax.lax.bitcast_convert_type(
      jax.lax.shift_left(biased_exponent, _MANTISSA_BITS), jnp.float32)


def _partials_call(num_blocks, kernel, in_specs, interpret):
  out_spec = pl.BlockSpec((None,), lambda i: (i,))
  return pl.pallas_call(
      kernel,
      out_shape=[jax.ShapeDtypeStruct((num_blocks,), jnp.float32)] * 4,
      grid=(num_blocks,),
      in_specs=in_specs,
      out_specs=[out_spec] * 4,
      compiler_params=pl_triton.CompilerParams(num_warps=_NUM_WARPS),
      interpret=interpret,
      name='znorm_partial_moments',
  )


def _leaf_partials(flat: jax.Array, interpret: bool) -> list[jax.Array]:
  num_blocks = math.ceil(flat.size / BLOCK)
  kernel = functools.partial(_partials_kernel, block=BLOCK, size=flat.size)
  in_specs = [pl.BlockSpec((BLOCK,), lambda i: (i,))]
  return _partials_call(num_blocks, kernel, in_specs, interpret)(flat)


def _packed_partials(buffer, counts: np.ndarray, interpret: bool) -> list[jax.Array]:
  kernel = functools.partial(_partials_kernel, block=PACKED_BLOCK, size=None)
  in_specs = [pl.BlockSpec((None,), lambda i: (i,)),
              pl.BlockSpec((PACKED_BLOCK,), lambda i: (i,))]
  return _partials_call(len(counts), kernel, in_specs, interpret)(jnp.asarray(counts), buffer)


def _merge(fields, counts: np.ndarray, owners: np.ndarray, num_leaves: int):
  """Each leaf's scale, shift, offset and scaled std from its blocks' partials.

  Leaves are merged in groups of similar block counts, each a matrix with a row
  per leaf (padded to a power of two), so the work is a few kernels per group
  and at most twice the number of blocks.
  """
  # Partials arrive grouped by leaf, but not in leaf order (packed leaves come first).
  order = np.argsort(owners, kind='stable')
  lengths = np.bincount(owners, minlength=num_leaves)
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  widths = 1 << np.ceil(np.log2(lengths)).astype(np.int64)
  groups, merged = [], []
  for width in np.unique(widths):
    rows = np.flatnonzero(widths == width)
    columns = np.arange(width)
    mask = columns < lengths[rows, None]
    index = order[np.where(mask, starts[rows, None] + columns, starts[rows, None])]
    merged.append(_merge_rows([f[index] for f in fields], np.where(mask, counts[index], 0), mask))
    groups.append(rows)
  # Back to leaf order: one gather per field.
  leaf_order = np.argsort(np.concatenate(groups))
  return [jnp.concatenate(column)[leaf_order] for column in zip(*merged)]


def _merge_rows(fields, counts: np.ndarray, mask: np.ndarray):
  """Chan et al.'s merge of each row's partials, in units of the row's largest scale."""
  scale, shift, residual, m2 = fields
  size = counts.sum(axis=1).astype(np.float32)  # Summed exactly, as integers.
  counts = counts.astype(np.float32)
  row_scale = jnp.max(jnp.where(mask, scale, 0.0), axis=1, keepdims=True)
  ratio = scale / row_scale  # Powers of two at most 1: exact unless negligible.
  shift, residual, m2 = shift * ratio, residual * ratio, m2 * ratio * ratio

  def weighted_mean(values):
    return jnp.sum(jnp.where(mask, counts * values, 0.0), axis=1, keepdims=True) / size[:, None]

  # A rough shift (the first block's), then the mean about it, rounded, as the
  # final shift: block means minus it stay exact for any first block.
  first = shift[:, :1]
  row_shift = first + weighted_mean((shift - first) + residual)
  block_means = (shift - row_shift) + residual
  offset = weighted_mean(block_means)
  within = jnp.sum(jnp.where(mask, m2, 0.0), axis=1, keepdims=True)
  between = jnp.sum(
      jnp.where(mask, counts * jnp.square(block_means - offset), 0.0), axis=1, keepdims=True)
  variance = (within + between) / size[:, None]
  std = jnp.sqrt(jnp.maximum(variance, 0.0))
  return [f[:, 0] for f in (row_scale, row_shift, offset, std)]
