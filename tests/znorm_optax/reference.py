"""Independent float64 NumPy references for the core library's tests.

Each function is written from the paper's equations (ZNorm eq. 1, Algorithm 1)
and the textbook definitions, never from the library's code, so a comparison
against them can catch a wrong formula and not only a regression.
"""

from typing import Any

import jax
import numpy as np


def to_float64(x: Any) -> np.ndarray:
  """The exact float64 values of an array of any floating dtype (bf16 included)."""
  return np.asarray(x).astype(np.float64)


def statistic_axes(x: np.ndarray, per_channel: bool) -> tuple[int, ...]:
  """All axes, or all but the last (the output channel of Flax layouts) for ndim >= 2."""
  if per_channel and x.ndim >= 2:
    return tuple(range(x.ndim - 1))
  return tuple(range(x.ndim))


def znorm(
    g: Any, eps: float = 1e-10, *, per_channel: bool = False, min_size: int = 2
) -> np.ndarray:
  """Eq. 1: (g - mean) / (population std + eps) per statistic group, in float64.

  Groups with fewer than `min_size` elements, and empty leaves, are returned unchanged.
  """
  x = to_float64(g)
  axes = statistic_axes(x, per_channel)
  group_size = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
  if x.size == 0 or group_size < min_size:
    return x
  mean = np.mean(x, axis=axes, keepdims=True)
  std = np.sqrt(np.mean(np.square(x - mean), axis=axes, keepdims=True))
  return (x - mean) / (std + eps)


def per_slice(fn, g: Any, stacked_axes: tuple[int, ...], **kwargs) -> np.ndarray:
  """`fn` applied to every slice of `g` along `stacked_axes` on its own, in float64."""
  x = to_float64(g)
  if not stacked_axes:
    return fn(x, **kwargs)
  front = np.moveaxis(x, stacked_axes, range(len(stacked_axes)))
  out = np.empty_like(front)
  for index in np.ndindex(*front.shape[:len(stacked_axes)]):
    out[index] = fn(front[index], **kwargs)
  return np.moveaxis(out, range(len(stacked_axes)), stacked_axes)


def centralize(g: Any) -> np.ndarray:
  """Gradient Centralization for Flax layouts: minus the mean over all axes but the last."""
  x = to_float64(g)
  if x.ndim < 2:
    return x
  return x - np.mean(x, axis=tuple(range(x.ndim - 1)), keepdims=True)


def leaf_statistics(g: Any) -> tuple[float, float, float]:
  """(mean, population std, L2 norm) of all elements."""
  x = to_float64(g).ravel()
  mean = np.mean(x)
  return mean, np.sqrt(np.mean(np.square(x - mean))), np.sqrt(np.sum(np.square(x)))


class ZnormAdam:
  """Algorithm 1 of the paper: ZNorm of every leaf, then Adam with bias correction.

  Works on dicts of arrays, in float64. `learning_rate` may be a callable of the
  0-based step count, as optax schedules are. The decay rates are taken as the
  float32 numbers a float32 optimizer holds: 1 - b2**t is ill-conditioned, and
  0.999 rounded to float32 alone moves it by 1e-5 relative.
  """

  def __init__(
      self,
      learning_rate,
      b1: float = 0.9,
      b2: float = 0.999,
      eps: float = 1e-8,
      *,
      eps_root: float = 0.0,
      znorm_eps: float = 1e-10,
      per_channel: bool = False,
      min_size: int = 2,
      normalize: dict[str, bool] | None = None,
  ):
    self.learning_rate = learning_rate
    self.b1, self.b2 = float(np.float32(b1)), float(np.float32(b2))
    self.eps, self.eps_root = eps, eps_root
    self.znorm_kwargs = {'eps': znorm_eps, 'per_channel': per_channel, 'min_size': min_size}
    self.normalize = normalize
    self.step = 0
    self.m: dict[str, np.ndarray] = {}
    self.v: dict[str, np.ndarray] = {}

  def update(self, grads: dict[str, Any]) -> dict[str, np.ndarray]:
    """Returns the float64 updates (to be added to the params) for one step."""
    lr = self.learning_rate(self.step) if callable(self.learning_rate) else self.learning_rate
    self.step += 1
    updates = {}
    for name, g in grads.items():
      if self.normalize is None or self.normalize[name]:
        g = znorm(g, **self.znorm_kwargs)
      else:
        g = to_float64(g)
      m = self.b1 * self.m.get(name, 0.0) + (1 - self.b1) * g
      v = self.b2 * self.v.get(name, 0.0) + (1 - self.b2) * np.square(g)
      self.m[name], self.v[name] = m, v
      m_hat = m / (1 - self.b1**self.step)
      v_hat = v / (1 - self.b2**self.step)
      updates[name] = -float(lr) * m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps)
    return updates


# Tolerances for comparing a library output of a given dtype with the float64
# reference. The output is rounded to its dtype, so half an ulp of relative
# error is unavoidable; the statistics themselves (float32) add about 1e-7.
_RTOL = {
    np.dtype(np.float32): 1e-6,
    np.dtype(jax.numpy.bfloat16): 2.0**-8 + 1e-6,
    np.dtype(np.float16): 2.0**-11 + 1e-6,
}


def assert_close(
    actual: Any, expected: np.ndarray, *, atol: float = 1e-6, rtol=None, err_msg: str = ''
) -> None:
  """Asserts `actual` (any float dtype) is within its dtype's rounding of `expected`."""
  actual = np.asarray(actual)
  if rtol is None:
    rtol = _RTOL[actual.dtype]
  np.testing.assert_allclose(to_float64(actual), expected, rtol=rtol, atol=atol, err_msg=err_msg)
