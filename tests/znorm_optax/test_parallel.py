"""ZNorm on several devices: pmap replicas and jit over a sharded Mesh.

`tests/conftest.py` provides 8 simulated CPU devices.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import znorm_optax
from tests.znorm_optax import reference
from tests.znorm_optax import trees

N_DEVICES = 8


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

    pmapped = self.variant(
        step, axis_name='batch', broadcast_args_to_devices=False, reduce_fn=None)
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


def _per_shard_offsets(shape, axis, rng):
  """Values whose shards along `axis` have very different means and scales."""
  shard = shape[axis] // N_DEVICES
  block_shape = list(shape)
  block_shape[axis] = shard
  blocks = [10.0 * k + (k + 1) * rng.standard_normal(block_shape) for k in range(N_DEVICES)]
  return jnp.asarray(np.concatenate(blocks, axis=axis), jnp.float32)


def test_jit_over_sharded_leaves_uses_global_statistics():
  rng = np.random.default_rng(1)
  mesh = Mesh(np.array(jax.devices()[:N_DEVICES]), ('data',))
  grads = {
      'rows': _per_shard_offsets((64, 12), 0, rng),
      'columns': _per_shard_offsets((12, 64), 1, rng),
      'vector': _per_shard_offsets((128,), 0, rng),
      'replicated': jnp.asarray(rng.standard_normal((5, 3)), jnp.float32),
  }
  specs = {'rows': P('data', None), 'columns': P(None, 'data'), 'vector': P('data'),
           'replicated': P()}
  sharded = {name: jax.device_put(g, NamedSharding(mesh, specs[name])) for name, g in grads.items()}
  assert len(sharded['rows'].sharding.device_set) == N_DEVICES
  single = jax.device_put(grads, jax.devices()[0])

  for per_channel in (False, True):
    tx = znorm_optax.znorm(per_channel=per_channel)
    sharded_updates, _ = jax.jit(tx.update)(sharded, None)
    single_updates, _ = jax.jit(tx.update)(single, None)
    chex.assert_trees_all_close(sharded_updates, single_updates, rtol=1e-6, atol=1e-6)
    for name, g in grads.items():
      expected = reference.znorm(g, per_channel=per_channel)
      reference.assert_close(sharded_updates[name], expected, err_msg=name)

  # Sanity check that the test can fail: per-shard statistics would be far off.
  rows = reference.to_float64(grads['rows']).reshape(N_DEVICES, -1)
  per_shard = np.concatenate([reference.znorm(block) for block in rows]).reshape(64, 12)
  assert np.max(np.abs(per_shard - reference.znorm(grads['rows']))) > 1.0


def test_znorm_adam_step_over_sharded_leaves_equals_single_device():
  rng = np.random.default_rng(2)
  mesh = Mesh(np.array(jax.devices()[:N_DEVICES]), ('data',))
  sharding = NamedSharding(mesh, P(None, 'data'))
  params = {'kernel': jnp.asarray(rng.standard_normal((16, 32)), jnp.float32)}
  tx = znorm_optax.znorm_adam(1e-2)

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  results = []
  for place in (lambda x: jax.device_put(x, sharding), lambda x: jax.device_put(x, jax.devices()[0])):
    p, state = place(params), tx.init(place(params))
    for seed in range(3):
      grads = {'kernel': _per_shard_offsets((16, 32), 1, np.random.default_rng(seed))}
      p, state = step(p, state, place(grads))
    results.append(p)
  chex.assert_trees_all_close(results[0], results[1], rtol=1e-6, atol=1e-6)
