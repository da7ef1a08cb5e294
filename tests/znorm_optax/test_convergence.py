"""ZNorm + Adam converges on small problems: ill-conditioned least squares, logistic regression."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import znorm_optax


def _minimize(loss_fn, params, tx, steps):
  """Runs `steps` full-batch steps inside one compiled scan; returns params and losses."""

  @jax.jit
  def run(params):
    def step(carry, _):
      params, state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params, losses

  return run(params)


def test_ill_conditioned_least_squares():
  # Linear regression with more weights than samples, whose Hessian has a
  # condition number of 1e4 (singular values of X from 1 to 1e-2). ZNorm keeps
  # each leaf's update zero-mean, so its optimum must be reachable within that
  # constraint, as over-parameterized networks' are.
  rng = np.random.default_rng(40)
  samples, features, outputs = 16, 32, 4
  left, _ = np.linalg.qr(rng.standard_normal((samples, samples)))
  right, _ = np.linalg.qr(rng.standard_normal((features, samples)))
  x = (left * np.logspace(0, -2, samples)) @ right.T
  y = x @ rng.standard_normal((features, outputs))
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

  def loss_fn(params):
    residual = x @ params['kernel'] + params['bias'] - y
    return 0.5 * jnp.mean(jnp.sum(jnp.square(residual), axis=-1))

  steps = 1000
  tx = optax.chain(znorm_optax.znorm(), optax.adam(optax.cosine_decay_schedule(0.05, steps)))
  params = {'kernel': jnp.zeros((features, outputs)), 'bias': jnp.zeros(outputs)}
  params, losses = _minimize(loss_fn, params, tx, steps)
  assert float(loss_fn(params)) < 1e-5 * float(losses[0]), (losses[0], loss_fn(params))


def test_logistic_regression_on_digits():
  features, labels = load_digits(return_X_y=True)  # Shipped with scikit-learn: offline.
  two_classes = (labels == 3) | (labels == 8)
  features = jnp.asarray(features[two_classes] / 16.0, jnp.float32)
  labels = jnp.asarray(labels[two_classes] == 8, jnp.float32)
  order = np.random.default_rng(41).permutation(len(labels))
  train, test = order[:250], order[250:]

  def logits(params, x):
    return x @ params['w'] + params['b']

  def loss_fn(params):
    z = logits(params, features[train])
    return jnp.mean(jnp.logaddexp(0.0, z) - labels[train] * z)

  def accuracy(params, index):
    return float(jnp.mean((logits(params, features[index]) > 0) == (labels[index] > 0.5)))

  tx = optax.chain(znorm_optax.znorm(), optax.adam(0.05))
  params = {'w': jnp.zeros(64), 'b': jnp.zeros(())}  # The scalar bias passes through ZNorm.
  params, losses = _minimize(loss_fn, params, tx, 300)
  assert float(losses[0]) > 0.69
  assert float(loss_fn(params)) < 1e-3
  assert accuracy(params, train) == 1.0
  assert accuracy(params, test) >= 0.97
