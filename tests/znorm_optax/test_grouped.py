"""The grouped statistics path (the GPU and TPU default) on this CPU, against float64.

`kernels='grouped'` runs it on every platform: its packed layout here, as on
GPUs. The variadic layout (TPUs) is run directly through `_grouped`. Which
layout each platform lowers to is checked in test_lowering.py, and what they
compile to on GPUs and TPUs in tests/aot.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import znorm_optax
from tests.znorm_optax import reference
from tests.znorm_optax import trees
from znorm_optax import _grouped

LAYOUTS = _grouped.LAYOUTS
BIGGEST = float(np.finfo(np.float32).max)


def _layout_standardized(leaves, layout, eps=1e-10, axes=None):
  axes = [tuple(range(g.ndim)) for g in leaves] if axes is None else axes
  return jax.jit(lambda ls: _grouped.standardized_grouped(ls, axes, eps, layout=layout))(leaves)


def _hard_leaves(rng):
  """Leaves that share shapes (so they share reductions) and the cases exactness is about."""
  return {
      'a': trees.random_leaf(rng, (30, 7), jnp.float32),
      'b': trees.random_leaf(rng, (30, 7), jnp.float32),
      'c': trees.random_leaf(rng, (30, 7), jnp.bfloat16),
      'constant': jnp.full((30, 7), 3.0, jnp.float32),
      'zeros': jnp.zeros((30, 7), jnp.float32),
      # Constants whose raw mean rounds: without the max == min check, garbage or inf.
      'constant_inexact': jnp.full((1000,), 0.1, jnp.float32),
      'constant_huge': jnp.full((1000,), 1e30, jnp.float32),
      'large_mean': jnp.asarray(1e12 + 1e8 * rng.standard_normal(100), jnp.float32),
      'mean_1e6_stds': jnp.asarray(1e6 + rng.standard_normal(100), jnp.float32),
      'large': jnp.asarray(1e18 * rng.standard_normal(100), jnp.float32),
      'smallest_normals': jnp.asarray(1.2e-38 * rng.uniform(1, 100, 64), jnp.float32),
      'fp16': trees.random_leaf(rng, (33,), jnp.float16),
      'outlier_first': jnp.asarray(np.concatenate([[1e4], rng.standard_normal(99_999)]),
                                   jnp.float32),
  }


@pytest.mark.parametrize('layout', LAYOUTS)
def test_each_layout_matches_float64(layout):
  grads = _hard_leaves(np.random.default_rng(0))
  if layout == 'variadic':
    # XLA:CPU sums a variadic reduction in one sequential loop, where 1e8 swallows the
    # small squares after it; a TPU sums it in 1024 lanes, as jnp.sum does everywhere.
    del grads['outlier_first']
  outputs = _layout_standardized(list(grads.values()), layout)
  for (name, g), out in zip(grads.items(), outputs):
    reference.assert_close(out.astype(g.dtype), reference.znorm(g), atol=1e-5, err_msg=name)
  for name in ('constant', 'zeros', 'constant_inexact', 'constant_huge'):
    np.testing.assert_array_equal(outputs[list(grads).index(name)], 0.0, err_msg=name)


@pytest.mark.parametrize('layout', LAYOUTS)
def test_nan_inf_and_overflowing_squares_give_nan_in_their_leaf_only(layout):
  rng = np.random.default_rng(1)
  fine = trees.random_leaf(rng, (4, 5), jnp.float32)
  bad = {
      'nan': fine.at[1, 2].set(jnp.nan),
      'inf': fine.at[0, 0].set(jnp.inf),
      'constant_inf': jnp.full((4, 5), jnp.inf, jnp.float32),
      'squares_overflow': jnp.asarray(rng.uniform(-BIGGEST, BIGGEST, (4, 5)), jnp.float32),
  }
  outputs = _layout_standardized([fine, *bad.values()], layout)
  reference.assert_close(outputs[0], reference.znorm(fine))
  for name, out in zip(bad, outputs[1:]):
    assert np.all(np.isnan(out)), name


@pytest.mark.parametrize('layout', LAYOUTS)
def test_stacked_and_per_channel_groups(layout):
  rng = np.random.default_rng(2)
  layers = trees.random_leaf(rng, (4, 6, 5), jnp.float32)
  layers = layers.at[2].set(7.0)  # A constant layer maps to zeros on its own.
  kernel = trees.random_leaf(rng, (3, 3, 2, 4), jnp.float32)
  outputs = _layout_standardized([layers, layers * 2, kernel], layout,
                                 axes=[(1, 2), (1, 2), (0, 1, 2)])
  reference.assert_close(outputs[0], reference.per_slice(reference.znorm, layers, (0,)))
  reference.assert_close(outputs[1], reference.per_slice(reference.znorm, layers * 2, (0,)))
  reference.assert_close(outputs[2], reference.znorm(kernel, per_channel=True))
  np.testing.assert_array_equal(outputs[0][2], 0.0)


def test_grouped_option_through_znorm_and_znorm_adam():
  grads = trees.mixed_tree(3)
  normalized, _ = jax.jit(znorm_optax.znorm(kernels='grouped').update)(grads, None)
  for name, g in grads.items():
    reference.assert_close(normalized[name], reference.znorm(g), err_msg=name)
  rng = np.random.default_rng(4)
  steps = [{'w': trees.random_leaf(rng, (40, 20), jnp.float32),
            'v': trees.random_leaf(rng, (40, 20), jnp.float32),
            'b': trees.random_leaf(rng, (20,), jnp.float32)} for _ in range(3)]
  tx = znorm_optax.znorm_adam(0.05, kernels='grouped')
  params = jax.tree.map(jnp.zeros_like, steps[0])
  state = tx.init(params)
  algorithm1 = reference.ZnormAdam(0.05)
  for grads in steps:
    updates, state = jax.jit(tx.update)(grads, state, params)
    expected = algorithm1.update(grads)
    for name in grads:
      reference.assert_close(updates[name], expected[name], rtol=5e-5, atol=5e-7, err_msg=name)


def test_grouped_leaves_share_reductions():
  grads = {f'w{i}': jnp.ones((8, 4)) for i in range(6)}
  grouped = str(jax.make_jaxpr(znorm_optax.znorm(kernels='grouped').update)(grads, None))
  per_leaf = str(jax.make_jaxpr(znorm_optax.znorm(kernels='xla').update)(grads, None))
  # Pass one's sum, max and min and pass two's two sums: five for the group, ten per leaf.
  assert grouped.count('reduce_') == 5
  assert per_leaf.count('reduce_sum') == 12


@pytest.mark.parametrize('layout', LAYOUTS)
def test_derivatives_are_those_of_the_per_leaf_path(layout):
  rng = np.random.default_rng(5)
  leaves = [trees.random_leaf(rng, (30, 7), jnp.float32) for _ in range(2)]
  leaves.append(jnp.full((30, 7), 3.0, jnp.float32))
  axes = [(0, 1)] * 3
  weights = [trees.random_leaf(rng, (30, 7), jnp.float32) for _ in range(3)]

  def objective(path):
    def fn(leaves):
      if path == 'per_leaf':
        outputs = znorm_optax.znorm(kernels='xla').update(leaves, None)[0]
      else:
        outputs = _grouped.standardized_grouped(leaves, axes, 1e-10, layout=path)
      return sum(jnp.sum(w * o) for w, o in zip(weights, outputs))
    return fn

  got = jax.jit(jax.grad(objective(layout)))(leaves)
  expected = jax.jit(jax.grad(objective('per_leaf')))(leaves)
  chex.assert_tree_all_finite(got)
  chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-5)
  assert np.max(np.abs(got[0] - weights[0])) > 0.1  # Not the identity's derivative.


def test_vmap_and_inject_hyperparams():
  rng = np.random.default_rng(6)
  batch = {'w': trees.random_leaf(rng, (3, 40, 5), jnp.float32),
           'v': trees.random_leaf(rng, (3, 40, 5), jnp.float32)}
  tx = znorm_optax.znorm(kernels='grouped')
  updates = jax.jit(jax.vmap(lambda g: tx.update(g, None)[0]))(batch)
  for name, g in batch.items():
    reference.assert_close(updates[name], reference.per_slice(reference.znorm, g, (0,)))
  injected = optax.inject_hyperparams(znorm_optax.znorm, static_args=('kernels',))(
      eps=1e-10, kernels='grouped')
  grads = {'w': batch['w'][0]}
  updates, _ = jax.jit(injected.update)(grads, injected.init(grads))
  reference.assert_close(updates['w'], reference.znorm(grads['w']))


CPUS = jax.devices('cpu')[:8]
needs_8_devices = pytest.mark.skipif(len(CPUS) < 8, reason='needs 8 CPU devices (conftest.py)')


@needs_8_devices
@pytest.mark.parametrize('axis_type', [AxisType.Auto, AxisType.Explicit])
def test_sharded_leaves_under_jit(axis_type):
  rng = np.random.default_rng(7)
  mesh = jax.make_mesh((2, 4), ('a', 'b'), axis_types=(axis_type,) * 2, devices=CPUS)
  specs = {'w': P('a', 'b'), 'v': P('a', 'b'), 'u': P(None, 'b'), 'layers': P('a', None, 'b')}
  grads = {'w': trees.random_leaf(rng, (8, 12), jnp.float32),
           'v': trees.random_leaf(rng, (8, 12), jnp.float32),
           'u': trees.random_leaf(rng, (8, 12), jnp.float32),
           'layers': trees.random_leaf(rng, (4, 3, 8), jnp.float32)}
  stacked = {'w': None, 'v': None, 'u': None, 'layers': 0}
  sharded = {k: jax.device_put(g, NamedSharding(mesh, specs[k])) for k, g in grads.items()}
  tx = znorm_optax.znorm(kernels='grouped', stacked_axes=stacked)
  normalized = jax.jit(tx.update)(sharded, None)[0]
  for name, g in grads.items():
    expected = reference.per_slice(reference.znorm, g, (0,) if name == 'layers' else ())
    reference.assert_close(normalized[name], expected, atol=1e-5, err_msg=name)


@needs_8_devices
def test_axis_name_reduces_across_slices():
  rng = np.random.default_rng(8)
  grads = {'w': trees.random_leaf(rng, (16, 6), jnp.float32),
           'v': trees.random_leaf(rng, (16, 6), jnp.float32),
           'constant': jnp.full((16, 6), 2.0, jnp.float32)}
  mesh = jax.make_mesh((8,), ('d',), axis_types=(AxisType.Explicit,), devices=CPUS)
  specs = jax.tree.map(lambda _: P('d'), grads)
  sharded = jax.device_put(grads, jax.tree.map(lambda s: NamedSharding(mesh, s), specs))
  tx = znorm_optax.znorm(kernels='grouped', axis_name='d')
  normalized = jax.jit(jax.shard_map(lambda g: tx.update(g, None)[0], mesh=mesh,
                                     in_specs=(specs,), out_specs=specs))(sharded)
  for name, g in grads.items():
    reference.assert_close(normalized[name], reference.znorm(g), atol=1e-5, err_msg=name)
