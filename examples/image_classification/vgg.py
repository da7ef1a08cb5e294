"""VGG-16 (Simonyan & Zisserman 2015, configuration D) with BatchNorm after every convolution.

Thirteen 3x3 convolutions (with bias, each followed by BatchNorm and ReLU) in
five stages of 64, 128, 256, 512 and 512 channels, each stage ending in a 2x2
max-pool. VGG has no stem; what changes for small images is the head:

* ``small_images=True`` (default): global average pooling and one linear
  classifier, the usual CIFAR head (at 32x32 the five pools leave 1x1 anyway);
* ``small_images=False``: torchvision's ``vgg16_bn`` head, adaptive average
  pooling to 7x7 and fully connected layers of 4096, 4096 and ``num_classes``
  units, with torchvision's parameters exactly (its dropout has no parameters
  and is left out, as every model here trains without dropout).

The pools pad like ``'SAME'``: the same as torchvision's for even sizes, and a
16x16 input still reaches the last stage (at 1x1).
"""

import jax
from flax import nnx

from examples.image_classification import layers

STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
"""Configuration D: output channels of each stage's convolutions."""
FIRST_STAGE_FEATURES = 64
HIDDEN_FEATURES = 4096  # The ImageNet head's fully connected layers.
POOLED_SIZE = 7  # The ImageNet head pools to 7x7.


class VGG(nnx.Module):
  """Conv-BN-ReLU stages with max-pooling, then a classifier head.

  Built by :func:`vgg16`.
  """

  def __init__(self, *, width: int, num_classes: int, in_channels: int, small_images: bool,
               norm: layers.Norm, rngs: nnx.Rngs):
    stages, features = [], in_channels
    for stage in STAGES:
      convs = []
      for channels in stage:
        out_features = layers.scale(channels, width, FIRST_STAGE_FEATURES)
        convs.append(layers.ConvBN(features, out_features, 3, padding=1, use_bias=True,
                                   norm=norm, rngs=rngs))
        features = out_features
      stages.append(convs)
    self.stages = nnx.data(stages)
    if small_images:
      self.hidden = None
      self.classifier = nnx.Linear(features, num_classes, rngs=rngs)
    else:
      hidden = layers.scale(HIDDEN_FEATURES, width, FIRST_STAGE_FEATURES)
      self.hidden = nnx.data([nnx.Linear(features * POOLED_SIZE**2, hidden, rngs=rngs),
                              nnx.Linear(hidden, hidden, rngs=rngs)])
      self.classifier = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    x = images
    for stage in self.stages:
      for conv_bn in stage:
        x = nnx.relu(conv_bn(x))
      x = nnx.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
    if self.hidden is None:
      return self.classifier(layers.global_average_pool(x))
    x = layers.adaptive_average_pool(x, POOLED_SIZE).reshape(x.shape[0], -1)
    for linear in self.hidden:
      x = nnx.relu(linear(x))
    return self.classifier(x)


def vgg16(*, num_classes: int, in_channels: int, width: int | None = None,
          small_images: bool = True, bn_momentum: float = 0.9,
          batch_norm_axis_name: str | None = None, rngs: nnx.Rngs) -> VGG:
  """VGG-16 with BatchNorm.

  Args:
    num_classes: classifier outputs.
    in_channels: channels of the input images.
    width: first-stage channels (``None``: the paper's 64); every layer,
      including the ImageNet head's 4096-unit ones, scales by ``width / 64``.
    small_images: True: pooled linear head; False: torchvision's ImageNet head.
    bn_momentum: BatchNorm running-average momentum.
    batch_norm_axis_name: device axis for synchronous BatchNorm under ``pmap``.
    rngs: parameter initialization.
  """
  width = layers.check_width(FIRST_STAGE_FEATURES if width is None else width, 'vgg16')
  return VGG(width=width, num_classes=num_classes, in_channels=in_channels,
             small_images=small_images,
             norm=layers.batch_norm(bn_momentum, batch_norm_axis_name), rngs=rngs)
