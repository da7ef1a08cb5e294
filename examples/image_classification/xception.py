"""Xception (Chollet 2017) in Flax NNX, as in Keras' ``keras.applications.Xception``.

Entry flow: two 3x3 convolutions (32, 64 channels), then three blocks of two
separable convolutions (128, 256, 728 channels) and a 3x3 stride-2 max-pool,
each with a 1x1 stride-2 projection shortcut. Middle flow: eight blocks of
three ReLU-separable conv-BN layers (728 channels) with identity shortcuts.
Exit flow: a 728/1024 block like the entry ones, separable convolutions of 1536
and 2048 channels, global average pooling and the classifier. A separable
convolution is a 3x3 depthwise convolution followed by a 1x1 pointwise one,
without bias and with no nonlinearity between them; every convolution is
followed by BatchNorm.

With ``small_images=False`` the model has the Keras model's trainable
parameters exactly (Keras counts BatchNorm's moving averages as non-trainable,
nnx as ``BatchStat``), including its stem: a stride-2 3x3 convolution and a
3x3 convolution, both unpadded. The default small-image stem uses stride 1 and
``'SAME'`` padding, so a 32x32 input ends at 2x2 rather than 1x1 (Keras asks
for at least 71x71).
"""

import jax
from flax import nnx

from examples.image_classification import layers

STEM_FEATURES = (32, 64)
ENTRY_FEATURES = (128, 256, 728)
MIDDLE_FEATURES = 728
MIDDLE_BLOCKS = 8
EXIT_BLOCK_FEATURES = (728, 1024)
EXIT_FEATURES = (1536, 2048)


class SeparableConvBN(nnx.Module):
  """3x3 depthwise conv, 1x1 pointwise conv (no bias, nothing between them), BatchNorm."""

  def __init__(self, in_features: int, out_features: int, *, norm: layers.Norm,
               rngs: nnx.Rngs):
    self.depthwise = layers.conv(in_features, in_features, 3, groups=in_features, rngs=rngs)
    self.pointwise = layers.conv(in_features, out_features, 1, rngs=rngs)
    self.norm = norm(out_features, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.norm(self.pointwise(self.depthwise(x)))


class DownsamplingBlock(nnx.Module):
  """[ReLU] sep-conv, ReLU, sep-conv, 3x3 stride-2 max-pool, plus a 1x1 stride-2 projection.

  The first entry block gets an already activated input, so it skips the
  leading ReLU (``activate_input=False``), as in Keras.
  """

  def __init__(self, in_features: int, features: tuple[int, int], *, activate_input: bool,
               norm: layers.Norm, rngs: nnx.Rngs):
    self.activate_input = activate_input
    self.conv1 = SeparableConvBN(in_features, features[0], norm=norm, rngs=rngs)
    self.conv2 = SeparableConvBN(features[0], features[1], norm=norm, rngs=rngs)
    self.projection = layers.ConvBN(in_features, features[1], 1, stride=2, norm=norm, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = nnx.relu(x) if self.activate_input else x
    y = self.conv2(nnx.relu(self.conv1(y)))
    y = nnx.max_pool(y, (3, 3), strides=(2, 2), padding='SAME')
    return y + self.projection(x)


class MiddleBlock(nnx.Module):
  """Three ReLU-sep-conv-BN layers with an identity shortcut."""

  def __init__(self, features: int, *, norm: layers.Norm, rngs: nnx.Rngs):
    self.convs = nnx.data([SeparableConvBN(features, features, norm=norm, rngs=rngs)
                           for _ in range(3)])

  def __call__(self, x: jax.Array) -> jax.Array:
    y = x
    for conv_bn in self.convs:
      y = conv_bn(nnx.relu(y))
    return x + y


class Xception(nnx.Module):
  """Entry, middle and exit flows, global average pooling, a classifier.

  Built by :func:`xception`.
  """

  def __init__(self, *, width: int, num_classes: int, in_channels: int, small_images: bool,
               norm: layers.Norm, rngs: nnx.Rngs):

    def scaled(channels: int) -> int:
      return layers.scale(channels, width, STEM_FEATURES[0])

    stem1, stem2 = scaled(STEM_FEATURES[0]), scaled(STEM_FEATURES[1])
    padding = 'SAME' if small_images else 'VALID'
    self.stem1 = layers.ConvBN(in_channels, stem1, 3, stride=1 if small_images else 2,
                               padding=padding, norm=norm, rngs=rngs)
    self.stem2 = layers.ConvBN(stem1, stem2, 3, padding=padding, norm=norm, rngs=rngs)
    blocks, features = [], stem2
    for index, channels in enumerate(ENTRY_FEATURES):
      out_features = scaled(channels)
      blocks.append(DownsamplingBlock(features, (out_features, out_features),
                                      activate_input=index > 0, norm=norm, rngs=rngs))
      features = out_features
    middle = scaled(MIDDLE_FEATURES)
    blocks.extend(MiddleBlock(middle, norm=norm, rngs=rngs) for _ in range(MIDDLE_BLOCKS))
    exit_features = tuple(scaled(channels) for channels in EXIT_BLOCK_FEATURES)
    blocks.append(DownsamplingBlock(middle, exit_features, activate_input=True, norm=norm,
                                    rngs=rngs))
    self.blocks = nnx.data(blocks)
    exit1, exit2 = (scaled(channels) for channels in EXIT_FEATURES)
    self.exit1 = SeparableConvBN(exit_features[1], exit1, norm=norm, rngs=rngs)
    self.exit2 = SeparableConvBN(exit1, exit2, norm=norm, rngs=rngs)
    self.classifier = nnx.Linear(exit2, num_classes, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    x = nnx.relu(self.stem2(nnx.relu(self.stem1(images))))
    for block in self.blocks:
      x = block(x)
    x = nnx.relu(self.exit2(nnx.relu(self.exit1(x))))
    return self.classifier(layers.global_average_pool(x))


def xception(*, num_classes: int, in_channels: int, width: int | None = None,
             small_images: bool = True, bn_momentum: float = 0.9,
             batch_norm_axis_name: str | None = None, rngs: nnx.Rngs) -> Xception:
  """Xception.

  Args:
    num_classes: classifier outputs.
    in_channels: channels of the input images.
    width: the first convolution's channels (``None``: the paper's 32); every
      layer scales by ``width / 32``.
    small_images: True: stride-1, padded stem (32x32 inputs); False: Keras'
      ImageNet stem.
    bn_momentum: BatchNorm running-average momentum.
    batch_norm_axis_name: device axis for synchronous BatchNorm under ``pmap``.
    rngs: parameter initialization.
  """
  width = layers.check_width(STEM_FEATURES[0] if width is None else width, 'xception')
  return Xception(width=width, num_classes=num_classes, in_channels=in_channels,
                  small_images=small_images,
                  norm=layers.batch_norm(bn_momentum, batch_norm_axis_name), rngs=rngs)
