"""The statistics on several devices: pmap replicas, jit over Auto and Explicit meshes, axis_name.

`tests/conftest.py` provides 8 simulated CPU devices; the tests take them with
`jax.devices('cpu')`, so they also run on a machine whose default backend is
an accelerator.
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

N_DEVICES = 8
CPUS = jax.devices('cpu')[:N_DEVICES]
pytestmark = pytest.mark.skipif(
    len(CPUS) < N_DEVICES, reason=f'needs {N_DEVICES} CPU devices (tests/conftest.py sets them)')


class PmapTest(chex.TestCase):

  @chex.variants(with_pmap=True)
  def test_replicas_get_identical_updates_from_pmeaned_gradients(self):
    rng = np.random.default_rng(0)
    shapes = {'kernel': ((3, 3, 2, 4), jnp.float32), 'bias': ((4,), jnp.float32),
              'bf16': ((6, 5), jnp.bfloat16), 'scale': ((1,), jnp.float32)}
    # Every replica sees a different gradient; only their mean is shared.
    per_replica = [trees.mixed_tree(seed=int(s), leaves=shapes)
                   for s in rng.integers(0, 2**31, N_DEVICES)]
    grads = jax.tree.map(lambda *leaves: jnp.stack(leaves), *per_replica)
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:], g.dtype), grads)
    tx = optax.chain(znorm_optax.znorm(), optax.adam(1e-2))

    def step(params, grads):
      grads = jax.lax.pmean(grads, axis_name='batch')
      normalized, _ = znorm_optax.znorm().update(grads, None)
      updates, _ = tx.update(grads, tx.init(params), params)
      return normalized, updates

    pmapped = self.variant(step, axis_name='batch', devices=CPUS,
                           broadcast_args_to_devices=False, reduce_fn=None)
    replicated_params = jax.tree.map(lambda p: jnp.stack([p] * N_DEVICES), params)
    normalized, updates = pmapped(replicated_params, grads)
    for path, leaf in jax.tree_util.tree_leaves_with_path((normalized, updates)):
      leaf = np.asarray(leaf)
      for replica in range(1, N_DEVICES):
        np.testing.assert_array_equal(leaf[replica], leaf[0], err_msg=f'{path}, {replica}')
    # And they normalize the mean gradient (bf16 is left out: pmean rounds its mean to bf16).
    for name in ('kernel', 'bias', 'scale'):
      expected = reference.znorm(np.mean(reference.to_float64(grads[name]), axis=0))
      reference.assert_close(normalized[name][0], expected, err_msg=name)


def _per_block_offsets(shape, axis, rng, blocks=N_DEVICES):
  """Values whose blocks along `axis` have very different means and scales.

  Statistics taken per device would be far from the global ones.
  """
  block_shape = list(shape)
  block_shape[axis] = shape[axis] // blocks
  parts = [10.0 * k + (k + 1) * rng.standard_normal(block_shape) for k in range(blocks)]
  return jnp.asarray(np.concatenate(parts, axis=axis), jnp.float32)


def _sharded_grads(rng):
  """Leaves sharded on either axis, on both mesh axes, on two axes at once, or replicated."""
  grads = {
      'rows': _per_block_offsets((64, 12), 0, rng),
      'columns': _per_block_offsets((12, 64), 1, rng),
      'both': _per_block_offsets((16, 32), 0, rng),
      'conv': _per_block_offsets((3, 3, 8, 16), 3, rng),
      'vector': _per_block_offsets((128,), 0, rng),
      'replicated': jnp.asarray(rng.standard_normal((5, 3)), jnp.float32),
  }
  specs = {'rows': P(('a', 'b'), None), 'columns': P(None, ('a', 'b')), 'both': P('a', 'b'),
           'conv': P(None, None, 'a', 'b'), 'vector': P('b'), 'replicated': P()}
  return grads, specs


def _mesh(axis_type):
  return jax.make_mesh((2, 4), ('a', 'b'), axis_types=(axis_type,) * 2, devices=CPUS)


@pytest.mark.parametrize('axis_type', [AxisType.Explicit, AxisType.Auto])
def test_jit_over_sharded_leaves_uses_global_statistics(axis_type):
  grads, specs = _sharded_grads(np.random.default_rng(1))
  mesh = _mesh(axis_type)
  with jax.set_mesh(mesh):
    sharded = {k: jax.device_put(g, NamedSharding(mesh, specs[k])) for k, g in grads.items()}
    assert len(sharded['both'].sharding.device_set) == N_DEVICES
    for per_channel in (False, True):
      tx = znorm_optax.znorm(per_channel=per_channel)
      updates, _ = jax.jit(tx.update)(sharded, None)
      for name, g in grads.items():
        assert updates[name].sharding.is_equivalent_to(sharded[name].sharding, g.ndim), name
        reference.assert_close(updates[name], reference.znorm(g, per_channel=per_channel),
                               rtol=1e-5, atol=1e-5, err_msg=f'{name}, {per_channel}')
    centralized, _ = jax.jit(znorm_optax.centralize().update)(sharded, None)
    stats = jax.jit(znorm_optax.gradient_statistics)(sharded)
  for name, g in grads.items():
    reference.assert_close(centralized[name], reference.centralize(g), rtol=1e-5, atol=1e-5,
                           err_msg=name)
    expected = reference.leaf_statistics(g)
    got = stats[f"['{name}']"]
    for field, value in zip(('mean', 'std', 'l2_norm'), expected):
      np.testing.assert_allclose(getattr(got, field), value, rtol=1e-5, err_msg=f'{name} {field}')

  # Sanity check that the test can fail: per-device statistics would be far off.
  rows = reference.to_float64(grads['rows']).reshape(N_DEVICES, -1)
  per_block = np.concatenate([reference.znorm(block) for block in rows]).reshape(64, 12)
  assert np.max(np.abs(per_block - reference.znorm(grads['rows']))) > 1.0


def test_explicit_leaves_need_no_mesh_context():
  # A training loop may jit over arrays placed on an Explicit mesh without jax.set_mesh;
  # stacked rows then slice a dimension split over an Explicit axis (seen in an FSDP run).
  rng = np.random.default_rng(5)
  grads = {'stack': _per_block_offsets((4, 16), 1, rng), 'conv': _per_block_offsets(
      (2, 3, 3, 8), 3, rng)}
  specs = {'stack': P(None, 'b'), 'conv': P('a', None, None, 'b')}
  sharded = _place(grads, _mesh(AxisType.Explicit), specs)
  assert jax.sharding.get_abstract_mesh().empty
  updates, _ = jax.jit(znorm_optax.znorm(stacked_axes=0).update)(sharded, None)
  for name, g in grads.items():
    reference.assert_close(updates[name], reference.per_slice(reference.znorm, g, (0,)),
                           rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize('axis_type', [AxisType.Explicit, AxisType.Auto])
def test_znorm_adam_steps_over_sharded_leaves_match_algorithm1(axis_type):
  grads, specs = _sharded_grads(np.random.default_rng(2))
  mesh = _mesh(axis_type)
  params = jax.tree.map(jnp.zeros_like, grads)
  tx = znorm_optax.znorm_adam(1e-2)
  algorithm1 = reference.ZnormAdam(1e-2)

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  with jax.set_mesh(mesh):
    p = _place(params, mesh, specs)
    state = tx.init(p)
    expected = jax.tree.map(reference.to_float64, params)
    for seed in range(3):
      g, _ = _sharded_grads(np.random.default_rng(seed + 10))
      p, state = step(p, state, _place(g, mesh, specs))
      expected = {k: expected[k] + u for k, u in algorithm1.update(g).items()}
  for name in grads:
    reference.assert_close(p[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


# Each leaf split over the 8 devices along a different axis, as FSDP does.
SPLIT_AXES = {'rows': 0, 'columns': 1, 'conv': 2, 'vector': 0}


def _split_grads(rng):
  return {
      'rows': _per_block_offsets((64, 12), 0, rng),
      'columns': _per_block_offsets((12, 64), 1, rng),
      'conv': _per_block_offsets((3, 3, 16, 4), 2, rng),
      'vector': _per_block_offsets((128,), 0, rng),
  }


def _shard_map_over_slices(fn, grads):
  """Runs `fn` under shard_map with every leaf split along its SPLIT_AXES axis."""
  mesh = jax.make_mesh((N_DEVICES,), ('fsdp',), axis_types=(AxisType.Explicit,), devices=CPUS)
  specs = {name: P(*([None] * SPLIT_AXES[name] + ['fsdp'])) for name in grads}
  mapped = jax.shard_map(fn, mesh=mesh, in_specs=(specs,), out_specs=specs)
  return jax.jit(mapped)(_place(grads, mesh, specs))


def _place(grads, mesh, specs):
  return {k: jax.device_put(g, NamedSharding(mesh, specs[k])) for k, g in grads.items()}


def test_axis_name_reduces_statistics_across_slices():
  grads = _split_grads(np.random.default_rng(3))
  normalized = _shard_map_over_slices(
      lambda g: znorm_optax.znorm(axis_name='fsdp').update(g, None)[0], grads)
  tx = znorm_optax.znorm_adam(1e-2, axis_name='fsdp')
  adam = _shard_map_over_slices(lambda g: tx.update(g, tx.init(g), g)[0], grads)
  first_step = reference.ZnormAdam(1e-2).update(grads)
  for name, g in grads.items():
    reference.assert_close(normalized[name], reference.znorm(g), rtol=1e-5, atol=1e-5,
                           err_msg=name)
    reference.assert_close(adam[name], first_step[name], rtol=1e-5, atol=1e-7, err_msg=name)
  # Centralization keeps the last axis, so only leaves split along another axis qualify.
  del grads['columns']
  centralized = _shard_map_over_slices(
      lambda g: znorm_optax.centralize(axis_name='fsdp').update(g, None)[0], grads)
  for name, g in grads.items():
    reference.assert_close(centralized[name], reference.centralize(g), rtol=1e-5, atol=1e-5,
                           err_msg=name)


def test_axis_name_gradient_statistics_and_per_channel():
  grads = _split_grads(np.random.default_rng(4))
  mesh = jax.make_mesh((N_DEVICES,), ('fsdp',), axis_types=(AxisType.Explicit,), devices=CPUS)
  specs = {name: P(*([None] * axis + ['fsdp'])) for name, axis in SPLIT_AXES.items()}

  def stats(g):
    return jax.tree.map(lambda s: s[None], znorm_optax.gradient_statistics(g, axis_name='fsdp'))

  got = jax.jit(jax.shard_map(stats, mesh=mesh, in_specs=(specs,), out_specs=P('fsdp')))(
      _place(grads, mesh, specs))
  for name, g in grads.items():
    leaf_stats = got[f"['{name}']"]
    for field, value in zip(('mean', 'std', 'l2_norm'), reference.leaf_statistics(g)):
      np.testing.assert_allclose(getattr(leaf_stats, field), np.full(N_DEVICES, value),
                                 rtol=1e-5, err_msg=f'{name} {field}')
  # Per-channel statistics, where the split axis is one of the reduced axes.
  per_channel = {k: grads[k] for k in ('rows', 'conv')}
  normalized = jax.jit(jax.shard_map(
      lambda g: znorm_optax.znorm(per_channel=True, axis_name='fsdp').update(g, None)[0],
      mesh=mesh, in_specs=({k: specs[k] for k in per_channel},),
      out_specs={k: specs[k] for k in per_channel}))(_place(per_channel, mesh, specs))
  for name, g in per_channel.items():
    reference.assert_close(normalized[name], reference.znorm(g, per_channel=True),
                           rtol=1e-5, atol=1e-5, err_msg=name)


def test_axis_name_under_pmap_over_slices():
  g = _per_block_offsets((N_DEVICES * 4, 6), 0, np.random.default_rng(5))
  slices = g.reshape(N_DEVICES, 4, 6)
  normalized = jax.pmap(lambda x: znorm_optax.znorm(axis_name='d').update(x, None)[0],
                        axis_name='d', devices=CPUS)(slices)
  reference.assert_close(normalized.reshape(g.shape), reference.znorm(g), rtol=1e-5, atol=1e-5)
