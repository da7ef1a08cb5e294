"""The method registry against float64 NumPy references of each optimizer."""

import jax
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from examples.study import methods

LEARNING_RATE = 1e-2
B1, B2, EPS = 0.9, 0.999, 1e-8


def _zscore(g):
  return (g - g.mean()) / (g.std() + 1e-10)


def _centralize(g):
  return g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True) if g.ndim >= 2 else g


def _clip_by_global_norm(grads):
  norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
  return {k: g * min(1.0, 1.0 / norm) for k, g in grads.items()}


def _leafwise(change):
  return lambda grads: {k: change(g) for k, g in grads.items()}


CHANGES = {  # name -> the change of a dict of float64 gradients before Adam.
    'adam': _leafwise(lambda g: g), 'wd1e-3': _leafwise(lambda g: g),
    'wd1e-4': _leafwise(lambda g: g), 'znorm': _leafwise(_zscore),
    'znorm_pooled': _leafwise(_zscore), 'znorm_table': _leafwise(_zscore),
    'znorm_masked': _leafwise(_zscore), 'gc': _leafwise(_centralize),
    'clip': _leafwise(lambda g: np.clip(g, -0.1, 0.1)), 'clip_norm': _clip_by_global_norm,
}


def _reference_updates(name, grads_per_step, params):
  """NumPy float64: the gradient change of ``name``, then Adam (or AdamW)."""
  decay = {'wd1e-3': 1e-3, 'wd1e-4': 1e-4}.get(name, 0.0)
  params = {k: v.astype(np.float64) for k, v in params.items()}
  mu = {k: np.zeros_like(v) for k, v in params.items()}
  nu = {k: np.zeros_like(v) for k, v in params.items()}
  for t, grads in enumerate(grads_per_step, start=1):
    changed = CHANGES[name]({k: g.astype(np.float64) for k, g in grads.items()})
    for k in params:
      g = changed[k]
      mu[k] = B1 * mu[k] + (1 - B1) * g
      nu[k] = B2 * nu[k] + (1 - B2) * g**2
      step = (mu[k] / (1 - B1**t)) / (np.sqrt(nu[k] / (1 - B2**t)) + EPS)
      params[k] = params[k] - LEARNING_RATE * (step + decay * params[k])
  return params


