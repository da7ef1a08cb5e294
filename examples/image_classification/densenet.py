"""DenseNet-BC (Huang et al. 2017) in Flax NNX: DenseNet-121 and DenseNet-169.

Growth rate 32, bottleneck layers (a 1x1 convolution to 4x the growth rate
before each 3x3) and compression 0.5 at the transitions, as in torchvision's
``densenet121`` / ``densenet169``. With ``small_images=False`` the model has
torchvision's parameters exactly: a 7x7 stride-2 stem convolution and a
stride-2 max-pool. The default small-image stem is a 3x3 stride-1 convolution
without the max-pool (Huang et al.'s CIFAR stem), which keeps 32x32 inputs at
full resolution in the first dense block.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from examples.image_classification import layers

BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32)}
"""Depth -> dense layers per block."""
GROWTH_RATE = 32
BOTTLENECK_FACTOR = 4  # The 1x1 convolution's output is 4x the growth rate.
COMPRESSION = 0.5  # A transition halves the channels.


class DenseLayer(nnx.Module):
  """BN-ReLU-1x1 conv, BN-ReLU-3x3 conv; its ``growth_rate`` new channels join its input's."""

  def __init__(self, in_features: int, growth_rate: int, *, norm: layers.Norm, rngs: nnx.Rngs):
    bottleneck = BOTTLENECK_FACTOR * growth_rate
    self.norm1 = norm(in_features, rngs=rngs)
    self.conv1 = layers.conv(in_features, bottleneck, 1, rngs=rngs)
    self.norm2 = norm(bottleneck, rngs=rngs)
    self.conv2 = layers.conv(bottleneck, growth_rate, 3, padding=1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv1(nnx.relu(self.norm1(x)))
    y = self.conv2(nnx.relu(self.norm2(y)))
    return jnp.concatenate([x, y], axis=-1)


class Transition(nnx.Module):
  """BN-ReLU-1x1 conv to fewer channels, then 2x2 average pooling."""

  def __init__(self, in_features: int, out_features: int, *, norm: layers.Norm, rngs: nnx.Rngs):
    self.norm = norm(in_features, rngs=rngs)
    self.conv = layers.conv(in_features, out_features, 1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return nnx.avg_pool(self.conv(nnx.relu(self.norm(x))), (2, 2), strides=(2, 2))


class DenseNet(nnx.Module):
  """Stem, dense blocks joined by transitions, BN-ReLU, global average pooling, classifier.

  Built by :func:`densenet`. Inputs must be at least 8x8 with the small-image
  stem (three transitions halve the resolution).
  """

  def __init__(self, blocks: tuple[int, ...], *, growth_rate: int, num_classes: int,
               in_channels: int, small_images: bool, norm: layers.Norm, rngs: nnx.Rngs):
    features = 2 * growth_rate
    self.small_images = small_images
    if small_images:
      self.stem = layers.ConvBN(in_channels, features, 3, padding=1, norm=norm, rngs=rngs)
    else:
      self.stem = layers.ConvBN(in_channels, features, 7, stride=2, padding=3, norm=norm,
                                rngs=rngs)
    stages = []
    for index, num_layers in enumerate(blocks):
      for _ in range(num_layers):
        stages.append(DenseLayer(features, growth_rate, norm=norm, rngs=rngs))
        features += growth_rate
      if index < len(blocks) - 1:
        compressed = int(features * COMPRESSION)
        stages.append(Transition(features, compressed, norm=norm, rngs=rngs))
        features = compressed
    self.layers = nnx.data(stages)
    self.final_norm = norm(features, rngs=rngs)
    self.classifier = nnx.Linear(features, num_classes, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    x = nnx.relu(self.stem(images))
    if not self.small_images:
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for layer in self.layers:
      x = layer(x)
    return self.classifier(layers.global_average_pool(nnx.relu(self.final_norm(x))))


def densenet(depth: int, *, num_classes: int, in_channels: int, width: int | None = None,
             small_images: bool = True, bn_momentum: float = 0.9,
             batch_norm_axis_name: str | None = None, rngs: nnx.Rngs) -> DenseNet:
  """DenseNet-121 or DenseNet-169.

  Args:
    depth: 121 or 169.
    num_classes: classifier outputs.
    in_channels: channels of the input images.
    width: the growth rate (``None``: the paper's 32); the stem has twice as
      many channels, each bottleneck four times as many.
    small_images: True: 3x3 stride-1 stem, no max-pool (32x32 inputs); False:
      torchvision's ImageNet stem.
    bn_momentum: BatchNorm running-average momentum.
    batch_norm_axis_name: device axis for synchronous BatchNorm under ``pmap``.
    rngs: parameter initialization.
  """
  if depth not in BLOCKS:
    raise ValueError(f'DenseNets have depth {tuple(BLOCKS)}; got {depth}.')
  growth_rate = layers.check_width(GROWTH_RATE if width is None else width, f'densenet{depth}')
  return DenseNet(BLOCKS[depth], growth_rate=growth_rate, num_classes=num_classes,
                  in_channels=in_channels, small_images=small_images,
                  norm=layers.batch_norm(bn_momentum, batch_norm_axis_name), rngs=rngs)
