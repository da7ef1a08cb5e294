"""Complex leaves: a complex mean and the real std sqrt(mean |g - mean|**2), as optax expects.

Every number is checked against complex128 NumPy written from those definitions.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import znorm_optax


def _complex_leaf(rng, shape, loc=2.0 - 3.0j, scale=0.7):
  return jnp.asarray(loc + scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)),
                     jnp.complex64)


def _grads(seed=0):
  rng = np.random.default_rng(seed)
  return {'kernel': _complex_leaf(rng, (6, 4)), 'stacked': _complex_leaf(rng, (3, 5, 2)),
          'real': jnp.asarray(rng.standard_normal(7), jnp.float32)}


def _z_score(g, axes=None, eps=1e-10):
  """Eq. 1 for complex numbers, in complex128: |.|**2 in the variance, a complex mean."""
  x = np.asarray(g).astype(np.complex128)
  mean = np.mean(x, axis=axes, keepdims=True)
  std = np.sqrt(np.mean(np.abs(x - mean) ** 2, axis=axes, keepdims=True))
  return (x - mean) / (std + eps)


def _assert_close(actual, expected, atol=1e-6):
  np.testing.assert_allclose(np.asarray(actual).astype(np.complex128), expected,
                             rtol=1e-6, atol=atol)


class ComplexTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_znorm_z_scores_complex_leaves(self):
    grads = _grads()
    tx = znorm_optax.znorm(stacked_axes={'kernel': None, 'stacked': 0, 'real': None})
    updates, _ = self.variant(tx.update)(grads, None)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, grads)
    _assert_close(updates['kernel'], _z_score(grads['kernel']))
    _assert_close(updates['stacked'], _z_score(grads['stacked'], axes=(1, 2)))
    _assert_close(updates['real'], _z_score(grads['real']).real)
    # The std is of |g - mean|: squaring the complex deviations (re**2 - im**2 + ...)
    # would give another scale, so the test can fail.
    x = np.asarray(grads['kernel']).astype(np.complex128) - np.mean(grads['kernel'])
    naive = x / np.sqrt(np.abs(np.mean(np.square(x))))
    assert np.max(np.abs(naive - _z_score(grads['kernel']))) > 0.1

  @chex.variants(with_jit=True, without_jit=True)
  def test_per_channel_and_tiny_eps(self):
    grads = _grads(1)
    for eps in (1e-10, 0.0):  # 0 takes the rescaled path.
      updates, _ = self.variant(znorm_optax.znorm(eps=eps, per_channel=True).update)(grads, None)
      _assert_close(updates['kernel'], _z_score(grads['kernel'], axes=(0,), eps=eps))
      _assert_close(updates['stacked'], _z_score(grads['stacked'], axes=(0, 1), eps=eps))

  def test_constant_and_non_finite_leaves(self):
    grads = {'constant': jnp.full((4, 3), 1.5 - 2j, jnp.complex64),
             'nan': jnp.asarray([1.0, np.nan * 1j, 2.0], jnp.complex64),
             'inf': jnp.asarray([1.0, np.inf, 2.0j], jnp.complex64)}
    updates, _ = jax.jit(znorm_optax.znorm().update)(grads, None)
    np.testing.assert_array_equal(updates['constant'], 0.0)
    assert np.all(np.isnan(updates['nan'])) and np.all(np.isnan(updates['inf']))

  def test_znorm_adam_is_adam_on_the_complex_z_score(self):
    # Adam for complex numbers as optax defines it: nu accumulates |g|**2.
    grads = [_grads(seed) for seed in (2, 3, 4)]
    params = jax.tree.map(jnp.zeros_like, grads[0])
    tx = znorm_optax.znorm_adam(0.1, min_size=2)
    state = tx.init(params)
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
      updates, state = jax.jit(tx.update)(g, state, params)
      z = _z_score(g['kernel'])
      m = 0.9 * m + 0.1 * z
      v = np.float32(0.999) * v + (1 - np.float32(0.999)) * np.abs(z) ** 2
      expected = -0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - np.float32(0.999) ** t)) + 1e-8)
      _assert_close(updates['kernel'], expected, atol=1e-6)

  def test_centralize_and_gradient_statistics(self):
    grads = _grads(5)
    updates, _ = jax.jit(znorm_optax.centralize(stacked_axes={'stacked': 0, 'kernel': None,
                                                              'real': None}).update)(grads, None)
    kernel = np.asarray(grads['kernel']).astype(np.complex128)
    _assert_close(updates['kernel'], kernel - kernel.mean(axis=0))
    stacked = np.asarray(grads['stacked']).astype(np.complex128)
    _assert_close(updates['stacked'], stacked - stacked.mean(axis=1, keepdims=True))
    stats = znorm_optax.gradient_statistics(grads)["['kernel']"]
    assert stats.mean.dtype == jnp.complex64 and stats.std.dtype == jnp.float32
    np.testing.assert_allclose(complex(stats.mean), kernel.mean(), rtol=1e-6)
    np.testing.assert_allclose(
        [stats.std, stats.l2_norm],
        [np.sqrt(np.mean(np.abs(kernel - kernel.mean()) ** 2)), np.linalg.norm(kernel)],
        rtol=1e-6)

  def test_inject_hyperparams_casts_eps_to_complex(self):
    # optax gives every float hyperparameter the params' dtype: eps arrives complex64.
    grads = _grads(6)
    tx = optax.inject_hyperparams(znorm_optax.znorm)()
    state = tx.init(grads)
    assert state.hyperparams['eps'].dtype == jnp.complex64
    for update in (tx.update, jax.jit(tx.update)):
      updates, _ = update(grads, state, grads)
      _assert_close(updates['kernel'], _z_score(grads['kernel']))
    with pytest.raises(ValueError, match='eps must be real'):
      znorm_optax.znorm(eps=1e-10 + 1e-3j)


def _setup_parabola():
  """optax's alias_test parabola, complex64: one 3-element leaf."""
  final = jnp.array([1.0, -1.0, 1.0], jnp.complex64) * (1 + 1j)
  return jnp.array([-1.0, 10.0, 1.0], jnp.complex64), final, (
      lambda p: jnp.sum(jnp.abs(p - final) ** 2))


