"""``--config.log_gradient_statistics`` against a float64 NumPy backpropagation of the tiny MLP."""

import os

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from examples.study import gradient_statistics
from examples.study import methods
from examples.study import report
from examples.study import sweep
from examples.training import gradient_log
from examples.training import metrics_log
from tests.examples.training import tiny


def _zscore(g):
  return (g - g.mean()) / (g.std() + 1e-10)


def _centralize(g):  # Flax GC: every axis but the last (output) one; vectors stay.
  return g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True) if g.ndim >= 2 else g


def _leafwise(change):
  return lambda grads: {key: change(g) for key, g in grads.items()}


def _clip_by_global_norm(grads):
  norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
  return {key: g * min(1.0, 1.0 / norm) for key, g in grads.items()}


REFERENCE_TRANSFORMS = {  # name -> change of a flat dict of float64 gradients.
    'adam': _leafwise(lambda g: g), 'wd1e-3': _leafwise(lambda g: g),
    'wd1e-4': _leafwise(lambda g: g), 'znorm': _leafwise(_zscore),
    'znorm_pooled': _leafwise(_zscore), 'gc': _leafwise(_centralize),
    # Without embedding tables these two are znorm.
    'znorm_table': _leafwise(_zscore), 'znorm_masked': _leafwise(_zscore),
    'clip': _leafwise(lambda g: np.clip(g, -0.1, 0.1)), 'clip_norm': _clip_by_global_norm,
}


def _numpy_gradient(params, batch):
  """Float64 gradient of the tiny MLP's mean softmax cross-entropy, by hand."""
  p = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
  x, y = batch['x'].astype(np.float64), batch['y']
  w = batch['mask'].astype(np.float64) / batch['mask'].sum()
  pre = x @ p['hidden']['kernel'] + p['hidden']['bias']
  hidden = np.maximum(pre, 0.0)
  logits = hidden @ p['out']['kernel'] + p['out']['bias']
  probabilities = np.exp(logits - logits.max(1, keepdims=True))
  probabilities /= probabilities.sum(1, keepdims=True)
  d_logits = (probabilities - np.eye(tiny.CLASSES)[y]) * w[:, None]
  d_pre = (d_logits @ p['out']['kernel'].T) * (pre > 0)
  return {'hidden': {'kernel': x.T @ d_pre, 'bias': d_pre.sum(0)},
          'out': {'kernel': hidden.T @ d_logits, 'bias': d_logits.sum(0)}}


@pytest.mark.parametrize('parallel, method', [('none', 'znorm'), ('sharded', 'gc'),
                                              ('pmap', 'clip')])
def test_first_step_statistics_match_float64_reference(tmp_path, parallel, method):
  # One step per epoch (8 examples, batch 8), each logged; pmap and sharded use 8 CPU devices,
  # so their statistics are those of the averaged gradient.
  config = tiny.config(method=method, parallel=parallel, num_epochs=2, log_every_steps=1,
                       log_gradient_statistics=True)
  tiny.fit(tmp_path, config, num_train=8)
  records = metrics_log.read(tmp_path / gradient_log.FILENAME)
  assert [r['step'] for r in records] == [1, 2]

  params = nnx.to_pure_dict(nnx.state(tiny.TASK.create_model(nnx.Rngs(config.seed), None),
                                      nnx.Param))
  (batch,) = tiny.data(config, num_train=8).train_batches(0)
  grads = _numpy_gradient(params, batch)
  flat = {f'{layer}/{kind}': grads[layer][kind] for layer in ('hidden', 'out')
          for kind in ('kernel', 'bias')}
  changed = REFERENCE_TRANSFORMS[method](flat)
  for name, g in flat.items():
    after = changed[name]
    expected = {'norm_before': np.linalg.norm(g), 'std_before': g.std(),
                'norm_after': np.linalg.norm(after), 'std_after': after.std()}
    for statistic, value in expected.items():
      np.testing.assert_allclose(records[0][statistic][name], value, rtol=2e-5, atol=1e-8,
                                 err_msg=f'{method} {parallel} {statistic} {name}')


@pytest.mark.parametrize('name', list(methods.METHODS))
def test_gradient_transform_is_the_change_before_adam(name):
  rng = np.random.default_rng(1)
  grads = {'kernel': rng.normal(0.3, 2.0, size=(3, 3, 2, 4)), 'bias': rng.normal(size=4)}
  grads = jax.tree.map(lambda g: g.astype(np.float32), grads)
  transform = methods.gradient_transform(name)
  changed, _ = transform.update(grads, transform.init(grads), grads)
  expected = REFERENCE_TRANSFORMS[name]({key: g.astype(np.float64) for key, g in grads.items()})
  for key in grads:
    np.testing.assert_allclose(changed[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_stateful_transform_is_refused():
  with pytest.raises(ValueError, match='stateless gradient transform'):
    gradient_statistics.StepStatistics(optax.scale_by_adam(), 10, {'w': np.zeros(3)})


def test_start_keeps_the_records_up_to_the_start_step(tmp_path):
  log = gradient_log.GradientStatisticsLog(str(tmp_path))
  for step in (2, 4, 6):
    log.write(gradient_log.record(step, ['w'], np.full((4, 1), float(step))))
  log.start(4)  # A resume from the checkpoint of step 4.
  assert [r['step'] for r in metrics_log.read(log.path)] == [2, 4]
  assert metrics_log.read(log.path)[1]['norm_after'] == {'w': 4.0}
  log.start(0)  # A fresh run.
  assert metrics_log.read(log.path) == []


def test_report_plots_the_logged_norms_against_depth(tmp_path):
  names = ['a/kernel', 'b/kernel', 'c/kernel']
  rng = np.random.default_rng(2)
  written = {}
  results = []
  for method in ('adam', 'znorm'):
    for seed in (0, 1):
      norms = rng.uniform(0.1, 2.0, size=(2, 3))  # First and last logged step, 3 leaves.
      written[method, seed] = norms
      log = gradient_log.GradientStatisticsLog(
          os.path.join(tmp_path, 'runs', 'mlp', method, f'seed_{seed}'))
      os.makedirs(os.path.dirname(log.path))
      for step, row in zip((5, 10, 15), (norms[0], norms[0] * 7, norms[1])):
        log.write(gradient_log.record(step, names, np.stack([row, row, row, row])))
      results.append(sweep.RunResult('mlp', method, seed, [{'epoch': 1, 'test_accuracy': 0.5}]))
  results.append(sweep.RunResult('mlp', 'gc', 0, [{'epoch': 1, 'test_accuracy': 0.5}]))  # No log.

  profiles = report.gradient_depth_profiles(results, str(tmp_path))
  assert set(profiles) == {('mlp', 'adam'), ('mlp', 'znorm')}
  for (_, method), profile in profiles.items():
    assert profile.names == names and profile.steps == (5, 15)
    np.testing.assert_array_equal(profile.norms[:, 0], written[method, 0])
    np.testing.assert_array_equal(profile.norms[:, 1], written[method, 1])
  report.write_report(results, str(tmp_path), dataset='toy',
                      table_columns=[('test_accuracy', 'Accuracy', 2)],
                      curves=[('test_accuracy', 'Accuracy', 2)])
  assert os.path.getsize(tmp_path / 'gradient_norms.png') > 0
