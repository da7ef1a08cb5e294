"""U-Net family: shapes, BatchNorm everywhere, the ResNet-50 encoder size, attention gates."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from examples.unet_segmentation import models

TINY_KWARGS = {
    'unet': {'base_features': 4, 'depth': 2},
    'attention_unet': {'base_features': 4, 'depth': 2},
    'resnet_unet': {'base_features': 4, 'stage_sizes': (1, 1)},
    'unet_plus_plus': {'base_features': 4, 'depth': 2},
}


def _count(state) -> int:
  return sum(x.size for x in jax.tree.leaves(state))


@pytest.mark.parametrize('name', list(models.MODELS))
def test_output_shape_and_batch_norm_in_eval_mode(name):
  model = models.create_model(name, rngs=nnx.Rngs(0), bn_momentum=0.8, num_classes=2,
                              **TINY_KWARGS[name])
  forward = nnx.jit(lambda model, images: model(images))  # Eager dispatch is slow on CPU.
  images = jax.random.uniform(jax.random.key(1), (3, 16, 16, 3))
  assert forward(model, images).shape == (3, 16, 16, 2)  # Training mode: updates running stats.
  norms = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)]
  convs = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Conv) and m is not model.head]
  assert norms and all(norm.momentum == 0.8 for norm in norms)
  assert len(norms) == len(convs)  # Every convolution but the output head is normalised...
  assert all(conv.bias is None for conv in convs)  # ...and BatchNorm supplies its bias.
  # Eval mode uses running statistics, so an image's output does not depend on its batch.
  model.eval()
  np.testing.assert_allclose(forward(model, images)[:1], forward(model, images[:1]), rtol=1e-5,
                             atol=1e-5)


def test_resnet_encoder_has_resnet50_size():
  model = nnx.eval_shape(lambda: models.ResNetUNet(rngs=nnx.Rngs(0)))
  encoder = (nnx.state(model.stem, nnx.Param), nnx.state(model.stages, nnx.Param))
  # torchvision's resnet50 without its 1000-way fc layer: 25,557,032 - 2,049,000.
  assert _count(encoder) == 23_508_032


def test_classic_unet_size():
  model = nnx.eval_shape(lambda: models.UNet(rngs=nnx.Rngs(0)))
  encoder = nnx.state(model.encoder, nnx.Param)
  # Double 3x3 convs 3-64-64, 64-128-128, ..., 512-1024-1024, without bias, BN scale + bias.
  widths = [3, 64, 128, 256, 512, 1024]
  expected = sum(9 * i * o + 9 * o * o + 4 * o for i, o in itertools.pairwise(widths))
  assert _count(encoder) == expected


def test_attention_gate_scales_the_skip_by_coefficients_in_unit_interval():
  rngs = nnx.Rngs(0)
  gate = models.AttentionGate(6, 4, 2, norm=lambda n: nnx.BatchNorm(n, rngs=rngs), rngs=rngs)
  skip = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
  gating = jax.random.normal(jax.random.key(1), (2, 8, 8, 6))
  gated = nnx.jit(lambda gate, skip, gating: gate(skip, gating))(gate, skip, gating)
  ratio = gated / skip  # One coefficient per pixel, shared by the channels.
  assert jnp.all((ratio > 0) & (ratio < 1))
  np.testing.assert_allclose(ratio, jnp.broadcast_to(ratio[..., :1], ratio.shape), rtol=1e-5)


def test_unet_plus_plus_has_nested_nodes():
  model = nnx.eval_shape(lambda: models.UNetPlusPlus(base_features=2, depth=3, rngs=nnx.Rngs(0)))
  assert [len(level) for level in model.nested] == [3, 2, 1]  # X[i][j] for j = 1..depth - i.


def test_batch_norm_axis_name_reaches_every_norm():
  model = nnx.eval_shape(lambda: models.create_model(
      'attention_unet', rngs=nnx.Rngs(0), batch_norm_axis_name='batch',
      **TINY_KWARGS['attention_unet']))
  norms = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)]
  assert all(norm.axis_name == 'batch' for norm in norms)


def test_unknown_model_and_bad_depth_raise():
  with pytest.raises(ValueError, match='valid models are'):
    models.create_model('segnet', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='depth'):
    models.UNet(depth=0, rngs=nnx.Rngs(0))
