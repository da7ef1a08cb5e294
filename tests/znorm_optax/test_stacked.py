"""`stacked_axes`: separate statistics for stacked layers and ensemble members."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

import znorm_optax
from tests.znorm_optax import reference
from tests.znorm_optax import trees


def _grads(seed=0):
  rng = np.random.default_rng(seed)
  return {
      # Three layers of very different scales, as gradients across depth are.
      'layers': jnp.asarray(rng.standard_normal((3, 8, 5)) * np.array([1e-3, 1.0, 30.0])[:, None, None]
                            + np.array([5.0, -1.0, 0.0])[:, None, None], jnp.float32),
      'members': trees.random_leaf(rng, (4, 3, 3, 2, 6), jnp.float32),
      'bias': trees.random_leaf(rng, (3, 5), jnp.float32),
      'plain': trees.random_leaf(rng, (7,), jnp.float32),
  }


class StackedAxesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_each_slice_is_normalized_on_its_own(self):
    grads = _grads()
    stacked = {'layers': 0, 'members': (0,), 'bias': 0, 'plain': None}
    for per_channel in (False, True):
      tx = znorm_optax.znorm(per_channel=per_channel, stacked_axes=stacked)
      updates, _ = self.variant(tx.update)(grads, None)
      for name, g in grads.items():
        axes = () if stacked[name] is None else (0,)
        expected = reference.per_slice(reference.znorm, g, axes, per_channel=per_channel)
        reference.assert_close(updates[name], expected, err_msg=f'{name} {per_channel}')
    # Pooled statistics are far from per-layer ones: the test can fail.
    pooled = reference.znorm(grads['layers'])
    per_layer_std = np.std(pooled.reshape(3, -1), axis=1)
    assert np.max(np.abs(per_layer_std - 1)) > 0.3, per_layer_std

  @chex.variants(with_jit=True)
  def test_int_tuple_prefix_and_callable_forms(self):
    grads = _grads(1)
    expected_axes = {'layers': (0,), 'members': (0,), 'bias': (0,), 'plain': (0,)}
    forms = {
        'int': 0,
        'tuple': (0,),
        'prefix': {'layers': 0, 'members': 0, 'bias': 0, 'plain': 0},
        'callable': lambda g: jax.tree.map(lambda _: 0, g),
    }
    for form, stacked_axes in forms.items():
      tx = znorm_optax.znorm(stacked_axes=stacked_axes, min_size=0)
      updates, _ = self.variant(tx.update)(grads, None)
      for name, g in grads.items():
        expected = reference.per_slice(reference.znorm, g, expected_axes[name], min_size=0)
        # JAX 0.7.2's XLA:CPU sums these groups in another order: errors up to 1.1e-6.
        reference.assert_close(updates[name], expected, atol=2e-6, err_msg=f'{form} {name}')

  def test_several_and_negative_axes(self):
    g = trees.random_leaf(np.random.default_rng(2), (2, 5, 3, 4), jnp.float32)
    updates, _ = znorm_optax.znorm(stacked_axes=(0, -2)).update(g, None)
    reference.assert_close(updates, reference.per_slice(reference.znorm, g, (0, 2)))

  def test_tree_wide_int_skips_leaves_with_too_few_dimensions(self):
    grads = {'matrix': jnp.arange(12.0).reshape(3, 4), 'scalar': jnp.float32(2.0)}
    updates, _ = znorm_optax.znorm(stacked_axes=1).update(grads, None)
    reference.assert_close(updates['matrix'],
                           reference.per_slice(reference.znorm, grads['matrix'], (1,)))
    np.testing.assert_array_equal(updates['scalar'], 2.0)

  def test_min_size_applies_per_slice(self):
    # Each of the 4 slices has 3 elements: normalized at min_size 3, unchanged at 4.
    g = trees.random_leaf(np.random.default_rng(3), (4, 3), jnp.float32)
    kept, _ = znorm_optax.znorm(stacked_axes=0, min_size=4).update(g, None)
    normalized, _ = znorm_optax.znorm(stacked_axes=0, min_size=3).update(g, None)
    np.testing.assert_array_equal(kept, g)
    reference.assert_close(normalized, reference.per_slice(reference.znorm, g, (0,)))

  def test_scaling_one_member_leaves_the_others_unchanged(self):
    grads = {'members': trees.random_leaf(np.random.default_rng(4), (5, 6, 4), jnp.float32)}
    scaled = {'members': grads['members'].at[2].multiply(1000.0)}
    for tx in (znorm_optax.znorm_adam(1e-2, stacked_axes=0),
               optax.chain(znorm_optax.znorm(stacked_axes=0), optax.adam(1e-2))):
      base, _ = jax.jit(tx.update)(grads, tx.init(grads), grads)
      after, _ = jax.jit(tx.update)(scaled, tx.init(grads), grads)
      others = np.array([0, 1, 3, 4])
      np.testing.assert_array_equal(after['members'][others], base['members'][others])
    # Pooled statistics would change every member's update.
    pooled, _ = znorm_optax.znorm().update(scaled, None)
    unscaled, _ = znorm_optax.znorm().update(grads, None)
    assert not np.allclose(pooled['members'][0], unscaled['members'][0], atol=1e-3)

  def test_centralize_and_gradient_statistics_per_slice(self):
    grads = _grads(5)
    centralized, _ = znorm_optax.centralize(stacked_axes=0).update(grads, None)
    stats = znorm_optax.gradient_statistics(grads, stacked_axes={'layers': 0, 'members': 0,
                                                                 'bias': None, 'plain': None})
    for name, g in grads.items():
      # With the stacked axis set aside, fewer than two axes remain for 'bias' and 'plain'.
      expected = reference.per_slice(
          reference.centralize, g, (0,)) if g.ndim >= 3 else reference.to_float64(g)
      # Centring rounds at the inputs' magnitude, not the outputs'.
      reference.assert_close(centralized[name], expected, atol=1e-6 * np.max(np.abs(g)),
                             err_msg=name)
    for name in ('layers', 'members'):
      got = stats[f"['{name}']"]
      rows = reference.to_float64(grads[name]).reshape(grads[name].shape[0], -1)
      for row, (mean, std, norm) in enumerate(map(reference.leaf_statistics, rows)):
        np.testing.assert_allclose([got.mean[row], got.std[row], got.l2_norm[row]],
                                   [mean, std, norm], rtol=1e-6, err_msg=f'{name}[{row}]')
    assert stats["['plain']"].std.shape == ()

  def test_errors_name_the_leaf(self):
    grads = {'dense': {'kernel': jnp.ones((3, 4))}}
    with pytest.raises(ValueError, match=r"\['dense'\]\['kernel'\].*2 dimensions"):
      znorm_optax.znorm(stacked_axes={'dense': {'kernel': 2}}).update(grads, None)
    with pytest.raises(ValueError, match='repeats an axis'):
      znorm_optax.znorm(stacked_axes=(0, -2)).update(grads, None)
    with pytest.raises(ValueError, match='pytree prefix'):
      znorm_optax.znorm(stacked_axes={'other': 0}).update(grads, None)


class _Block(nnx.Module):

  def __init__(self, rngs):
    self.linear = nnx.Linear(6, 6, rngs=rngs)

  def __call__(self, x):
    return jnp.tanh(self.linear(x))


class _ScannedModel(nnx.Module):
  """Three blocks stacked by nnx.vmap and applied with nnx.scan, then a head."""

  def __init__(self, layers, rngs):
    @nnx.split_rngs(splits=layers)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make_blocks(rngs):
      return _Block(rngs)

    self.blocks = make_blocks(rngs)
    self.head = nnx.Linear(6, 2, rngs=rngs)

  def __call__(self, x):
    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def body(block, x):
      return block(x)

    return self.head(body(self.blocks, x))


class _UnrolledModel(nnx.Module):
  """The same layers as separate modules, copied from a `_ScannedModel`."""

  def __init__(self, scanned):
    self.blocks = nnx.List([_Block(nnx.Rngs(0)) for _ in range(scanned.blocks.linear.bias.shape[0])])
    for i, block in enumerate(self.blocks):
      block.linear.kernel[...] = scanned.blocks.linear.kernel[i]
      block.linear.bias[...] = scanned.blocks.linear.bias[i]
    self.head = nnx.Linear(6, 2, rngs=nnx.Rngs(0))
    self.head.kernel[...] = scanned.head.kernel[...]
    self.head.bias[...] = scanned.head.bias[...]

  def __call__(self, x):
    for block in self.blocks:
      x = block(x)
    return self.head(x)


def _blocks_axis(grads):
  """Axis 0 for the scanned blocks' leaves, none elsewhere."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: 0 if 'blocks' in jax.tree_util.keystr(path) else None, grads)


