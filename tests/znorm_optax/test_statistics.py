"""Tests of `znorm_optax.gradient_statistics`."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import znorm_optax
from tests.znorm_optax import reference
from tests.znorm_optax import trees


def _nested_tree():
  rng = np.random.default_rng(30)
  return {
      'encoder': [
          {'kernel': trees.random_leaf(rng, (3, 3, 2, 4), jnp.float32),
           'bias': trees.random_leaf(rng, (4,), jnp.bfloat16)},
          (trees.random_leaf(rng, (5, 6), jnp.float16), jnp.float32(2.5)),
      ],
      'head': trees.random_leaf(rng, (20,), jnp.float32, loc=1e4, scale=1.0),
      'frozen': None,
      'masked': optax.MaskedNode(),
  }


@pytest.mark.parametrize('jit', [False, True])
def test_matches_reference_per_path(jit):
  grads = _nested_tree()
  statistics_fn = jax.jit(znorm_optax.gradient_statistics) if jit else (
      znorm_optax.gradient_statistics)
  statistics = statistics_fn(grads)
  paths_and_leaves = jax.tree_util.tree_leaves_with_path(grads)
  # Keys are keystr paths, in leaf order; None and MaskedNode have no leaves.
  assert list(statistics) == [jax.tree_util.keystr(path) for path, _ in paths_and_leaves]
  assert "['encoder'][1][0]" in statistics
  for path, leaf in paths_and_leaves:
    key = jax.tree_util.keystr(path)
    stats = statistics[key]
    assert isinstance(stats, znorm_optax.LeafStatistics)
    for value in stats:
      assert value.shape == () and value.dtype == jnp.float32, key
    mean, std, l2_norm = reference.leaf_statistics(leaf)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(stats.std, std, rtol=1e-5, atol=1e-7, err_msg=key)
    np.testing.assert_allclose(stats.l2_norm, l2_norm, rtol=1e-6, err_msg=key)


def test_jit_traces_once():
  chex.clear_trace_counter()
  statistics_fn = jax.jit(chex.assert_max_traces(znorm_optax.gradient_statistics, n=1))
  for seed in range(3):
    statistics_fn(trees.mixed_tree(seed, {k: trees.MIXED_LEAVES[k] for k in ('bias', 'row')}))


def test_constant_leaf_has_zero_std():
  stats = znorm_optax.gradient_statistics({'w': jnp.full((1000,), 0.1, jnp.float32)})["['w']"]
  assert float(stats.std) == 0.0
  np.testing.assert_allclose(stats.mean, np.float32(0.1), rtol=1e-7)


def test_empty_leaf():
  # As documented: NaN mean and std, zero norm.
  stats = znorm_optax.gradient_statistics({'empty': jnp.zeros((0, 3))})["['empty']"]
  assert np.isnan(stats.mean) and np.isnan(stats.std)
  assert float(stats.l2_norm) == 0.0


def test_large_finite_gradients_do_not_overflow():
  # Exploding gradients are what the helper is for; their squares overflow float32.
  g = jnp.asarray(1e25 * np.random.default_rng(31).standard_normal(100), jnp.float32)
  stats = znorm_optax.gradient_statistics({'g': g})["['g']"]
  mean, std, l2_norm = reference.leaf_statistics(g)
  np.testing.assert_allclose([stats.mean, stats.std, stats.l2_norm], [mean, std, l2_norm],
                             rtol=1e-5)


def test_non_floating_leaf_names_its_path():
  with pytest.raises(TypeError, match=r"\['model'\]\['step'\]"):
    znorm_optax.gradient_statistics({'model': {'step': jnp.array(3)}})
