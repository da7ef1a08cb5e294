"""U-Net family of the paper's Table 3, in Flax NNX: U-Net, Attention U-Net, ResNet-50 U-Net, U-Net++.

All models map images (N, H, W, C) to per-pixel logits (N, H, W, num_classes), use BatchNorm
after every convolution but the output one, and take their width (``base_features``) and depth
as arguments so that tests can build tiny versions. H and W must be divisible by
``model.size_divisor``.

BatchNorm's default momentum here is 0.9, not Flax's 0.99: the running statistics used at
evaluation then converge within a few hundred steps, which short runs need.
"""

import functools
from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

NormFactory = Callable[[int], nnx.BatchNorm]


def _norm_factory(bn_momentum: float, batch_norm_axis_name: str | None,
                  rngs: nnx.Rngs) -> NormFactory:
  """BatchNorm constructor taking the feature count; the axis name syncs stats under pmap."""
  return functools.partial(nnx.BatchNorm, momentum=bn_momentum, axis_name=batch_norm_axis_name,
                           rngs=rngs)


def _max_pool(x: jax.Array) -> jax.Array:
  return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))


class ConvNormRelu(nnx.Module):
  """Convolution without bias (BatchNorm has one), BatchNorm, then ReLU if ``activate``."""

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 3,
               strides: int = 1, norm: NormFactory, rngs: nnx.Rngs):
    self.conv = nnx.Conv(in_features, out_features, (kernel_size, kernel_size),
                         strides=(strides, strides), use_bias=False, rngs=rngs)
    self.norm = norm(out_features)

  def __call__(self, x: jax.Array, activate: bool = True) -> jax.Array:
    x = self.norm(self.conv(x))
    return nnx.relu(x) if activate else x


