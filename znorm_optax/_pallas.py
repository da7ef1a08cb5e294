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

The kernels take float32, bfloat16 and float16 leaves (upcast as they are
read) whose statistic groups are runs of consecutive elements: whole leaves,
and the rows of leading ``stacked_axes`` (each row, e.g. one layer of an
``nnx.scan`` stack, is a group of its own). Other leaves (``per_channel``
groups, stacked axes after a reduced one, ``axis_name``, leaves sharded over
Explicit mesh axes) take the XLA path, leaf by leaf. Pallas calls have no
derivative rules: a custom JVP differentiates the XLA path instead.

They are opt-in, ``kernels='pallas'`` (:mod:`znorm_optax._paths`), on the
Triton backend that JAX 0.11 deprecates; off GPUs they run in interpret mode,
for tests. Where this JAX cannot lower them for a GPU platform (checked once
per process, on a tiny kernel), that platform takes the grouped XLA path, with
a logged warning.
"""

import functools
import logging
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from znorm_optax import _leaves
from znorm_optax import _moments

try:  # The Triton backend is deprecated; a JAX without it takes the XLA path.
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as pl_triton
except ImportError:  # pragma: no cover - depends on the installed JAX.
  pl = pl_triton = None

KERNEL_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
_log = logging.getLogger(__name__)

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


def supports(leaf: jax.Array, axes: Sequence[int], axis_name: Any) -> bool:
  """Whether the kernels can take this leaf's statistics; the others take the XLA path.

  Each statistic group must be a run of consecutive elements: the reduced axes
  are the trailing ones (a whole leaf, or rows of leading stacked axes).
  """
  return (leaf.dtype in KERNEL_DTYPES and leaf.size > 0 and axis_name is None
          and tuple(axes) == tuple(range(leaf.ndim - len(axes), leaf.ndim))
          and not any(_leaves.explicit_spec(leaf) or ()))


@functools.cache
def lowers_for(platform: str) -> bool:
  """Whether this JAX lowers the kernels for `platform`; probed once, on a tiny leaf.

  A failure is logged and that platform takes the XLA path instead: a JAX that
  has dropped or changed the Triton backend must not break the optimizer.
  """
  if pl_triton is None:
    _log.warning('Pallas Triton kernels are not available in this JAX; ZNorm takes the XLA '
                 'path on %s.', platform)
    return False
  try:
    tiny = jax.ShapeDtypeStruct((1, 8), jnp.float32)
    jax.jit(functools.partial(_rows_partials, interpret=False)).trace(tiny).lower(
        lowering_platforms=(platform,))
  except Exception as error:  # noqa: BLE001 - any failure to lower means: use XLA.
    _log.warning('ZNorm\'s Pallas kernels do not lower for %s with JAX %s (%s: %s); taking '
                 'the XLA path there.', platform, jax.__version__, type(error).__name__,
                 str(error).splitlines()[0] if str(error) else '')
    return False
  return True


def standardized_by_kernels(leaves: Sequence[jax.Array], axes: Sequence[tuple[int, ...]],
                           eps: Any, *, interpret: bool) -> list[jax.Array]:
  """``(g - mean) / (std + eps)`` of each leaf over its `axes`, which :func:`supports`."""
  return _standardized(interpret, tuple(tuple(a) for a in axes),
                       jnp.asarray(_leaves.real_eps(eps), jnp.float32), list(leaves))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _standardized(interpret, axes, eps, leaves):
  return _moments.z_scores(leaves, leaf_moments(leaves, interpret, axes), eps)


@_standardized.defjvp
def _standardized_jvp(interpret, axes, primals, tangents):
  del interpret
  rescale = _moments.tiny_stds_matter(primals[0])
  return jax.jvp(
      lambda eps, leaves: _moments.standardized_per_leaf(leaves, axes, eps, rescale=rescale),
      primals, tangents)


def leaf_moments(leaves: Sequence[jax.Array], interpret: bool,
                 axes: Sequence[tuple[int, ...]] | None = None) -> list[_moments.Moments]:
  """Moments of each leaf's groups (whole leaves by default), read once by a Pallas kernel.

  Each leaf is a matrix with a row per group: its kept (leading) axes index
  the rows, its reduced (trailing) axes run along them.
  """
  if axes is None:
    axes = [tuple(range(g.ndim)) for g in leaves]
  rows = [g.reshape(-1, math.prod(g.shape[g.ndim - len(a):])) for g, a in zip(leaves, axes)]
  first_group = np.cumsum([0] + [r.shape[0] for r in rows])
  packed = [i for i, r in enumerate(rows) if r.shape[1] <= PACKED_LEAF_SIZE]
  large = [i for i, r in enumerate(rows) if r.shape[1] > PACKED_LEAF_SIZE]
  partials, counts, owners = [], [], []
  if packed:
    pieces, block_counts = [], []
    for i in packed:
      num_rows, size = rows[i].shape
      blocks = math.ceil(size / PACKED_BLOCK)
      pieces.append(jnp.pad(rows[i].astype(jnp.float32),
                            ((0, 0), (0, blocks * PACKED_BLOCK - size))).reshape(-1))
      block_counts.append(np.tile(_block_counts(size, PACKED_BLOCK), num_rows))
      owners.append(np.repeat(np.arange(first_group[i], first_group[i + 1]), blocks))
    block_counts = np.concatenate(block_counts)
    partials.append(_packed_partials(jnp.concatenate(pieces), block_counts, interpret))
    counts.append(block_counts)
  for i in large:
    num_rows, size = rows[i].shape
    partials.append(_rows_partials(rows[i], interpret))
    counts.append(np.tile(_block_counts(size, BLOCK), num_rows))
    owners.append(np.repeat(np.arange(first_group[i], first_group[i + 1]),
                            math.ceil(size / BLOCK)))
  fields = [jnp.concatenate(column) for column in zip(*partials)]
  per_group = _merge(fields, np.concatenate(counts), np.concatenate(owners), first_group[-1])
  return [
      _moments.Moments(*(field[first_group[i]:first_group[i + 1]].reshape(
          _moments.kept_shape(g, a)) for field in per_group))
      for i, (g, a) in enumerate(zip(leaves, axes))
  ]


def _block_counts(size: int, block: int) -> np.ndarray:
  counts = np.full(math.ceil(size / block), block, np.int32)
  counts[-1] = size - block * (len(counts) - 1)
  return counts


def _partials_kernel(*refs, block: int, size: int | None):
  """One block's scale, shift, residual and m2 (see the module docstring).

  The block's valid elements come first: `size` elements of its row in all
  (the grid's last axis walks the row's blocks), or, where `size` is None, as
  many as the block's entry in a counts input.
  """
  if size is None:
    count_ref, x_ref, *out_refs = refs
    count = count_ref[...]
  else:
    x_ref, *out_refs = refs
    count = jnp.minimum(block, size - pl.program_id(1) * block)
  scale_ref, shift_ref, residual_ref, m2_ref = out_refs
  valid = jnp.arange(block) < count
  # Masked: the last block of a row reaches past its end. Upcast as read.
  x = pl_triton.load(x_ref, mask=valid, other=0.0).astype(jnp.float32)
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


def _partials_call(grid, kernel, in_specs, interpret):
  """Four partials per program of `grid`, in row-major order of the grid."""
  num_blocks = math.prod(grid)
  if len(grid) == 1:
    out_spec = pl.BlockSpec((None,), lambda i: (i,))
  else:
    out_spec = pl.BlockSpec((None,), lambda row, i: (row * grid[1] + i,))
  return pl.pallas_call(
      kernel,
      out_shape=[jax.ShapeDtypeStruct((num_blocks,), jnp.float32)] * 4,
      grid=grid,
      in_specs=in_specs,
      out_specs=[out_spec] * 4,
      compiler_params=pl_triton.CompilerParams(num_warps=_NUM_WARPS),
      interpret=interpret,
      name='znorm_partial_moments',
  )


def _rows_partials(rows: jax.Array, interpret: bool) -> list[jax.Array]:
  """Partials of each BLOCK of each row of a matrix, row by row."""
  num_rows, size = rows.shape
  grid = (num_rows, math.ceil(size / BLOCK))
  kernel = functools.partial(_partials_kernel, block=BLOCK, size=size)
  in_specs = [pl.BlockSpec((None, BLOCK), lambda row, i: (row, i))]
  return _partials_call(grid, kernel, in_specs, interpret)(rows)


def _packed_partials(buffer, counts: np.ndarray, interpret: bool) -> list[jax.Array]:
  kernel = functools.partial(_partials_kernel, block=PACKED_BLOCK, size=None)
  in_specs = [pl.BlockSpec((None,), lambda i: (i,)),
              pl.BlockSpec((PACKED_BLOCK,), lambda i: (i,))]
  return _partials_call((len(counts),), kernel, in_specs, interpret)(
      jnp.asarray(counts), buffer)


def _merge(fields, counts: np.ndarray, owners: np.ndarray, num_groups: int):
  """Each statistic group's scale, shift, offset and scaled std from its blocks' partials.

  `owners` gives each block's group (a leaf, or a row of a stacked leaf). Groups
  are merged in sets of similar block counts, each a matrix with a row per group
  (padded to a power of two), so the work is a few kernels per set and at most
  twice the number of blocks.
  """
  # Partials arrive grouped by owner, but not in order (packed groups come first).
  order = np.argsort(owners, kind='stable')
  lengths = np.bincount(owners, minlength=num_groups)
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  widths = 1 << np.ceil(np.log2(lengths)).astype(np.int64)
  sets, merged = [], []
  for width in np.unique(widths):
    rows = np.flatnonzero(widths == width)
    columns = np.arange(width)
    mask = columns < lengths[rows, None]
    index = order[np.where(mask, starts[rows, None] + columns, starts[rows, None])]
    merged.append(_merge_rows([f[index] for f in fields], np.where(mask, counts[index], 0), mask))
    sets.append(rows)
  # Back to group order: one gather per field.
  group_order = np.argsort(np.concatenate(sets))
  return [jnp.concatenate(column)[group_order] for column in zip(*merged)]


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