def test_nnx_scan_model_updates_equal_the_unrolled_layers():
  scanned = _ScannedModel(3, nnx.Rngs(0))
  unrolled = _UnrolledModel(scanned)
  x = jax.random.normal(jax.random.key(1), (16, 6))

  def loss(model):
    return jnp.mean((model(x) - 1.0) ** 2)

  np.testing.assert_allclose(loss(scanned), loss(unrolled), rtol=1e-6)

  optimizers = [
      nnx.Optimizer(scanned, znorm_optax.znorm_adam(1e-2, stacked_axes=_blocks_axis),
                    wrt=nnx.Param),
      nnx.Optimizer(unrolled, znorm_optax.znorm_adam(1e-2), wrt=nnx.Param),
  ]
  for _ in range(3):
    for model, optimizer in zip((scanned, unrolled), optimizers):
      optimizer.update(model, nnx.grad(loss)(model))
  for i, block in enumerate(unrolled.blocks):
    np.testing.assert_allclose(scanned.blocks.linear.kernel[i], block.linear.kernel[...],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scanned.blocks.linear.bias[i], block.linear.bias[...],
                               rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(scanned.head.kernel[...], unrolled.head.kernel[...], rtol=1e-6)


def test_stacked_axes_from_specs_finds_the_named_axis():
  specs = {'scan': P('layers', 'embed', 'mlp'), 'vmap_inner': P(None, ('x', 'layers')),
           'none': P('embed'), 'empty': P(), 'tuple': ('embed', 'layers'), 'missing': None}
  assert znorm_optax.stacked_axes_from_specs(specs, 'layers') == {
      'scan': 0, 'vmap_inner': 1, 'none': None, 'empty': None, 'tuple': 1, 'missing': None}
  with pytest.raises(ValueError, match=r"leaf at \['twice'\] names 'layers' twice"):
    znorm_optax.stacked_axes_from_specs({'twice': P('layers', 'layers')}, 'layers')


class _NamedBlock(nnx.Module):

  def __init__(self, rngs):
    # Names only, no mesh to place them on (eager_sharding=False: Flax 0.12.0 has no
    # nnx.use_eager_sharding).
    names = lambda init, *axes: nnx.with_partitioning(init, axes, eager_sharding=False)
    self.linear = nnx.Linear(6, 6, kernel_init=names(nnx.initializers.lecun_normal(), 'in', 'out'),
                             bias_init=names(nnx.initializers.zeros_init(), 'out'), rngs=rngs)
    self.unnamed = nnx.Linear(6, 6, rngs=rngs)


def test_stacked_axes_from_the_axis_names_nnx_vmap_records():
  @nnx.split_rngs(splits=3)
  @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: 'layers'})
  def make_blocks(rngs):
    return _NamedBlock(rngs)

  blocks = make_blocks(nnx.Rngs(0))
  specs = nnx.to_pure_dict(nnx.get_partition_spec(nnx.state(blocks, nnx.Param)))
  axes = znorm_optax.stacked_axes_from_specs(specs, 'layers')
  # A parameter without axis names gets none from nnx.vmap either: it is not found.
  assert axes == {'linear': {'kernel': 0, 'bias': 0}, 'unnamed': {'kernel': None, 'bias': None}}
  grads = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(blocks, nnx.Param)))
  grads['linear']['bias'] = grads['linear']['bias'] + np.arange(3.0)[:, None] * 100
  updates, _ = znorm_optax.znorm(stacked_axes=axes).update(grads, None)
  for kind in ('kernel', 'bias'):
    g = grads['linear'][kind]
    reference.assert_close(updates['linear'][kind], reference.per_slice(reference.znorm, g, (0,)),
                           err_msg=kind)
