"""optax.inject_hyperparams with half-precision params: eps in the params' dtype never makes NaN.

optax casts every float hyperparameter to the params' dtype: float16 rounds the
default eps of 1e-10 to 0, bfloat16 keeps about 1e-10. A constant or all-zero
leaf must still map to zeros, as with plain `znorm()`.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import znorm_optax
from tests.znorm_optax import reference


def _params(dtype):
  rng = np.random.default_rng(0)
  return {'zeros': jnp.zeros((4, 3), dtype), 'constant': jnp.full((5,), -2.5, dtype),
          'stacked_constant': jnp.full((2, 6), 0.75, dtype),
          'random': jnp.asarray(1.5 + rng.standard_normal((8, 3)), dtype)}


@pytest.mark.parametrize('dtype', [jnp.float16, jnp.bfloat16], ids=['float16', 'bfloat16'])
@pytest.mark.parametrize('kernels', ['xla', 'pallas'])
def test_constant_leaves_map_to_zeros_under_inject_hyperparams(dtype, kernels):
  params = _params(dtype)
  tx = optax.inject_hyperparams(znorm_optax.znorm, static_args=('kernels', 'stacked_axes'))(
      kernels=kernels, stacked_axes={'zeros': None, 'constant': None, 'stacked_constant': 0,
                                     'random': None})
  state = tx.init(params)
  expected_eps = {jnp.float16: 0.0, jnp.bfloat16: float(jnp.bfloat16(1e-10))}[dtype]
  assert state.hyperparams['eps'].dtype == dtype
  assert float(state.hyperparams['eps']) == expected_eps
  updates, _ = jax.jit(tx.update)(params, state, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
  for name in ('zeros', 'constant', 'stacked_constant'):
    np.testing.assert_array_equal(updates[name], 0.0, err_msg=name)
  reference.assert_close(updates['random'], reference.znorm(params['random']))


@pytest.mark.parametrize('dtype', [jnp.float16, jnp.bfloat16], ids=['float16', 'bfloat16'])
def test_znorm_adam_with_float32_hyperparameters(dtype):
  # Adam's own hyperparameters do not survive half precision (bfloat16 rounds b2 to 1,
  # float16 rounds eps to 0: optax.adam's zero leaves become NaN), hence the README's
  # hyperparam_dtype=jnp.float32.
  params = _params(dtype)
  tx = optax.inject_hyperparams(znorm_optax.znorm_adam, hyperparam_dtype=jnp.float32)(
      learning_rate=1e-2)
  state = tx.init(params)
  updates, _ = jax.jit(tx.update)(params, state, params)
  for name in ('zeros', 'constant', 'stacked_constant'):
    np.testing.assert_array_equal(updates[name], 0.0, err_msg=name)
  # Adam's first step is -lr * sign of the z-score, its moments held in the params' dtype.
  expected = -1e-2 * np.sign(reference.znorm(params['random']))
  reference.assert_close(updates['random'], expected, rtol=2 * float(jnp.finfo(dtype).eps))


def test_eps_zero_maps_constant_leaves_to_zeros_and_keeps_nan():
  # eq. 1 at eps=0 is 0 / 0 for a constant leaf; the zeros of its deviations stay zeros.
  grads = {'constant': jnp.full((3, 4), 7.0), 'zeros': jnp.zeros(5),
           'nan': jnp.asarray([1.0, np.nan, 2.0]), 'inf': jnp.asarray([np.inf, np.inf, 1.0]),
           'random': jnp.asarray(np.random.default_rng(1).standard_normal(9), jnp.float32)}
  for update in (znorm_optax.znorm(eps=0.0).update, jax.jit(znorm_optax.znorm(eps=0.0).update)):
    updates, _ = update(grads, None)
    np.testing.assert_array_equal(updates['constant'], 0.0)
    np.testing.assert_array_equal(updates['zeros'], 0.0)
    assert np.all(np.isnan(updates['nan'])) and np.all(np.isnan(updates['inf']))
    reference.assert_close(updates['random'], reference.znorm(grads['random'], eps=0.0))
