"""MobileNetV2 (Sandler et al. 2018) in Flax NNX, width multiplier 1.0.

Inverted residual blocks: a 1x1 expansion (6x; none in the first block), a 3x3
depthwise convolution, both with BatchNorm and ReLU6, and a linear 1x1
projection with BatchNorm; blocks that keep the shape add their input. As in
torchvision's ``mobilenet_v2``, channel counts are rounded to multiples of 8
and the last 1x1 convolution keeps 1280 channels for multipliers below 1. With
``small_images=False`` the model has torchvision's parameters exactly (its
classifier dropout has no parameters and is left out, as every model here
trains without dropout). The default small-image stem has stride 1 instead of
2, so a 32x32 input ends at 2x2 rather than 1x1.
"""

import jax
from flax import nnx

from examples.image_classification import layers

STEM_FEATURES = 32
LAST_FEATURES = 1280
INVERTED_RESIDUALS = (
    # (expansion, output channels, blocks, stride of the first block)
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_CHANNEL_DIVISOR = 8


def round_channels(channels: float) -> int:
  """Nearest multiple of 8 (at least 8), but never more than 10% below ``channels``."""
  rounded = max(_CHANNEL_DIVISOR, int(channels / _CHANNEL_DIVISOR + 0.5) * _CHANNEL_DIVISOR)
  return rounded + _CHANNEL_DIVISOR if rounded < 0.9 * channels else rounded


class InvertedResidual(nnx.Module):
  """Expand (1x1), depthwise 3x3, project (1x1, linear); a shortcut when the shape is kept."""

  def __init__(self, in_features: int, out_features: int, stride: int, expansion: int, *,
               norm: layers.Norm, rngs: nnx.Rngs):
    hidden = round(in_features * expansion)
    self.expand = (layers.ConvBN(in_features, hidden, 1, norm=norm, rngs=rngs)
                   if expansion != 1 else None)
    self.depthwise = layers.ConvBN(hidden, hidden, 3, stride=stride, padding=1, groups=hidden,
                                   norm=norm, rngs=rngs)
    self.project = layers.ConvBN(hidden, out_features, 1, norm=norm, rngs=rngs)
    self.residual = stride == 1 and in_features == out_features

  def __call__(self, x: jax.Array) -> jax.Array:
    y = x if self.expand is None else nnx.relu6(self.expand(x))
    y = self.project(nnx.relu6(self.depthwise(y)))
    return x + y if self.residual else y


class MobileNetV2(nnx.Module):
  """Stem, 17 inverted residual blocks, a 1x1 conv to 1280 channels, pooling, a classifier.

  Built by :func:`mobilenet_v2`.
  """

  def __init__(self, *, width_multiplier: float, num_classes: int, in_channels: int,
               small_images: bool, norm: layers.Norm, rngs: nnx.Rngs):
    features = round_channels(STEM_FEATURES * width_multiplier)
    self.stem = layers.ConvBN(in_channels, features, 3, stride=1 if small_images else 2,
                              padding=1, norm=norm, rngs=rngs)
    blocks = []
    for expansion, channels, num_blocks, first_stride in INVERTED_RESIDUALS:
      out_features = round_channels(channels * width_multiplier)
      for index in range(num_blocks):
        stride = first_stride if index == 0 else 1
        blocks.append(InvertedResidual(features, out_features, stride, expansion, norm=norm,
                                       rngs=rngs))
        features = out_features
    self.blocks = nnx.data(blocks)
    last_features = round_channels(LAST_FEATURES * max(1.0, width_multiplier))
    self.head = layers.ConvBN(features, last_features, 1, norm=norm, rngs=rngs)
    self.classifier = nnx.Linear(last_features, num_classes, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    x = nnx.relu6(self.stem(images))
    for block in self.blocks:
      x = block(x)
    return self.classifier(layers.global_average_pool(nnx.relu6(self.head(x))))


def mobilenet_v2(*, num_classes: int, in_channels: int, width: int | None = None,
                 small_images: bool = True, bn_momentum: float = 0.9,
                 batch_norm_axis_name: str | None = None, rngs: nnx.Rngs) -> MobileNetV2:
  """MobileNetV2.

  Args:
    num_classes: classifier outputs.
    in_channels: channels of the input images.
    width: the stem's channels (``None``: the paper's 32); ``width / 32`` is
      the width multiplier applied to every layer but the last 1x1 conv.
    small_images: True: stride-1 stem (32x32 inputs); False: torchvision's
      stride-2 ImageNet stem.
    bn_momentum: BatchNorm running-average momentum.
    batch_norm_axis_name: device axis for synchronous BatchNorm under ``pmap``.
    rngs: parameter initialization.
  """
  width = layers.check_width(STEM_FEATURES if width is None else width, 'mobilenetv2')
  return MobileNetV2(width_multiplier=width / STEM_FEATURES, num_classes=num_classes,
                     in_channels=in_channels, small_images=small_images,
                     norm=layers.batch_norm(bn_momentum, batch_norm_axis_name), rngs=rngs)
