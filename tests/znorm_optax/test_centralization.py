"""Tests of `znorm_optax.centralize`: Gradient Centralization for Flax layouts."""

import chex
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import parameterized

import znorm_optax
from tests.znorm_optax import reference
from tests.znorm_optax import trees


class CentralizeTest(chex.TestCase):

  def centralize(self, grads, **kwargs):
    tx = znorm_optax.centralize(**kwargs)
    updates, _ = self.variant(tx.update)(grads, tx.init(grads))
    return updates

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_reference(self):
    grads = trees.mixed_tree(seed=20)
    grads['offset_kernel'] = trees.random_leaf(
        np.random.default_rng(21), (32, 4), jnp.float32, loc=1e4, scale=1.0)
    updates = self.centralize(grads)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, grads)
    for name, g in grads.items():
      with self.subTest(name):
        if g.ndim < 2:  # Biases, scales and scalars pass through bit for bit.
          np.testing.assert_array_equal(updates[name], g)
        else:
          # Centring cancels the leaf's own scale: compare on that scale.
          scale = float(np.max(np.abs(reference.to_float64(g)), initial=1.0))
          reference.assert_close(updates[name], reference.centralize(g), atol=1e-6 * scale)

  @chex.variants(with_jit=True)
  def test_output_channels_have_zero_mean(self):
    rng = np.random.default_rng(22)
    grads = {'conv': trees.random_leaf(rng, (3, 3, 4, 8), jnp.float32),
             'dense': trees.random_leaf(rng, (16, 8), jnp.float32).at[:, 3].set(7.25)}
    updates = self.centralize(grads)
    for name, leaf in updates.items():
      channels = np.asarray(leaf).reshape(-1, 8)
      np.testing.assert_allclose(channels.mean(axis=0), 0.0, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(updates['dense'][:, 3], np.zeros(16))  # A constant channel.

  def test_differs_from_optax_centralize_on_flax_layouts(self):
    # optax.centralize keeps axis 0, the output channel of PyTorch's (out, in) and
    # OIHW layouts. On Flax's (in, out) and HWIO kernels that is the input
    # feature or the kernel row, so it centralizes the wrong slices.
    rng = np.random.default_rng(23)
    channel_offsets = jnp.asarray(rng.uniform(-5, 5, 8), jnp.float32)  # Biased output channels.
    dense = trees.random_leaf(rng, (16, 8), jnp.float32, loc=0.0, scale=1.0) + channel_offsets
    conv = trees.random_leaf(rng, (3, 3, 4, 8), jnp.float32, loc=0.0, scale=1.0) + channel_offsets
    ours, _ = znorm_optax.centralize().update({'dense': dense, 'conv': conv}, None)
    theirs, _ = optax.centralize().update({'dense': dense, 'conv': conv}, None)
    for name in ('dense', 'conv'):
      # Per output channel, ours has zero mean and optax's keeps the channel's bias.
      ours_channels = np.asarray(ours[name]).reshape(-1, 8)
      theirs_channels = np.asarray(theirs[name]).reshape(-1, 8)
      np.testing.assert_allclose(ours_channels.mean(axis=0), 0.0, atol=1e-5)
      self.assertGreater(float(np.max(np.abs(theirs_channels.mean(axis=0)))), 1.0, name)
    # On the same weights in PyTorch layout, optax.centralize agrees with ours.
    torch_layout = {'dense': dense.T, 'conv': jnp.transpose(conv, (3, 2, 0, 1))}  # OIHW
    theirs_torch, _ = optax.centralize().update(torch_layout, None)
    np.testing.assert_allclose(theirs_torch['dense'].T, ours['dense'], atol=1e-6)
    np.testing.assert_allclose(jnp.transpose(theirs_torch['conv'], (2, 3, 1, 0)), ours['conv'],
                               atol=1e-6)

  @chex.variants(with_jit=True)
  @parameterized.parameters('pytree', 'callable')
  def test_mask(self, mask_kind):
    rng = np.random.default_rng(24)
    grads = {'kernel': trees.random_leaf(rng, (6, 4), jnp.float32),
             'frozen_kernel': trees.random_leaf(rng, (6, 4), jnp.float32)}
    if mask_kind == 'pytree':
      mask = {'kernel': True, 'frozen_kernel': False}
    else:
      mask = lambda tree: {name: name == 'kernel' for name in tree}
    updates = self.centralize(grads, mask=mask)
    reference.assert_close(updates['kernel'], reference.centralize(grads['kernel']))
    np.testing.assert_array_equal(updates['frozen_kernel'], grads['frozen_kernel'])

  @chex.variants(with_jit=True, without_jit=True)
  def test_empty_nodes_pass_through_and_integers_raise(self):
    updates = self.centralize({'a': None, 'b': optax.MaskedNode(), 'c': jnp.ones((2, 2))})
    self.assertIsNone(updates['a'])
    self.assertIsInstance(updates['b'], optax.MaskedNode)
    with self.assertRaisesRegex(TypeError, r"\['layer'\]\['kernel'\]"):
      self.centralize({'layer': {'kernel': jnp.ones((2, 2), jnp.int32)}})
