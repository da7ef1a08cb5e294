"""Derivatives through `update` are finite wherever the forward is, constant leaves included."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import znorm_optax
from tests.znorm_optax import reference


def _lora_meta_loss(tx):
  """Loss after one inner step on a LoRA adapter W0 + A @ B, with B starting at zero.

  The inner gradient of A is (dL/dW) @ B.T, all zeros: a constant leaf.
  """
  rng = np.random.default_rng(0)
  w0 = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
  x = jnp.asarray(rng.standard_normal((8, 6)), jnp.float32)
  y = jnp.asarray(rng.standard_normal((8, 5)), jnp.float32)

  def loss(adapter):
    return jnp.mean((x @ (w0 + adapter['a'] @ adapter['b']) - y) ** 2)

  def meta_loss(adapter):
    grads = jax.grad(loss)(adapter)
    updates, _ = tx.update(grads, tx.init(adapter), adapter)
    return loss(optax.apply_updates(adapter, updates))

  adapter = {'a': jnp.asarray(rng.standard_normal((6, 2)), jnp.float32), 'b': jnp.zeros((2, 5))}
  return meta_loss, adapter


def test_maml_meta_gradient_is_finite_at_a_zero_lora_adapter():
  # Adam's own sqrt(nu) has an infinite derivative at a zero gradient unless
  # eps_root > 0, as optax documents for meta-learning; ZNorm adds no such point.
  for tx in (znorm_optax.znorm_adam(0.1, eps_root=1e-8),
             optax.chain(znorm_optax.znorm(), optax.sgd(0.1)),
             znorm_optax.centralize(), optax.adam(0.1, eps_root=1e-8)):
    meta_loss, adapter = _lora_meta_loss(tx)
    value, meta_grad = jax.jit(jax.value_and_grad(meta_loss))(adapter)
    assert np.isfinite(value)
    chex.assert_tree_all_finite(meta_grad)


def test_meta_gradient_matches_float64_finite_differences():
  # Where the update is smooth (no constant leaf), jax.grad through it is the
  # true derivative: central differences of the float64 reference agree.
  rng = np.random.default_rng(1)
  g0 = rng.standard_normal(12)
  direction = rng.standard_normal(12)
  weights = rng.standard_normal(12)

  def objective(t):  # Weighted sum of ZNorm(g0 + t * direction).
    return jnp.sum(weights * znorm_optax.znorm().update(
        jnp.asarray(g0 + t * direction, jnp.float32), None)[0])

  h = 1e-4
  expected = (np.sum(weights * reference.znorm(g0 + h * direction))
              - np.sum(weights * reference.znorm(g0 - h * direction))) / (2 * h)
  np.testing.assert_allclose(jax.grad(objective)(0.0), expected, rtol=1e-4)


def test_jvp_and_grad_are_finite_at_constant_and_underflowing_leaves():
  leaves = {'zeros': jnp.zeros(6), 'constant': jnp.full((2, 3), 4.0),
            'tiny': jnp.asarray(1e-30 * np.arange(1.0, 7.0), jnp.float32)}
  tangent = jnp.arange(6.0).reshape(2, 3)
  for tx in (znorm_optax.znorm(), znorm_optax.znorm(eps=0.0), znorm_optax.centralize()):
    for name, g in leaves.items():
      def normalize(g, tx=tx):
        return tx.update({'g': g}, None)[0]['g']
      primal, tangent_out = jax.jvp(normalize, (g,), (tangent.reshape(g.shape),))
      if np.all(np.isfinite(primal)):
        assert np.all(np.isfinite(tangent_out)), name
        grad = jax.grad(lambda g: jnp.sum(normalize(g) * tangent.reshape(g.shape)))(g)
        assert np.all(np.isfinite(grad)), name
  # The forward values are unchanged by the derivative-safe formulation.
  normalized, _ = znorm_optax.znorm().update(leaves, None)
  np.testing.assert_array_equal(normalized['zeros'], 0.0)
  np.testing.assert_array_equal(normalized['constant'], 0.0)
  reference.assert_close(normalized['tiny'], reference.znorm(leaves['tiny']))


def test_vmap_over_a_batch_of_gradient_trees():
  rng = np.random.default_rng(2)
  batch = {'w': jnp.asarray(rng.standard_normal((4, 5, 3)) * [[[1.0]], [[1e3]], [[1e-3]], [[0.0]]],
                            jnp.float32)}
  tx = znorm_optax.znorm_adam(1e-2)
  updates = jax.vmap(lambda g: tx.update(g, tx.init(g), g)[0])(batch)
  for i in range(4):
    expected = reference.ZnormAdam(1e-2).update({'w': batch['w'][i]})
    reference.assert_close(updates['w'][i], expected['w'], err_msg=str(i))
