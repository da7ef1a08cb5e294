"""Stacked axes from the axis names that parameters carry."""

from typing import Any

import jax
from jax.sharding import PartitionSpec


def _is_spec(value: Any) -> bool:
  return value is None or isinstance(value, (PartitionSpec, tuple))


def stacked_axes_from_specs(specs: Any, name: str) -> Any:
  """Each leaf's position of the axis called ``name``, for ``stacked_axes=``.

  Flax records the layer axis of ``nnx.scan`` and ``nnx.vmap`` stacks in the
  parameters' axis names when the stack is created with
  ``transform_metadata={nnx.PARTITION_NAME: name}``, and
  ``nnx.get_partition_spec`` returns those names as one
  :class:`jax.sharding.PartitionSpec` per parameter. This reads them, so the
  per-layer statistics follow the model instead of a hand-written list. Give
  every parameter of the stacked layers axis names (``nnx.with_partitioning``):
  a parameter without them carries no layer axis either, and its layers would
  share one statistic.

  Args:
    specs: a pytree whose leaves are ``PartitionSpec``\\ s, tuples of axis
      names (an entry may be a name, a tuple of names or ``None``) or
      ``None``, such as ``nnx.get_partition_spec(nnx.state(model, nnx.Param))``
      (an ``nnx.State``) or its ``nnx.to_pure_dict``: either fits the
      gradients, which are matched by key path.
    name: the stacked axis, e.g. ``'layers'``.

  Returns:
    A pytree like ``specs`` whose leaves are the axis index or ``None``: the
    ``stacked_axes`` of :func:`znorm`, :func:`znorm_adam`,
    :func:`centralize` and :func:`gradient_statistics`.

  Raises:
    ValueError: if a leaf names ``name`` twice; the message names its path.

  Example:
    >>> from jax.sharding import PartitionSpec as P
    >>> import znorm_optax
    >>> specs = {'blocks': {'kernel': P('layers', 'embed', 'mlp')}, 'head': P('embed', None)}
    >>> znorm_optax.stacked_axes_from_specs(specs, 'layers')
    {'blocks': {'kernel': 0}, 'head': None}
  """

  def position(path, spec):
    entries = [entry if isinstance(entry, tuple) else (entry,) for entry in spec or ()]
    found = [axis for axis, names in enumerate(entries) if name in names]
    if len(found) > 1:
      raise ValueError(f'stacked_axes_from_specs: the spec {spec} of the leaf at '
                       f'{jax.tree_util.keystr(path) or "<root>"} names {name!r} twice.')
    return found[0] if found else None

  return jax.tree_util.tree_map_with_path(position, specs, is_leaf=_is_spec)
