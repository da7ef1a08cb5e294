"""Exactness at the edges of float32, and NaN (never finite garbage) beyond them.

What was chosen (issue "XLA path"): with the default eps, ZNorm takes its
squares as they are, so a leaf whose squared deviations overflow float32 comes
out all NaN, which `optax.apply_if_finite` and the training loop's
`on_nonfinite` handle; a program without a fallback branch compiles in a
fraction of the time. Where eps is tiny (below `RESCALE_BELOW_EPS`, or traced),
and in Gradient Centralization and `gradient_statistics`, every group is first
divided by a power of two, and the results are exact for any finite input up to
the largest float32.

Subnormal inputs (below 1.2e-38) are left out of the exactness checks: XLA:CPU
flushes them to zero in arithmetic, in this library as in the optimizer after it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import znorm_optax
from tests.znorm_optax import reference

BIGGEST = float(np.finfo(np.float32).max)


def _cases():
  rng = np.random.default_rng(40)
  return {
      # x - shift overflows float32 (the spread is the whole float32 range).
      'full_range': np.array([BIGGEST, -BIGGEST, 0.5 * BIGGEST, 1.0, -3e37], np.float32),
      'opposite_extremes': np.array([1e38, -1e38], np.float32),
      'uniform_full_range': rng.uniform(-BIGGEST, BIGGEST, 1000).astype(np.float32),
      'huge_mean': (3e38 + 1e31 * rng.standard_normal(200)).astype(np.float32),
      'huge_per_channel': (rng.uniform(-1, 1, (50, 4)) * np.array([1e38, 1.0, 1e-30, 3e37])
                           ).astype(np.float32),
      'smallest_normals': (1.2e-38 * rng.uniform(1, 100, 64)).astype(np.float32),
      'mixed_scales': np.concatenate([rng.standard_normal(10) * 1e36,
                                      rng.standard_normal(10) * 1e-36]).astype(np.float32),
  }


def _relative_error(actual, expected, scale):
  return np.max(np.abs(reference.to_float64(actual) - expected)) / scale


@pytest.mark.parametrize('jit', [False, True])
def test_znorm_and_centralize_stay_exact(jit):
  cases = _cases()
  normalize = znorm_optax.znorm(eps=0.0, per_channel=False).update
  normalize_per_channel = znorm_optax.znorm(eps=0.0, per_channel=True).update
  centralize = znorm_optax.centralize().update
  if jit:
    normalize, normalize_per_channel, centralize = map(
        jax.jit, (normalize, normalize_per_channel, centralize))
  normalized, _ = normalize(cases, None)
  per_channel, _ = normalize_per_channel(cases, None)
  centralized, _ = centralize(cases, None)
  for name, g in cases.items():
    for got, expected in ((normalized[name], reference.znorm(g, 0.0)),
                          (per_channel[name], reference.znorm(g, 0.0, per_channel=True))):
      assert np.all(np.isfinite(got)), name
      # Unit-scale outputs: 1e-5 relative to their scale, like every other test here.
      assert _relative_error(got, expected, 1.0) <= 1e-5, name
    expected = reference.centralize(g)
    if np.all(np.abs(expected) <= BIGGEST):  # The result itself is representable.
      assert _relative_error(centralized[name], expected, np.max(np.abs(g))) <= 1e-5, name


@pytest.mark.parametrize('jit', [False, True])
def test_default_eps_gives_nan_beyond_float32_squares_and_stays_exact_within(jit):
  cases = _cases()
  beyond = ('full_range', 'opposite_extremes', 'uniform_full_range', 'huge_mean',
            'huge_per_channel', 'mixed_scales')
  within = {
      'smallest_normals': cases['smallest_normals'],
      # Squared deviations up to 1e36, and a mean 1e4 stds away: still exact.
      'large': (1e18 * np.random.default_rng(42).standard_normal(100)).astype(np.float32),
      'large_mean': (1e12 + 1e8 * np.random.default_rng(43).standard_normal(100)
                     ).astype(np.float32),
  }
  normalize = znorm_optax.znorm().update
  normalize = jax.jit(normalize) if jit else normalize
  normalized, _ = normalize({**{name: cases[name] for name in beyond}, **within}, None)
  for name in beyond:
    assert np.all(np.isnan(normalized[name])), name
  for name, g in within.items():
    assert _relative_error(normalized[name], reference.znorm(g), 1.0) <= 1e-5, name


def test_beyond_float32_squares_only_the_offending_group_is_nan():
  g = _cases()['huge_per_channel']  # Channels of scale 1e38, 1, 1e-30 and 3e37.
  normalized, _ = jax.jit(znorm_optax.znorm(per_channel=True).update)(g, None)
  expected = reference.znorm(g, per_channel=True)
  for channel, overflows in enumerate((True, False, False, True)):
    column = np.asarray(normalized[:, channel])
    if overflows:
      assert np.all(np.isnan(column)), channel
    else:
      assert np.max(np.abs(column - expected[:, channel])) <= 1e-5, channel


def test_gradient_statistics_stay_exact():
  cases = _cases()
  stats = jax.jit(znorm_optax.gradient_statistics)(cases)
  for name, g in cases.items():
    mean, std, l2_norm = reference.leaf_statistics(g)
    got = stats[f"['{name}']"]
    scale = np.max(np.abs(reference.to_float64(g)))
    assert np.isfinite(got.mean) and np.isfinite(got.std), name
    assert abs(float(got.mean) - mean) <= 1e-5 * scale, name
    np.testing.assert_allclose(float(got.std), std, rtol=1e-5, err_msg=name)
    if l2_norm <= BIGGEST:
      np.testing.assert_allclose(float(got.l2_norm), l2_norm, rtol=1e-5, err_msg=name)
    else:
      assert np.isposinf(got.l2_norm), name
  opposite = stats["['opposite_extremes']"]
  np.testing.assert_allclose([opposite.mean, opposite.std, opposite.l2_norm],
                             [0.0, 1e38, np.sqrt(2) * 1e38], rtol=1e-6, atol=1e31)


def test_subnormal_inputs_give_finite_results():
  g = jnp.asarray((1e-40 * np.random.default_rng(41).integers(-1000, 1000, 64)), jnp.float32)
  normalized, _ = jax.jit(znorm_optax.znorm(eps=0.0).update)(g, None)
  stats = znorm_optax.gradient_statistics(g)['<root>']
  assert np.all(np.isfinite(normalized))
  assert all(np.isfinite(v) for v in stats)


def test_non_finite_inputs_still_give_nan():
  grads = {'inf': jnp.array([1.0, jnp.inf, 2.0]), 'nan': jnp.array([1.0, jnp.nan]),
           'big_and_inf': jnp.array([BIGGEST, -jnp.inf])}
  normalized, _ = jax.jit(znorm_optax.znorm().update)(grads, None)
  for name in grads:
    assert np.all(np.isnan(normalized[name])), name
