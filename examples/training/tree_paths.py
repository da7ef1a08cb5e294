"""Leaf paths as names: ``'blocks/0/conv1/conv/kernel'``.

The one spelling of a leaf's name, in checkpoints' checksums and in
``gradient_statistics.jsonl``: changing it would orphan what older runs wrote.
"""

import jax


def path_name(path) -> str:
  """A key path's keys (dict key, index or attribute name) joined by ``/``."""
  return jax.tree_util.keystr(path, simple=True, separator='/')


def leaf_names(tree) -> list[str]:
  """:func:`path_name` of each leaf of ``tree``, in leaf order."""
  return [path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