@pytest.mark.parametrize('name', list(methods.METHODS))
def test_method_matches_numpy_reference(name):
  rng = np.random.default_rng(0)
  params = {'kernel': rng.normal(size=(3, 3, 2, 4)).astype(np.float32),
            'bias': rng.normal(size=(4,)).astype(np.float32)}
  # Gradients of varied scale and offset, so z-scoring and centering change them.
  grads_per_step = [
      {k: (rng.normal(size=v.shape) * scale + offset).astype(np.float32) for k, v in params.items()}
      for scale, offset in ((0.05, 0.3), (3.0, -1.0), (0.2, 0.0))
  ]
  tx = methods.make_optimizer(name, LEARNING_RATE)
  state, current = tx.init(params), params
  for grads in grads_per_step:
    updates, state = tx.update(grads, state, current)
    current = optax.apply_updates(current, updates)
  expected = _reference_updates(name, grads_per_step, params)
  for k in params:
    np.testing.assert_allclose(current[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=f'{name}/{k}')


def test_methods_differ_from_adam():
  """Guards the reference test above: every method must change Adam's trajectory."""
  rng = np.random.default_rng(1)
  params = {'kernel': rng.normal(size=(4, 3)).astype(np.float32)}
  # Changing gradients: Adam is invariant to a constant rescaling (e.g. clipping every element).
  steps = [{'kernel': (rng.normal(size=(4, 3)) * scale + 0.5).astype(np.float32)}
           for scale in (2.0, 0.05)]

  def two_steps(name):
    tx = methods.make_optimizer(name, 0.1)
    state = tx.init(params)
    current = params
    for grads in steps:
      updates, state = tx.update(grads, state, current)
      current = optax.apply_updates(current, updates)
    return current['kernel']

  adam = two_steps('adam')
  for name in set(methods.METHODS) - {'adam'}:
    assert not np.allclose(two_steps(name), adam, rtol=0, atol=1e-7), name


@pytest.mark.parametrize('name, per_layer', [('znorm', _zscore), ('gc', _centralize),
                                             ('znorm_pooled', None)])
def test_stacked_axes_give_each_layer_its_own_statistics(name, per_layer):
  # Two stacked layers of very different scale and offset, as nnx.scan keeps them.
  rng = np.random.default_rng(2)
  layers = [rng.normal(0.5, 1.0, size=(3, 4)), rng.normal(-20.0, 30.0, size=(3, 4))]
  grads = {'blocks': {'kernel': np.stack(layers).astype(np.float32)},
           'head': {'kernel': rng.normal(2.0, 3.0, size=(4, 2)).astype(np.float32)}}
  stacked_axes = {'blocks': {'kernel': 0}, 'head': {'kernel': None}}
  transform = methods.gradient_transform(name, stacked_axes)
  changed, _ = transform.update(grads, transform.init(grads))
  whole = CHANGES[name]({'blocks': grads['blocks']['kernel'].astype(np.float64)})['blocks']
  expected = whole if per_layer is None else np.stack([per_layer(g) for g in layers])
  np.testing.assert_allclose(changed['blocks']['kernel'], expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(changed['head']['kernel'],
                             CHANGES[name]({'h': grads['head']['kernel'].astype(np.float64)})['h'],
                             rtol=1e-5, atol=1e-5)
  if per_layer is not None:  # The test can fail: pooled statistics are far from per-layer ones.
    assert np.max(np.abs(whole - expected)) > 0.5


def _rows(g, change):
  return np.stack([change(row) for row in g])


def test_embedding_tables_per_row_whole_or_left_to_adam():
  # A table whose rows 1 and 3 belong to tokens absent from the batch: zero gradient.
  rng = np.random.default_rng(3)
  table = rng.normal(0.2, 1.0, size=(5, 6)).astype(np.float32)
  table[[1, 3]] = 0.0
  layers = [rng.normal(0.0, 1.0, size=(3, 4)), rng.normal(5.0, 40.0, size=(3, 4))]
  grads = {'embed': {'embedding': table}, 'blocks': {'kernel': np.stack(layers).astype(np.float32)}}
  stacked_axes = {'embed': {'embedding': None}, 'blocks': {'kernel': 0}}
  embedding_rows = {'embed': {'embedding': 0}, 'blocks': {'kernel': None}}
  per_layer = np.stack([_zscore(g) for g in layers])
  expected = {  # name -> (table, blocks), float64.
      'znorm': (_rows(table.astype(np.float64), _zscore), per_layer),
      'znorm_pooled': (_rows(table.astype(np.float64), _zscore),
                       _zscore(np.stack(layers).astype(np.float64))),
      'znorm_table': (_zscore(table.astype(np.float64)), per_layer),
      'znorm_masked': (table.astype(np.float64), per_layer),
  }
  for name, (expected_table, expected_blocks) in expected.items():
    transform = methods.gradient_transform(name, stacked_axes, embedding_rows)
    changed, _ = transform.update(grads, transform.init(grads))
    np.testing.assert_allclose(changed['embed']['embedding'], expected_table, rtol=1e-5,
                               atol=1e-5, err_msg=name)
    np.testing.assert_allclose(changed['blocks']['kernel'], expected_blocks, rtol=1e-5, atol=1e-5,
                               err_msg=name)
  # The absent rows: zero per row, -mean/std with the whole table's statistics.
  assert not np.any(expected['znorm'][0][[1, 3]])
  assert np.all(np.abs(expected['znorm_table'][0][[1, 3]]) > 0.1)


def test_embedding_rows_are_read_from_the_model():
  class Model(nnx.Module):
    def __init__(self, rngs):
      self.tokens = nnx.Embed(10, 4, rngs=rngs)
      members = nnx.vmap(lambda rngs: nnx.Embed(10, 4, rngs=rngs), in_axes=0, out_axes=0)
      self.ensemble = nnx.split_rngs(splits=3)(members)(rngs)  # A stack of 3 tables.
      self.head = nnx.Linear(4, 10, rngs=rngs)

  model = nnx.eval_shape(lambda: Model(nnx.Rngs(0)))
  assert methods.embedding_rows(model) == {
      'tokens': {'embedding': 0}, 'ensemble': {'embedding': 1},
      'head': {'kernel': None, 'bias': None}}


def test_accepts_a_schedule():
  schedule = optax.linear_schedule(1.0, 0.0, transition_steps=2)
  tx = methods.make_optimizer('znorm', schedule)
  params = {'w': jax.numpy.ones((2, 2))}
  grads = {'w': jax.numpy.array([[1.0, 2.0], [3.0, 5.0]])}
  state = tx.init(params)
  first, state = tx.update(grads, state, params)
  second, state = tx.update(grads, state, params)
  third, _ = tx.update(grads, state, params)
  assert float(np.abs(first['w']).max()) > float(np.abs(second['w']).max()) > 0
  np.testing.assert_array_equal(third['w'], 0.0)


def test_unknown_method_lists_valid_names():
  with pytest.raises(ValueError, match='Unknown method') as error:
    methods.make_optimizer('sgd', 1e-3)
  for name in methods.METHODS:
    assert name in str(error.value)


@pytest.mark.parametrize('method, sweep_methods', [('nope', ()), ('adam', ('adam', 'nope'))])
def test_check_methods_covers_the_run_and_the_sweep(method, sweep_methods):
  config = ml_collections.ConfigDict({'method': method, 'sweep': {'methods': sweep_methods}})
  with pytest.raises(ValueError, match="Unknown method 'nope'; valid methods are: adam, "):
    methods.check_methods(config)
