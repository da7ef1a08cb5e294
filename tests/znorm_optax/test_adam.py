"""Tests of `znorm_optax.znorm_adam` and of ZNorm chained with Adam: Algorithm 1."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from flax import nnx

import znorm_optax
from tests.znorm_optax import reference
from tests.znorm_optax import trees

N_STEPS = 12
# float32 leaves: in narrower dtypes optax keeps Adam's moments in that dtype too.
LEAVES = {name: trees.MIXED_LEAVES[name] for name in
          ('conv_kernel', 'dense_kernel', 'bias', 'column', 'scalar', 'empty')}
LEAVES['single'] = ((1,), jnp.float32)
# optax computes Adam's bias correction 1 - b2**t in float32, which is
# ill-conditioned for small t: about 1e-5 relative error in the updates. Absolute
# errors are relative to the learning rate (0.05) where m_hat nearly cancels.
ADAM_RTOL, ADAM_ATOL = 5e-5, 5e-7


def _gradient_sequence(n_steps=N_STEPS, leaves=None):
  return [trees.mixed_tree(seed=100 + step, leaves=leaves or LEAVES) for step in range(n_steps)]


def _run(tx, grads_sequence, update_fn=None):
  """The updates of `tx` for each gradient, with params that follow them."""
  params = jax.tree.map(jnp.zeros_like, grads_sequence[0])
  state = tx.init(params)
  update_fn = update_fn or jax.jit(tx.update)
  all_updates = []
  for grads in grads_sequence:
    updates, state = update_fn(grads, state, params)
    params = optax.apply_updates(params, updates)
    all_updates.append(updates)
  return all_updates


def _assert_matches_algorithm1(all_updates, grads_sequence, algorithm1):
  for step, (updates, grads) in enumerate(zip(all_updates, grads_sequence)):
    expected = algorithm1.update(grads)
    for name in grads:
      reference.assert_close(updates[name], expected[name], rtol=ADAM_RTOL, atol=ADAM_ATOL, err_msg=f'step {step}, {name}')


def _schedule(step):
  return optax.warmup_cosine_decay_schedule(0.0, 0.1, 3, N_STEPS)(step)


class Algorithm1Test(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_chain_matches_algorithm1(self):
    # Op-by-op execution is slow: a few steps show it agrees.
    eager = self.variant.type == chex.ChexVariantType.WITHOUT_JIT
    grads_sequence = _gradient_sequence(3 if eager else N_STEPS)
    tx = optax.chain(znorm_optax.znorm(), optax.adam(0.05))
    all_updates = _run(tx, grads_sequence, self.variant(tx.update))
    _assert_matches_algorithm1(all_updates, grads_sequence, reference.ZnormAdam(0.05))

  @parameterized.named_parameters(('constant', 0.05), ('schedule', _schedule))
  def test_znorm_adam_matches_algorithm1(self, learning_rate):
    grads_sequence = _gradient_sequence()
    all_updates = _run(znorm_optax.znorm_adam(learning_rate), grads_sequence)
    _assert_matches_algorithm1(all_updates, grads_sequence, reference.ZnormAdam(learning_rate))

  def test_znorm_adam_options_match_algorithm1(self):
    grads_sequence = _gradient_sequence()
    options = {'b1': 0.8, 'b2': 0.99, 'eps': 1e-3, 'eps_root': 1e-6, 'znorm_eps': 0.1,
               'per_channel': True, 'min_size': 10}
    all_updates = _run(znorm_optax.znorm_adam(0.05, **options), grads_sequence)
    _assert_matches_algorithm1(all_updates, grads_sequence, reference.ZnormAdam(0.05, **options))

  @parameterized.named_parameters(('constant', 0.05), ('schedule', _schedule))
  def test_znorm_adam_equals_chain(self, learning_rate):
    grads_sequence = _gradient_sequence()
    mask = {name: name != 'bias' for name in LEAVES}
    options = {'per_channel': True, 'mask': mask}
    chain = optax.chain(znorm_optax.znorm(1e-3, **options),
                        optax.adam(learning_rate, 0.8, 0.99, 1e-6, eps_root=1e-9))
    fused = znorm_optax.znorm_adam(learning_rate, 0.8, 0.99, 1e-6, eps_root=1e-9,
                                   znorm_eps=1e-3, **options)
    for step, (a, b) in enumerate(zip(_run(fused, grads_sequence), _run(chain, grads_sequence))):
      chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-9, custom_message=f'step {step}')

  def test_mu_dtype(self):
    grads_sequence = _gradient_sequence(3)
    fused = _run(znorm_optax.znorm_adam(0.05, mu_dtype=jnp.bfloat16), grads_sequence)
    chain = _run(optax.chain(znorm_optax.znorm(), optax.adam(0.05, mu_dtype=jnp.bfloat16)),
                 grads_sequence)
    chex.assert_trees_all_close(fused, chain, rtol=1e-6, atol=1e-9)
    state = znorm_optax.znorm_adam(0.05, mu_dtype=jnp.bfloat16).init(grads_sequence[0])
    mu_dtypes = {leaf.dtype for leaf in jax.tree.leaves(state) if leaf.ndim > 1}
    self.assertIn(jnp.dtype(jnp.bfloat16), mu_dtypes)


class WrappersTest(chex.TestCase):

  def test_multi_steps_averages_then_normalizes(self):
    every = 3
    grads_sequence = _gradient_sequence(2 * every)
    tx = optax.MultiSteps(znorm_optax.znorm_adam(0.05), every_k_schedule=every)
    all_updates = _run(tx, grads_sequence)
    algorithm1 = reference.ZnormAdam(0.05)
    for start in range(0, len(grads_sequence), every):
      window = grads_sequence[start:start + every]
      mean_grads = {name: np.mean([reference.to_float64(g[name]) for g in window], axis=0)
                    for name in LEAVES}
      expected = algorithm1.update(mean_grads)
      for step in range(start, start + every - 1):  # Accumulating: no update yet.
        chex.assert_trees_all_equal(all_updates[step], jax.tree.map(jnp.zeros_like, window[0]))
      for name in LEAVES:
        updates = all_updates[start + every - 1][name]
        reference.assert_close(updates, expected[name], rtol=ADAM_RTOL, atol=ADAM_ATOL,
                               err_msg=name)

  def test_masked(self):
    grads_sequence = _gradient_sequence()
    normalize = {name: name in ('conv_kernel', 'column') for name in LEAVES}
    tx = optax.chain(optax.masked(znorm_optax.znorm(), normalize), optax.adam(0.05))
    _assert_matches_algorithm1(_run(tx, grads_sequence), grads_sequence,
                               reference.ZnormAdam(0.05, normalize=normalize))
    # The `mask=` argument is the same thing.
    fused = znorm_optax.znorm_adam(0.05, mask=normalize)
    chex.assert_trees_all_close(_run(fused, grads_sequence), _run(tx, grads_sequence), rtol=1e-6,
                                atol=1e-9)

  def test_inject_hyperparams_learning_rate_takes_effect(self):
    grads_sequence = _gradient_sequence(6)
    tx = optax.inject_hyperparams(znorm_optax.znorm_adam)(learning_rate=0.05)
    params = jax.tree.map(jnp.zeros_like, grads_sequence[0])
    state = tx.init(params)
    step = jax.jit(tx.update)
    algorithm1 = reference.ZnormAdam(lambda count: 0.05 if count < 3 else 0.001)
    for count, grads in enumerate(grads_sequence):
      if count == 3:
        state.hyperparams['learning_rate'] = jnp.asarray(0.001)
      updates, state = step(grads, state, params)
      expected = algorithm1.update(grads)
      for name in grads:
        reference.assert_close(updates[name], expected[name], rtol=ADAM_RTOL, atol=ADAM_ATOL, err_msg=f'step {count}, {name}')

  def test_no_recompilation_on_later_calls(self):
    grads_sequence = _gradient_sequence(3)
    params = jax.tree.map(jnp.zeros_like, grads_sequence[0])
    for tx in (znorm_optax.znorm_adam(0.05),
               optax.chain(znorm_optax.znorm(per_channel=True), optax.adam(0.05)),
               optax.inject_hyperparams(znorm_optax.znorm)(eps=1e-10)):
      chex.clear_trace_counter()

      @jax.jit
      @chex.assert_max_traces(n=1)
      def step(params, state, grads, tx=tx):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

      p, state = params, tx.init(params)
      for grads in grads_sequence:
        p, state = step(p, state, grads)
        if hasattr(state, 'hyperparams'):
          state.hyperparams['eps'] = state.hyperparams['eps'] * 2


class _MLP(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(4, 16, rngs=rngs)
    self.out = nnx.Linear(16, 1, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


def _params_by_path(model):
  return {jax.tree_util.keystr(path): np.asarray(leaf, np.float64)
          for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))}


def test_flax_nnx_optimizer():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((64, 4)), jnp.float32)
  y = jnp.sin(x[:, :1]) + x[:, 1:2] ** 2
  model = _MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, znorm_optax.znorm_adam(1e-2), wrt=nnx.Param)

  def loss_fn(model):
    return jnp.mean(jnp.square(model(x) - y))

  traces = []

  @nnx.jit
  def train_step(model, optimizer, grads):
    traces.append(None)  # Runs only when the step is traced.
    optimizer.update(model, grads)

  gradient = nnx.jit(nnx.value_and_grad(loss_fn))

  # One step, against Algorithm 1 applied to the same gradients.
  before = _params_by_path(model)
  first_loss, grads = gradient(model)
  grads_by_path = {jax.tree_util.keystr(path): leaf
                   for path, leaf in jax.tree_util.tree_leaves_with_path(grads)}
  train_step(model, optimizer, grads)
  after = _params_by_path(model)
  assert set(after) == set(grads_by_path)
  expected = reference.ZnormAdam(1e-2).update(grads_by_path)
  for path in after:
    np.testing.assert_allclose(after[path] - before[path], expected[path], atol=1e-6,
                               err_msg=path)

  for _ in range(50):
    loss, grads = gradient(model)
    train_step(model, optimizer, grads)
  assert len(traces) == 1
  assert float(loss) < 0.5 * float(first_loss)


@pytest.mark.parametrize('znorm_eps', [-1e-10, float('nan'), float('inf')])
def test_bad_znorm_eps_is_named_as_passed(znorm_eps):
  with pytest.raises(ValueError, match='znorm_eps'):
    znorm_optax.znorm_adam(1e-3, znorm_eps=znorm_eps)
