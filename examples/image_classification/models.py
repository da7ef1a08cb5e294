"""ResNets in Flax NNX: CIFAR-style basic-block nets and bottleneck ResNet-50/101/152.

Every convolution is followed by BatchNorm, as in the paper. BatchNorm momentum
defaults to 0.9 so the running statistics used at evaluation converge within
short runs (with 0.99 they need thousands of steps). The conv-BN layers and the
BatchNorm settings come from :mod:`layers`, shared with the paper's other
Table 1 models (:data:`ARCHITECTURES`), which :func:`create_model` also builds.
"""

import functools

import jax
from flax import nnx

from examples.image_classification import densenet
from examples.image_classification import layers
from examples.image_classification import mobilenet
from examples.image_classification import vgg
from examples.image_classification import xception

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
BOTTLENECK_STAGES = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
ARCHITECTURES = {
    'densenet121': functools.partial(densenet.densenet, 121),
    'densenet169': functools.partial(densenet.densenet, 169),
    'mobilenetv2': mobilenet.mobilenet_v2,
    'vgg16': vgg.vgg16,
    'xception': xception.xception,
}
"""Name -> factory of the non-ResNet models, each with a small-image stem (or head)."""
MODELS = tuple(f'resnet{d}' for d in CIFAR_DEPTHS + tuple(BOTTLENECK_STAGES)) + tuple(ARCHITECTURES)
PLAIN_PREFIX = 'plain'  # plain<6n+2>: the CIFAR ResNet without shortcuts (He et al.'s "plain-20").
DEFAULT_WIDTH = {'cifar': 16, 'bottleneck': 64}


class BasicBlock(nnx.Module):
  """Two 3x3 conv-BN layers; with ``skip_connection`` their output is added to the input.

  When the shape changes, the shortcut is a 1x1 conv-BN projection.
  """

  def __init__(self, in_features, features, stride, *, skip_connection, norm, rngs):
    self.conv1 = layers.ConvBN(in_features, features, 3, stride=stride, norm=norm, rngs=rngs)
    self.conv2 = layers.ConvBN(features, features, 3, norm=norm, rngs=rngs)
    self.skip_connection = skip_connection
    needs_projection = skip_connection and (stride != 1 or in_features != features)
    self.projection = (
        layers.ConvBN(in_features, features, 1, stride=stride, norm=norm, rngs=rngs)
        if needs_projection else None
    )

  def __call__(self, x):
    y = self.conv2(nnx.relu(self.conv1(x)))
    if self.skip_connection:
      y = y + (x if self.projection is None else self.projection(x))
    return nnx.relu(y)


class BottleneckBlock(nnx.Module):
  """1x1 reduce, 3x3, 1x1 expand (x4), each with BN, plus a shortcut."""

  expansion = 4

  def __init__(self, in_features, features, stride, *, norm, rngs):
    out_features = features * self.expansion
    self.conv1 = layers.ConvBN(in_features, features, 1, norm=norm, rngs=rngs)
    self.conv2 = layers.ConvBN(features, features, 3, stride=stride, norm=norm, rngs=rngs)
    self.conv3 = layers.ConvBN(features, out_features, 1, norm=norm, rngs=rngs)
    self.projection = (
        layers.ConvBN(in_features, out_features, 1, stride=stride, norm=norm, rngs=rngs)
        if stride != 1 or in_features != out_features else None
    )

  def __call__(self, x):
    y = self.conv3(nnx.relu(self.conv2(nnx.relu(self.conv1(x)))))
    return nnx.relu(y + (x if self.projection is None else self.projection(x)))


