"""benchmarks/znorm_guidance.py runs, and its pieces compute what they claim.

Smoke tests with tiny settings; no assertions on timings or on training results.
"""

import math

import numpy as np
import optax
import pytest

from benchmarks import znorm_guidance


@pytest.mark.slow  # Compiles the CNN's step twice and ten optimizer loops: ~12 s of CPU.
def test_guidance_prints_both_tables(capsys):
  znorm_guidance.main(['--epochs=1', '--seeds=1', '--learning_rates=0.1',
                       '--adam_learning_rates=0.1', '--steps=5'])
  out = capsys.readouterr().out
  assert '1. ZNorm before SGD' in out and '2. ZNorm + Adam' in out
  assert 'chain(znorm(), sgd(lr, 0.9))' in out
  for name in znorm_guidance.PROBLEMS:
    assert out.count(f'\n{name} ') == len(znorm_guidance.PROBLEM_OPTIMIZERS) + 1


@pytest.mark.parametrize('scalar_leaves', [False, True])
def test_minimize_takes_the_sgd_steps(scalar_leaves):
  # Two SGD steps of 0.25 on sum((x - x*)^2) halve the error twice: x* + (x0 - x*) / 4.
  initial, optimum, loss_fn = znorm_guidance.parabola()
  final, gradient, normalized = znorm_guidance.minimize(
      optax.sgd(0.25), loss_fn, initial, scalar_leaves=scalar_leaves, steps=2)
  x0, x_star = np.asarray(initial, np.float64), np.asarray(optimum, np.float64)
  expected = x_star + (x0 - x_star) / 4
  np.testing.assert_allclose(final, expected, rtol=1e-6)
  np.testing.assert_allclose(gradient, 2 * (expected - x_star), rtol=1e-6)
  if scalar_leaves:  # Size-1 leaves pass through znorm().
    np.testing.assert_allclose(normalized, gradient, rtol=1e-6)
  else:
    deviation = 2 * (expected - x_star) - np.mean(2 * (expected - x_star))
    np.testing.assert_allclose(normalized, deviation / np.std(deviation), rtol=1e-5)


def test_rosenbrock_minimum():
  _, optimum, loss_fn = znorm_guidance.rosenbrock()
  assert float(loss_fn(optimum)) == 0.0
  assert math.isclose(float(loss_fn(np.zeros(2, np.float32))), 1.0)


@pytest.mark.parametrize('initial, final, expected', [
    (2.3, float('nan'), 'NaN'), (2.3, float('inf'), 'NaN'), (2.3, 2.4, 'diverged'),
    (2.3, 0.1, 'trains')])
def test_verdict(initial, final, expected):
  assert znorm_guidance.verdict(initial, final) == expected