def _setup_rosenbrock():
  """optax's alias_test Rosenbrock function, complex64: one 2-element leaf."""
  a, b = 1.0 + 1j, 100.0
  return jnp.array([0.0, 0.0], jnp.complex64), jnp.array([a, a**2], jnp.complex64), (
      lambda p: jnp.abs(a - p[0]) ** 2 + b * jnp.abs(p[1] - p[0] ** 2) ** 2)


@pytest.mark.parametrize('target', [_setup_parabola, _setup_rosenbrock],
                         ids=['parabola', 'rosenbrock'])
@pytest.mark.parametrize('transform', ['znorm_adam', 'chain'])
@pytest.mark.parametrize('leave_out', ['min_size', 'mask'])
def test_optax_alias_complex_optimization(target, transform, leave_out):
  """optax's `test_optimization` with complex64 params, as it runs adam(1e-1).

  Its leaves are tiny (2-3 elements), where ZNorm cannot converge (README, "On
  tiny problems"), so ZNorm leaves them to Adam by `min_size` or `mask`; the
  complex leaves still pass through ZNorm's validation and its masking.
  """
  options = {'min_size': 4} if leave_out == 'min_size' else {'mask': lambda p: False}
  opt = (znorm_optax.znorm_adam(1e-1, **options) if transform == 'znorm_adam'
         else optax.chain(znorm_optax.znorm(**options), optax.adam(1e-1)))
  initial, final, objective = target()

  def step(_, carry):
    params, state = carry
    updates = jnp.conj(jax.grad(objective)(params))  # As optax's test: conjugate gradients.
    updates, state = opt.update(updates, state, params)
    return optax.apply_updates(params, updates), state

  params, _ = jax.jit(lambda p: jax.lax.fori_loop(0, 10_000, step, (p, opt.init(p))))(initial)
  assert params.dtype == jnp.complex64
  chex.assert_trees_all_close(params, final, rtol=3e-2, atol=3e-2)