class ResNet(nnx.Module):
  """A 3x3 stem, stages of blocks (stride 2 from the second stage on), pooling, a classifier.

  The stem has no max-pool and stride 1, which suits small images (CIFAR's
  32x32, PCam's 96x96, the 16x16 digits).
  """

  def __init__(self, stem_features: int, stages: list[nnx.Module], out_features: int,
               num_classes: int, in_channels: int, *, norm, rngs: nnx.Rngs):
    self.stem = layers.ConvBN(in_channels, stem_features, 3, norm=norm, rngs=rngs)
    self.blocks = nnx.data(stages)
    self.classifier = nnx.Linear(out_features, num_classes, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    x = nnx.relu(self.stem(images))
    for block in self.blocks:
      x = block(x)
    return self.classifier(x.mean(axis=(1, 2)))


def cifar_resnet(depth: int, *, num_classes: int, in_channels: int, width: int = 16,
                 skip_connections: bool = True, bn_momentum: float = 0.9,
                 batch_norm_axis_name: str | None = None, rngs: nnx.Rngs) -> ResNet:
  """He et al.'s CIFAR ResNet of depth ``6n + 2``: three stages of ``n`` basic blocks.

  Args:
    depth: 20, 32, 44, 56, 110 or any other ``6n + 2``.
    num_classes: classifier outputs.
    in_channels: channels of the input images.
    width: channels of the first stage (16 in the paper); stages use 1x, 2x, 4x.
    skip_connections: False builds the same net without shortcuts (a plain
      deep CNN), to show why ZNorm needs them.
    bn_momentum: BatchNorm running-average momentum.
    batch_norm_axis_name: device axis for synchronous BatchNorm under ``pmap``.
    rngs: parameter initialization.
  """
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(f'A CIFAR ResNet has depth 6n + 2 (e.g. {CIFAR_DEPTHS}); got {depth}.')
  blocks_per_stage = (depth - 2) // 6
  norm = layers.batch_norm(bn_momentum, batch_norm_axis_name)
  blocks, in_features = [], width
  for stage, features in enumerate((width, 2 * width, 4 * width)):
    for index in range(blocks_per_stage):
      stride = 2 if stage > 0 and index == 0 else 1
      blocks.append(BasicBlock(in_features, features, stride,
                               skip_connection=skip_connections, norm=norm, rngs=rngs))
      in_features = features
  return ResNet(width, blocks, in_features, num_classes, in_channels, norm=norm, rngs=rngs)


def bottleneck_resnet(depth: int, *, num_classes: int, in_channels: int, width: int = 64,
                      bn_momentum: float = 0.9, batch_norm_axis_name: str | None = None,
                      rngs: nnx.Rngs) -> ResNet:
  """ResNet-50/101/152 (bottleneck blocks, stage widths 1x-8x ``width``) with a small-image stem."""
  if depth not in BOTTLENECK_STAGES:
    raise ValueError(f'Bottleneck ResNets have depth {tuple(BOTTLENECK_STAGES)}; got {depth}.')
  norm = layers.batch_norm(bn_momentum, batch_norm_axis_name)
  blocks, in_features = [], width
  for stage, num_blocks in enumerate(BOTTLENECK_STAGES[depth]):
    features = width * 2**stage
    for index in range(num_blocks):
      stride = 2 if stage > 0 and index == 0 else 1
      blocks.append(BottleneckBlock(in_features, features, stride, norm=norm, rngs=rngs))
      in_features = features * BottleneckBlock.expansion
  return ResNet(width, blocks, in_features, num_classes, in_channels, norm=norm, rngs=rngs)


def create_model(name: str, *, num_classes: int, in_channels: int, width: int | None = None,
                 skip_connections: bool = True, bn_momentum: float = 0.9,
                 batch_norm_axis_name: str | None = None, rngs: nnx.Rngs) -> nnx.Module:
  """Builds a model by name.

  ``resnet20`` ... ``resnet110`` (CIFAR), ``resnet50/101/152`` (bottleneck),
  ``plain20`` ... (a CIFAR ResNet without shortcuts), ``densenet121``,
  ``densenet169``, ``mobilenetv2``, ``vgg16``, ``xception``; all with stems
  for small images.

  Args:
    name: one of :data:`MODELS` (any ``resnet<6n+2>`` or ``plain<6n+2>`` also works).
    num_classes: classifier outputs.
    in_channels: channels of the input images.
    width: the model's base channel count; ``None`` uses the paper's. It is
      the first-stage channels of the ResNets (16 CIFAR, 64 bottleneck) and
      of VGG-16 (64), the growth rate of the DenseNets (32), and the first
      convolution's channels of MobileNetV2 and Xception (32). The other
      layers scale with it.
    skip_connections: CIFAR ResNets only; False removes every shortcut.
    bn_momentum: BatchNorm running-average momentum.
    batch_norm_axis_name: device axis for synchronous BatchNorm under ``pmap``.
    rngs: parameter initialization.

  Raises:
    ValueError: for an unknown name, naming the valid ones.
  """
  common = {'num_classes': num_classes, 'in_channels': in_channels, 'bn_momentum': bn_momentum,
            'batch_norm_axis_name': batch_norm_axis_name, 'rngs': rngs}
  prefix, depth = _parse(name)
  if prefix == PLAIN_PREFIX or (prefix == 'resnet' and depth not in BOTTLENECK_STAGES):
    return cifar_resnet(depth, width=width or DEFAULT_WIDTH['cifar'],
                        skip_connections=skip_connections and prefix == 'resnet', **common)
  if not skip_connections:
    raise ValueError('--config.skip_connections=False is only supported by CIFAR ResNets.')
  if prefix in ARCHITECTURES:
    return ARCHITECTURES[prefix](width=width, **common)
  return bottleneck_resnet(depth, width=width or DEFAULT_WIDTH['bottleneck'], **common)


def _parse(name: str) -> tuple[str, int]:
  """``(prefix, depth)``: ``('resnet', 56)``, ``('plain', 20)``, or ``(name, 0)`` for the others."""
  if name in ARCHITECTURES:
    return name, 0
  for prefix in ('resnet', PLAIN_PREFIX):
    suffix = name[len(prefix):] if name.startswith(prefix) else ''
    depth = int(suffix) if suffix.isdigit() else -1
    if (prefix == 'resnet' and depth in BOTTLENECK_STAGES) or (depth >= 8 and (depth - 2) % 6 == 0):
      return prefix, depth
  raise ValueError(f'Unknown --config.model={name!r}; valid models are: {", ".join(MODELS)} '
                   '(or any resnet<6n+2> or plain<6n+2>).')


def check_model(name: str) -> str:
  """Returns ``name`` if :func:`create_model` accepts it, else raises ``ValueError``."""
  _parse(name)
  return name


def count_params(model: nnx.Module) -> int:
  """Number of trainable parameters."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))

