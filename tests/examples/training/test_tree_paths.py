"""Leaf names as checkpoints' checksums and ``gradient_statistics.jsonl`` spell them."""

import jax
import numpy as np
import optax

from examples.training import tree_paths


def test_names_join_keys_indices_and_attributes_with_slashes():
  # A pure dict of an nnx.Optimizer's state: int keys for a chain's and a tuple's parts.
  tree = {'opt_state': {0: {'count': 0}, 1: (optax.EmptyState(), {'mu': {'dense': {'kernel': 1}}})},
          'blocks': [{'kernel': 2}, {'kernel': 3}]}
  assert tree_paths.leaf_names(tree) == [
      'blocks/0/kernel', 'blocks/1/kernel', 'opt_state/0/count', 'opt_state/1/1/mu/dense/kernel']
  (path, _), = jax.tree_util.tree_flatten_with_path(optax.ScaleByAdamState(np.int32(1), {}, {}))[0]
  assert tree_paths.path_name(path) == 'count'
