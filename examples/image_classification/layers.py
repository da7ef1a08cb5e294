"""Layers shared by the DenseNet, MobileNetV2, VGG and Xception models.

Convolutions use He-normal initialization, as the ResNets do. BatchNorm layers
come from :func:`batch_norm`, so every model takes the same ``bn_momentum``
(0.9 by default: the running statistics used at evaluation settle within short
runs) and the same ``batch_norm_axis_name`` (synchronous statistics under
``pmap``).
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Norm = Callable[..., nnx.BatchNorm]
"""``norm(num_features, rngs=rngs)``: a BatchNorm layer with the model's settings."""


def batch_norm(momentum: float, axis_name: str | None) -> Norm:
  """A BatchNorm factory with the model's running-average momentum and device axis."""
  return functools.partial(nnx.BatchNorm, momentum=momentum, axis_name=axis_name)


def conv(in_features: int, out_features: int, kernel: int, *, rngs: nnx.Rngs, stride: int = 1,
         padding: str | int = 'SAME', groups: int = 1, use_bias: bool = False) -> nnx.Conv:
  """A square ``kernel`` convolution with He-normal weights (no bias unless asked)."""
  return nnx.Conv(
      in_features, out_features, (kernel, kernel), strides=stride, padding=padding,
      feature_group_count=groups, use_bias=use_bias,
      kernel_init=nnx.initializers.he_normal(), rngs=rngs,
  )


class ConvBN(nnx.Module):
  """A convolution followed by BatchNorm (no activation); options as in :func:`conv`."""

  def __init__(self, in_features: int, out_features: int, kernel: int, *, norm: Norm,
               rngs: nnx.Rngs, **conv_options):
    self.conv = conv(in_features, out_features, kernel, rngs=rngs, **conv_options)
    self.norm = norm(out_features, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.norm(self.conv(x))


def scale(channels: int, width: int, reference_width: int) -> int:
  """``channels`` of the reference net scaled by ``width / reference_width`` (at least 1)."""
  return max(1, round(channels * width / reference_width))


def check_width(width: int, model: str) -> int:
  """Returns ``width`` if it is a positive integer, else raises ``ValueError``."""
  if not isinstance(width, int) or width < 1:
    raise ValueError(f'--config.width={width!r} must be a positive integer for {model}.')
  return width


def global_average_pool(x: jax.Array) -> jax.Array:
  """``[N, H, W, C] -> [N, C]``."""
  return x.mean(axis=(1, 2))


def adaptive_average_pool(x: jax.Array, size: int) -> jax.Array:
  """Average pooling of ``[N, H, W, C]`` to ``[N, size, size, C]`` for any ``H, W``.

  Output cell ``i`` averages input rows ``floor(i H / size)`` to
  ``ceil((i + 1) H / size) - 1`` (and likewise for columns), the rule of
  PyTorch's ``AdaptiveAvgPool2d``; a 1x1 input is replicated.
  """

  def pooling_matrix(length: int) -> np.ndarray:
    matrix = np.zeros((size, length), np.float32)
    for i in range(size):
      start, end = (i * length) // size, -((-(i + 1) * length) // size)
      matrix[i, start:end] = 1.0 / (end - start)
    return matrix

  rows, columns = pooling_matrix(x.shape[1]), pooling_matrix(x.shape[2])
  return jnp.einsum('ih,jw,nhwc->nijc', rows, columns, x)
