"""Tests of `znorm_optax.znorm` against the float64 reference of eq. 1."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import znorm_optax
from tests.znorm_optax import reference
from tests.znorm_optax import trees


def _apply(update_fn, tx, grads):
  updates, _ = update_fn(grads, tx.init(grads))
  return updates


class ZnormNumericsTest(chex.TestCase):
  """Eq. 1 per leaf, eagerly and under jit, on the inputs the issue lists."""

  def normalize(self, grads, **kwargs):
    tx = znorm_optax.znorm(**kwargs)
    return _apply(self.variant(tx.update), tx, grads)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(False, True)
  def test_mixed_tree_matches_reference(self, per_channel):
    grads = trees.mixed_tree(seed=1)
    updates = self.normalize(grads, per_channel=per_channel)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, grads)
    for name, g in grads.items():
      with self.subTest(name):
        reference.assert_close(updates[name], reference.znorm(g, per_channel=per_channel))

  @chex.variants(with_jit=True)
  def test_many_leaves_of_many_sizes(self):
    # Hundreds of small leaves are typical (biases, norms); sizes straddle powers of two.
    rng = np.random.default_rng(15)
    sizes = [2, 3, 4, 5, 7, 8, 9, 31, 33, 100, 127, 128, 129, 2047, 2048, 2049, 4095, 4096, 4097]
    dtypes = (jnp.float32, jnp.bfloat16, jnp.float16)
    grads = {f'{size}_{i}': trees.random_leaf(rng, (size,), dtypes[i % 3])
             for i, size in enumerate(sizes + list(rng.integers(2, 64, 12)))}
    grads['kernel_4096'] = trees.random_leaf(rng, (64, 64), jnp.float32)
    updates = self.normalize(grads)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, grads)
    for name, g in grads.items():
      reference.assert_close(updates[name], reference.znorm(g), err_msg=name)

  def test_population_std_by_hand(self):
    # mean 2.5, population std sqrt(1.25): z = (x - 2.5) / 1.1180340.
    updates, _ = znorm_optax.znorm().update(jnp.array([1.0, 2.0, 3.0, 4.0]), None)
    expected = np.array([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(1.25)
    np.testing.assert_allclose(updates, expected, rtol=1e-6)

  @chex.variants(with_jit=True)
  def test_mean_far_above_std(self):
    rng = np.random.default_rng(2)
    means_and_stds = [(1e4, 1.0), (-1e4, 1.0), (10.0, 1e-3), (-3e7, 3e3)]
    grads = {
        f'mean={mean:g},std={std:g}': jnp.asarray(
            mean + std * rng.standard_normal((200, 50)), jnp.float32)
        for mean, std in means_and_stds
    }
    updates = self.normalize(grads)
    for name, g in grads.items():
      reference.assert_close(updates[name], reference.znorm(g), err_msg=name)

  @chex.variants(with_jit=True)
  def test_tiny_gradients_eps_dominates(self):
    rng = np.random.default_rng(3)
    g = jnp.asarray(1e-30 * (0.5 + rng.standard_normal(1000)), jnp.float32)
    updates = self.normalize({'g': g})
    expected = reference.znorm(g)
    # With std ~ 1e-30 << eps = 1e-10 the output is (g - mean) / eps ~ 1e-20, not unit scale.
    self.assertLess(np.max(np.abs(expected)), 1e-19)
    reference.assert_close(updates['g'], expected, rtol=1e-6, atol=1e-6 * np.max(np.abs(expected)))

  @chex.variants(with_jit=True)
  def test_constant_leaves_map_to_exact_zeros(self):
    values = [(jnp.float32, 0.0), (jnp.float32, -3.7), (jnp.float32, 1e30),
              (jnp.bfloat16, 1e4), (jnp.float16, 65504.0), (jnp.float16, -1e-7)]
    grads = {}
    for dtype, value in values:
      grads[f'{value:g}_vector'] = jnp.full((7,), value, dtype)
      grads[f'{value:g}_kernel'] = jnp.full((3, 4), value, dtype)
    # eps=1e-20 takes the rescaled path: next to a scale of 2**99 (1e30), eps / scale
    # underflows float32, and a constant leaf must still give 0, not 0 * inf.
    for per_channel, eps in ((False, 1e-10), (True, 1e-10), (False, 1e-20), (True, 1e-20)):
      updates = self.normalize(grads, per_channel=per_channel, eps=eps)
      chex.assert_trees_all_equal_shapes_and_dtypes(updates, grads)
      for name, leaf in updates.items():
        np.testing.assert_array_equal(leaf, np.zeros(leaf.shape), err_msg=f'{name}, eps={eps}')

  @chex.variants(with_jit=True, without_jit=True)
  def test_size_zero_and_one_leaves(self):
    grads = {
        'scalar': jnp.float32(-2.5),
        'single': jnp.array([3.0], jnp.bfloat16),
        'single_kernel': jnp.array([[7.0]], jnp.float16),
        'empty': jnp.zeros((0,), jnp.float32),
        'empty_kernel': jnp.zeros((0, 3), jnp.float32),
    }
    # By default a single element passes through: eq. 1 would zero it forever.
    chex.assert_trees_all_equal(self.normalize(grads), grads, strict=True)
    # With min_size=0 eq. 1 applies to every leaf: (g - g) / (0 + eps) = 0.
    updates = self.normalize(grads, min_size=0)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, grads)
    for name in ('scalar', 'single', 'single_kernel'):
      np.testing.assert_array_equal(updates[name], np.zeros(grads[name].shape), err_msg=name)

  @chex.variants(with_jit=True)
  def test_min_size_counts_elements_per_statistic_group(self):
    rng = np.random.default_rng(4)
    grads = {
        'four': trees.random_leaf(rng, (4,), jnp.float32),
        'five': trees.random_leaf(rng, (5,), jnp.float32),
        'wide_row': trees.random_leaf(rng, (1, 8), jnp.float32),  # groups of 1 per channel
        'tall_column': trees.random_leaf(rng, (6, 1), jnp.float32),  # one group of 6
    }
    updates = self.normalize(grads, min_size=5, per_channel=True)
    np.testing.assert_array_equal(updates['four'], grads['four'])
    np.testing.assert_array_equal(updates['wide_row'], grads['wide_row'])
    for name in ('five', 'tall_column'):
      reference.assert_close(updates[name], reference.znorm(grads[name], per_channel=True))

  @chex.variants(with_jit=True)
  def test_low_precision_dtypes(self):
    rng = np.random.default_rng(5)
    grads = {
        'bf16': trees.random_leaf(rng, (64, 32), jnp.bfloat16, loc=0.3, scale=2.0),
        'fp16': trees.random_leaf(rng, (64, 32), jnp.float16, loc=-0.1, scale=0.01),
        # Squares of these overflow float16 (max 65504): the statistics must be upcast.
        'fp16_full_range': jnp.asarray(rng.uniform(-65504, 65504, (500,)), jnp.float16),
        'fp16_near_max': jnp.asarray(rng.uniform(6e4, 65504, (40, 8)), jnp.float16),
    }
    grads['fp16_near_max'] = grads['fp16_near_max'].at[0, 0].set(65504.0)
    for per_channel in (False, True):
      updates = self.normalize(grads, per_channel=per_channel)
      chex.assert_trees_all_equal_shapes_and_dtypes(updates, grads)
      for name, g in grads.items():
        with self.subTest(f'{name}, per_channel={per_channel}'):
          reference.assert_close(updates[name], reference.znorm(g, per_channel=per_channel))

  @chex.variants(with_jit=True)
  def test_per_channel_statistics_over_all_but_last_axis(self):
    rng = np.random.default_rng(6)
    grads = {
        'conv': trees.random_leaf(rng, (3, 3, 4, 8), jnp.float32),
        'dense': trees.random_leaf(rng, (16, 8), jnp.float32),
        'bias': trees.random_leaf(rng, (8,), jnp.float32),
    }
    # Channels of very different offsets and scales; channel 2 of `dense` is constant.
    offsets = jnp.asarray(rng.uniform(-100, 100, 8), jnp.float32)
    scales = jnp.asarray(10.0 ** rng.uniform(-1, 3, 8), jnp.float32)  # |mean| <= 1e3 std
    grads['conv'] = grads['conv'] * scales + offsets
    grads['dense'] = (grads['dense'] * scales + offsets).at[:, 2].set(5.0)
    updates = self.normalize(grads, per_channel=True)
    for name, g in grads.items():
      reference.assert_close(updates[name], reference.znorm(g, per_channel=True))
    np.testing.assert_array_equal(updates['dense'][:, 2], np.zeros(16))
    channels = np.asarray(updates['conv']).reshape(-1, 8)
    np.testing.assert_allclose(channels.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(channels.std(axis=0), 1.0, rtol=1e-5)
    # Without per_channel, the same kernel is normalized as a whole, which differs.
    whole = np.asarray(self.normalize(grads)['conv'])
    self.assertGreater(np.max(np.abs(whole - np.asarray(updates['conv']))), 0.1)

  @chex.variants(with_jit=True)
  def test_updates_have_zero_mean_and_unit_std_per_leaf(self):
    grads = trees.mixed_tree(seed=7, leaves={k: trees.MIXED_LEAVES[k] for k in
                                             ('conv_kernel', 'dense_kernel', 'bias')})
    for name, leaf in self.normalize(grads).items():
      self.assertAlmostEqual(float(jnp.mean(leaf)), 0.0, delta=1e-6, msg=name)
      self.assertAlmostEqual(float(jnp.std(leaf)), 1.0, delta=1e-5, msg=name)

  @chex.variants(with_jit=True)
  def test_nan_and_inf_propagate_to_their_leaf_only(self):
    rng = np.random.default_rng(8)
    grads = {
        'finite': trees.random_leaf(rng, (20, 4), jnp.float32),
        'nan': trees.random_leaf(rng, (20, 4), jnp.float32).at[3, 1].set(jnp.nan),
        'inf': trees.random_leaf(rng, (50,), jnp.float32).at[0].set(jnp.inf),
        'neg_inf': trees.random_leaf(rng, (50,), jnp.bfloat16).at[17].set(-jnp.inf),
        'fp16_overflow': trees.random_leaf(rng, (3, 5), jnp.float16).at[2, 4].set(jnp.inf),
    }
    updates = self.normalize(grads)
    reference.assert_close(updates['finite'], reference.znorm(grads['finite']))
    for name in ('nan', 'inf', 'neg_inf', 'fp16_overflow'):
      self.assertTrue(np.all(np.isnan(np.asarray(updates[name], np.float32))), name)
    # Per channel, the channel holding the NaN becomes NaN; the others stay exact.
    updates = self.normalize({'nan': grads['nan']}, per_channel=True)['nan']
    self.assertTrue(np.all(np.isnan(updates[:, 1])))
    others = [0, 2, 3]
    reference.assert_close(
        updates[:, others], reference.znorm(grads['nan'][:, others], per_channel=True))

  @chex.variants(with_jit=True)
  @parameterized.parameters('pytree', 'callable')
  def test_mask(self, mask_kind):
    grads = trees.mixed_tree(seed=9, leaves={k: trees.MIXED_LEAVES[k] for k in
                                             ('conv_kernel', 'dense_kernel', 'bias', 'fp16_vector')})
    if mask_kind == 'pytree':
      mask = {'conv_kernel': True, 'dense_kernel': True, 'bias': False, 'fp16_vector': False}
    else:
      mask = lambda tree: jax.tree.map(lambda leaf: leaf.ndim > 1, tree)
    updates = self.normalize(grads, mask=mask)
    for name in ('conv_kernel', 'dense_kernel'):
      reference.assert_close(updates[name], reference.znorm(grads[name]))
    for name in ('bias', 'fp16_vector'):
      np.testing.assert_array_equal(updates[name], grads[name])

  @chex.variants(with_jit=True, without_jit=True)
  def test_none_and_masked_node_pass_through(self):
    grads = {'frozen': None, 'masked': optax.MaskedNode(), 'w': jnp.array([1.0, 3.0])}
    updates = self.normalize(grads)
    self.assertIsNone(updates['frozen'])
    self.assertIsInstance(updates['masked'], optax.MaskedNode)
    np.testing.assert_allclose(updates['w'], [-1.0, 1.0], rtol=1e-6)

  # Complex leaves are normalized (tests/znorm_optax/test_complex.py).
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(jnp.int32, jnp.uint8, jnp.bool_)
  def test_non_floating_leaf_names_its_path(self, dtype):
    grads = {'encoder': {'layers': [jnp.ones(3), {'step': jnp.ones((2,), dtype)}]}}
    with self.assertRaisesRegex(TypeError, r"\['encoder'\]\['layers'\]\[1\]\['step'\]"):
      self.normalize(grads)

  def test_large_finite_gradients_are_normalized(self):
    # Exploding but finite gradients, the case ZNorm exists for. Their squares
    # overflow float32 above ~1.8e19, so a naive variance turns them into zeros.
    rng = np.random.default_rng(10)
    grads = {
        'fp32': jnp.asarray(1e17 * rng.standard_normal(300), jnp.float32),
        'bf16': jnp.asarray(1e17 * (0.2 + rng.standard_normal((30, 10))), jnp.bfloat16),
    }
    beyond = {name: 1e8 * g for name, g in grads.items()}  # Squares past float32's range.
    tx = znorm_optax.znorm()
    updates, _ = jax.jit(tx.update)(grads, tx.init(grads))
    for name, g in grads.items():
      reference.assert_close(updates[name], reference.znorm(g), atol=1e-5)
    # Beyond float32's squares: NaN with the default eps (never finite garbage),
    # exact where eps is tiny and the statistics are rescaled.
    updates, _ = jax.jit(tx.update)(beyond, tx.init(beyond))
    rescaled, _ = jax.jit(znorm_optax.znorm(eps=0.0).update)(beyond, None)
    for name, g in beyond.items():
      assert np.all(np.isnan(updates[name])), name
      reference.assert_close(rescaled[name], reference.znorm(g, eps=0.0), atol=1e-5)

  def test_tiny_gradients_with_zero_eps_are_normalized(self):
    # eps=0 is allowed; a non-constant leaf of scale 1e-30 then has an exact,
    # unit-scale answer, but its squares underflow float32 to zero.
    g = jnp.asarray(1e-30 * np.random.default_rng(11).standard_normal(300), jnp.float32)
    updates, _ = znorm_optax.znorm(eps=0.0).update({'g': g}, None)
    reference.assert_close(updates['g'], reference.znorm(g, eps=0.0), atol=1e-5)


def test_leaf_of_5e7_elements_within_1e_5_of_float64():
  # Large enough for a one-pass E[x^2] - E[x]^2 or a sequential float32 sum to fail.
  g = np.random.default_rng(12).random(50_000_000, dtype=np.float32)
  g += 3.0  # |mean| = 12 std.
  tx = znorm_optax.znorm()
  updates, _ = jax.jit(tx.update)(jnp.asarray(g), None)
  updates = np.asarray(updates)
  assert updates.dtype == np.float32
  # The float64 reference, in place to spare time and memory.
  error = g.astype(np.float64)
  error -= np.mean(error)
  error /= np.sqrt(np.dot(error, error) / error.size) + 1e-10  # Population std.
  error -= updates
  max_error = np.max(np.abs(error, out=error))
  assert max_error <= 1e-5, max_error


@pytest.mark.parametrize('eps', [-1e-10, -1.0, math.nan, math.inf, -math.inf, np.array([1e-3, 1e-3])])
def test_invalid_eps_raises(eps):
  with pytest.raises(ValueError, match='eps'):
    znorm_optax.znorm(eps)


def test_negative_min_size_raises():
  with pytest.raises(ValueError, match='min_size'):
    znorm_optax.znorm(min_size=-1)


def test_zero_and_array_eps_accepted():
  znorm_optax.znorm(0.0)
  znorm_optax.znorm(np.float32(1e-8))
  znorm_optax.znorm(jnp.asarray(1e-8))


def test_apply_if_finite_skips_a_non_finite_step():
  params = {'w': jnp.arange(6.0).reshape(2, 3), 'b': jnp.ones(3)}
  tx = optax.apply_if_finite(optax.chain(znorm_optax.znorm(), optax.adam(0.1)), 2)
  state = tx.init(params)
  step = jax.jit(tx.update)
  bad = {'w': jnp.ones((2, 3)).at[0, 0].set(jnp.nan), 'b': jnp.array([1.0, 2.0, 4.0])}
  updates, bad_state = step(bad, state, params)
  chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))
  assert int(bad_state.notfinite_count) == 1
  assert not bool(bad_state.last_finite)
  chex.assert_trees_all_equal(bad_state.inner_state, state.inner_state)
  good = {'w': jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]]), 'b': jnp.array([1.0, 2.0, 4.0])}
  updates, good_state = step(good, bad_state, params)
  assert int(good_state.notfinite_count) == 0
  expected = reference.ZnormAdam(0.1).update(good)
  for name in params:
    reference.assert_close(updates[name], expected[name])


def test_inject_hyperparams_eps_takes_effect():
  rng = np.random.default_rng(13)
  grads = {'w': trees.random_leaf(rng, (40,), jnp.float32, loc=1.0, scale=1.0)}
  tx = optax.inject_hyperparams(znorm_optax.znorm)(eps=1e-10)
  state = tx.init(grads)
  step = jax.jit(tx.update)
  updates, state = step(grads, state)
  reference.assert_close(updates['w'], reference.znorm(grads['w'], eps=1e-10))
  state.hyperparams['eps'] = jnp.asarray(0.5)
  updates, state = step(grads, state)
  reference.assert_close(updates['w'], reference.znorm(grads['w'], eps=0.5))


def test_inject_hyperparams_with_static_options():
  rng = np.random.default_rng(14)
  grads = {'k': trees.random_leaf(rng, (6, 4), jnp.float32), 'b': jnp.array([2.0])}
  tx = optax.inject_hyperparams(znorm_optax.znorm)(eps=1e-3, per_channel=True, min_size=0)
  updates, _ = jax.jit(tx.update)(grads, tx.init(grads))
  reference.assert_close(updates['k'], reference.znorm(grads['k'], 1e-3, per_channel=True))
  np.testing.assert_array_equal(updates['b'], [0.0])


def test_python_and_numpy_leaves():
  # Hand-written gradients in a notebook: numpy arrays and Python floats.
  grads = {'kernel': np.array([[1.0, 2.0], [3.0, 6.0]], np.float32), 'scale': 2.5}
  updates, _ = znorm_optax.znorm().update(grads, None)
  reference.assert_close(updates['kernel'], reference.znorm(grads['kernel']))
  assert float(updates['scale']) == 2.5  # A single element passes through.


def test_inject_hyperparams_callable_mask_raises_or_works_with_static_args():
  grads = {'kernel': jnp.arange(6.0).reshape(2, 3), 'bias': jnp.array([1.0, 3.0])}

  def mask(params):
    return jax.tree.map(lambda p: p.ndim > 1, params)

  # optax would call the mask as a schedule of the step count: never silently.
  with pytest.raises(TypeError, match=r"static_args=\('mask',\)"):
    optax.inject_hyperparams(znorm_optax.znorm)(mask=mask).init(grads)
  tx = optax.inject_hyperparams(znorm_optax.znorm, static_args=('mask',))(mask=mask)
  updates, _ = jax.jit(tx.update)(grads, tx.init(grads))
  reference.assert_close(updates['kernel'], reference.znorm(grads['kernel']))
  np.testing.assert_array_equal(updates['bias'], grads['bias'])


def test_inject_hyperparams_other_options():
  grads = {'layers': jnp.arange(12.0).reshape(3, 4) ** 2}
  # A number becomes a traced hyperparameter: refused, with the way out named.
  with pytest.raises(TypeError, match=r"static_args=\('stacked_axes',\)"):
    optax.inject_hyperparams(znorm_optax.znorm)(stacked_axes=0).init(grads)
  with pytest.raises(TypeError, match=r"static_args=\('per_channel',\)"):
    optax.inject_hyperparams(znorm_optax.znorm)(per_channel=1).init(grads)
  # Tuples and names stay static and take effect.
  tx = optax.inject_hyperparams(znorm_optax.znorm)(stacked_axes=(0,), axis_name=None)
  updates, _ = jax.jit(tx.update)(grads, tx.init(grads))
  reference.assert_close(updates['layers'],
                         reference.per_slice(reference.znorm, grads['layers'], (0,)))
  tx = optax.inject_hyperparams(znorm_optax.znorm, static_args=('stacked_axes',))(
      stacked_axes=lambda g: {'layers': 0})
  updates, _ = jax.jit(tx.update)(grads, tx.init(grads))
  reference.assert_close(updates['layers'],
                         reference.per_slice(reference.znorm, grads['layers'], (0,)))