class DoubleConv(nnx.Module):
  """The U-Net unit: two 3x3 ConvNormRelu."""

  def __init__(self, in_features: int, out_features: int, *, norm: NormFactory, rngs: nnx.Rngs):
    self.first = ConvNormRelu(in_features, out_features, norm=norm, rngs=rngs)
    self.second = ConvNormRelu(out_features, out_features, norm=norm, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.second(self.first(x))


class AttentionGate(nnx.Module):
  """Additive attention gate of Attention U-Net (Oktay et al., 2018) on a skip connection.

  The decoder feature (the gating signal, at the skip's resolution) and the skip feature are
  projected to ``inter_features``, added, and mapped to one sigmoid coefficient per pixel that
  scales the skip feature, so that the decoder suppresses irrelevant regions of the skip.
  """

  def __init__(self, gating_features: int, skip_features: int, inter_features: int, *,
               norm: NormFactory, rngs: nnx.Rngs):
    self.project_gating = ConvNormRelu(gating_features, inter_features, kernel_size=1, norm=norm,
                                       rngs=rngs)
    self.project_skip = ConvNormRelu(skip_features, inter_features, kernel_size=1, norm=norm,
                                     rngs=rngs)
    self.coefficient = ConvNormRelu(inter_features, 1, kernel_size=1, norm=norm, rngs=rngs)

  def __call__(self, skip: jax.Array, gating: jax.Array) -> jax.Array:
    joint = nnx.relu(self.project_gating(gating, activate=False) +
                     self.project_skip(skip, activate=False))
    return skip * nnx.sigmoid(self.coefficient(joint, activate=False))


class DecoderBlock(nnx.Module):
  """2x transposed-convolution upsampling, optional (gated) skip concatenation, DoubleConv."""

  def __init__(self, in_features: int, skip_features: int, out_features: int, *,
               attention: bool = False, norm: NormFactory, rngs: nnx.Rngs):
    self.upsample = nnx.ConvTranspose(in_features, out_features, (2, 2), strides=(2, 2),
                                      rngs=rngs)
    self.gate = (AttentionGate(out_features, skip_features, max(skip_features // 2, 1), norm=norm,
                               rngs=rngs) if attention and skip_features else None)
    self.conv = DoubleConv(out_features + skip_features, out_features, norm=norm, rngs=rngs)

  def __call__(self, x: jax.Array, skip: jax.Array | None = None) -> jax.Array:
    x = self.upsample(x)
    if skip is not None:
      if self.gate is not None:
        skip = self.gate(skip, gating=x)
      x = jnp.concatenate([skip, x], axis=-1)
    return self.conv(x)


class UNet(nnx.Module):
  """U-Net (Ronneberger et al., 2015); Attention U-Net with ``attention=True``.

  ``depth`` pooling steps; level i of the encoder has ``base_features * 2**i`` channels.
  """

  def __init__(self, *, in_features: int = 3, num_classes: int = 1, base_features: int = 64,
               depth: int = 4, attention: bool = False, bn_momentum: float = 0.9,
               batch_norm_axis_name: str | None = None, rngs: nnx.Rngs):
    if depth < 1:
      raise ValueError(f'depth must be >= 1, got {depth}.')
    norm = _norm_factory(bn_momentum, batch_norm_axis_name, rngs)
    features = [base_features * 2**level for level in range(depth + 1)]
    self.size_divisor = 2**depth
    self.encoder = nnx.data([
        DoubleConv(in_f, out_f, norm=norm, rngs=rngs)
        for in_f, out_f in zip([in_features] + features[:-1], features)
    ])
    self.decoder = nnx.data([
        DecoderBlock(features[level + 1], features[level], features[level], attention=attention,
                     norm=norm, rngs=rngs) for level in reversed(range(depth))
    ])
    self.head = nnx.Conv(features[0], num_classes, (1, 1), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    skips = []
    for level, block in enumerate(self.encoder):
      if level:
        x = _max_pool(x)
      x = block(x)
      skips.append(x)
    x = skips.pop()
    for block in self.decoder:
      x = block(x, skips.pop())
    return self.head(x)


class AttentionUNet(UNet):
  """Attention U-Net (Oktay et al., 2018): a U-Net with an ``AttentionGate`` on every skip."""

  def __init__(self, **kwargs):
    super().__init__(attention=True, **kwargs)


class Bottleneck(nnx.Module):
  """ResNet-50 bottleneck block: 1x1 reduce, 3x3 (strided), 1x1 expand by 4, plus shortcut."""

  expansion = 4

  def __init__(self, in_features: int, width: int, *, strides: int = 1, norm: NormFactory,
               rngs: nnx.Rngs):
    out_features = width * self.expansion
    self.reduce = ConvNormRelu(in_features, width, kernel_size=1, norm=norm, rngs=rngs)
    self.spatial = ConvNormRelu(width, width, strides=strides, norm=norm, rngs=rngs)
    self.expand = ConvNormRelu(width, out_features, kernel_size=1, norm=norm, rngs=rngs)
    self.shortcut = (ConvNormRelu(in_features, out_features, kernel_size=1, strides=strides,
                                  norm=norm, rngs=rngs)
                     if strides != 1 or in_features != out_features else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    residual = x if self.shortcut is None else self.shortcut(x, activate=False)
    y = self.expand(self.spatial(self.reduce(x)), activate=False)
    return nnx.relu(residual + y)


class ResNetUNet(nnx.Module):
  """U-Net with a ResNet-50-style bottleneck encoder ("ResNet50-UNet" of the paper's Table 3).

  Encoder: 7x7 stride-2 stem, 3x3 stride-2 max pool, then ``stage_sizes`` bottleneck blocks per
  stage (ResNet-50: 3, 4, 6, 3), each stage after the first halving the resolution. The decoder
  upsamples back through the stem's and every stage's resolution, concatenating them as skips,
  and a last decoder block restores the input resolution.
  """

  def __init__(self, *, in_features: int = 3, num_classes: int = 1, base_features: int = 64,
               stage_sizes: Sequence[int] = (3, 4, 6, 3), bn_momentum: float = 0.9,
               batch_norm_axis_name: str | None = None, rngs: nnx.Rngs):
    if not stage_sizes:
      raise ValueError('stage_sizes must name at least one stage.')
    norm = _norm_factory(bn_momentum, batch_norm_axis_name, rngs)
    self.size_divisor = 2**(len(stage_sizes) + 1)
    self.stem = ConvNormRelu(in_features, base_features, kernel_size=7, strides=2, norm=norm,
                             rngs=rngs)
    skip_features = [base_features]
    blocks = []
    in_f = base_features
    for stage, num_blocks in enumerate(stage_sizes):
      stage_blocks = []
      for index in range(num_blocks):
        strides = 2 if stage > 0 and index == 0 else 1
        stage_blocks.append(Bottleneck(in_f, base_features * 2**stage, strides=strides,
                                       norm=norm, rngs=rngs))
        in_f = base_features * 2**stage * Bottleneck.expansion
      blocks.append(stage_blocks)
      skip_features.append(in_f)
    self.stages = nnx.data(blocks)
    skip_features.pop()  # The deepest stage feeds the decoder, it is no skip.
    decoder = []
    for skip_f in reversed(skip_features):
      out_f = max(skip_f // 2, base_features)
      decoder.append(DecoderBlock(in_f, skip_f, out_f, norm=norm, rngs=rngs))
      in_f = out_f
    decoder.append(DecoderBlock(in_f, 0, base_features, norm=norm, rngs=rngs))
    self.decoder = nnx.data(decoder)
    self.head = nnx.Conv(base_features, num_classes, (1, 1), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.stem(x)
    skips = [x]
    x = nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='SAME')
    for stage in self.stages:
      for block in stage:
        x = block(x)
      skips.append(x)
    skips.pop()
    for block in self.decoder:
      x = block(x, skips.pop() if skips else None)
    return self.head(x)


class UNetPlusPlus(nnx.Module):
  """U-Net++ (Zhou et al., 2018): nested, densely connected skip pathways.

  Node X[i][j] (level i, j-th node along the skip) is a DoubleConv of the concatenation of
  X[i][0..j-1] and the upsampled X[i+1][j-1]; the output head reads X[0][depth]. Level i has
  ``base_features * 2**i`` channels.
  """

  def __init__(self, *, in_features: int = 3, num_classes: int = 1, base_features: int = 32,
               depth: int = 4, bn_momentum: float = 0.9, batch_norm_axis_name: str | None = None,
               rngs: nnx.Rngs):
    if depth < 1:
      raise ValueError(f'depth must be >= 1, got {depth}.')
    norm = _norm_factory(bn_momentum, batch_norm_axis_name, rngs)
    features = [base_features * 2**level for level in range(depth + 1)]
    self.size_divisor = 2**depth
    self.depth = depth
    self.encoder = nnx.data([
        DoubleConv(in_f, out_f, norm=norm, rngs=rngs)
        for in_f, out_f in zip([in_features] + features[:-1], features)
    ])
    # nested[i][j - 1] is node X[i][j] for j >= 1; level i has depth - i such nodes.
    self.upsample = nnx.data([
        [
            nnx.ConvTranspose(features[level + 1], features[level], (2, 2), strides=(2, 2),
                              rngs=rngs) for _ in range(depth - level)
        ] for level in range(depth)
    ])
    self.nested = nnx.data([
        [
            DoubleConv(features[level] * (j + 1), features[level], norm=norm, rngs=rngs)
            for j in range(1, depth - level + 1)
        ] for level in range(depth)
    ])
    self.head = nnx.Conv(features[0], num_classes, (1, 1), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    nodes = []  # nodes[i] = [X[i][0], X[i][1], ...]
    for level, block in enumerate(self.encoder):
      x = block(_max_pool(x) if level else x)
      nodes.append([x])
    # Column by column, so that X[i + 1][j - 1] exists when X[i][j] is computed.
    for j in range(1, self.depth + 1):
      for level in range(self.depth - j + 1):
        upsampled = self.upsample[level][j - 1](nodes[level + 1][j - 1])
        inputs = jnp.concatenate(nodes[level] + [upsampled], axis=-1)
        nodes[level].append(self.nested[level][j - 1](inputs))
    return self.head(nodes[0][self.depth])


MODELS = {
    'unet': UNet,
    'attention_unet': AttentionUNet,
    'resnet_unet': ResNetUNet,
    'unet_plus_plus': UNetPlusPlus,
}


def check_model(name: str) -> str:
  """Returns ``name`` if it is in ``MODELS``, else raises ``ValueError`` listing them."""
  if name not in MODELS:
    raise ValueError(f'Unknown model {name!r}; valid models are: {", ".join(MODELS)}.')
  return name


def create_model(name: str, *, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
  """Builds the model registered as ``name`` in ``MODELS`` with constructor ``kwargs``."""
  return MODELS[check_model(name)](rngs=rngs, **kwargs)
