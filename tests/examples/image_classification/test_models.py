"""ResNet architectures: sizes against He et al., shortcuts, names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from examples.image_classification import models


def _abstract(name, **kwargs):
  """Builds the model's shapes only, so even ResNet-152 costs no memory or time."""
  return nnx.eval_shape(lambda: models.create_model(name, num_classes=10, in_channels=3,
                                                    rngs=nnx.Rngs(0), **kwargs))


@pytest.mark.parametrize('name, millions', [
    # He et al. 2016, Table 6 (CIFAR) and Table 1 (ImageNet, 1000 classes: 25.6M, 44.5M,
    # 60.2M, minus the 2048 x 990 classifier weights a 10-class head does not have).
    ('resnet20', 0.27), ('resnet56', 0.85), ('resnet110', 1.7),
    ('resnet50', 25.6 - 2.03), ('resnet101', 44.5 - 2.03), ('resnet152', 60.2 - 2.03),
])
def test_parameter_counts_match_the_resnet_paper(name, millions):
  # 2% slack: 1x1 projection shortcuts instead of zero padding, and rounding in the paper.
  assert models.count_params(_abstract(name)) == pytest.approx(millions * 1e6, rel=0.02)


def test_depth_counts_weighted_layers():
  for depth in models.CIFAR_DEPTHS:
    model = _abstract(f'resnet{depth}')
    kernels = [x for path, x in nnx.to_flat_state(nnx.state(model, nnx.Param))
               if path[-1] == 'kernel' and 'projection' not in path]
    assert len(kernels) == depth  # 6n + 1 convolutions and the classifier.


def test_without_skip_connections_is_a_plain_cnn():
  kwargs = {'num_classes': 10, 'in_channels': 1, 'width': 4, 'rngs': nnx.Rngs(0)}
  plain = models.create_model('resnet14', skip_connections=False, **kwargs)
  residual = models.create_model('resnet14', **kwargs)
  assert all(block.projection is None and not block.skip_connection for block in plain.blocks)
  # Same weights; only the shortcuts differ.
  residual_params = nnx.state(residual, nnx.Param)
  plain_params = nnx.state(plain, nnx.Param)
  shared = {path for path, _ in nnx.to_flat_state(plain_params)}
  assert shared < {path for path, _ in nnx.to_flat_state(residual_params)}
  images = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  plain.eval()
  residual.eval()
  assert not np.allclose(plain(images), residual(images))


def test_forward_shapes_and_bn_momentum():
  model = models.create_model('resnet8', num_classes=3, in_channels=2, width=4, bn_momentum=0.9,
                              rngs=nnx.Rngs(0))
  assert model(jnp.ones((5, 12, 12, 2))).shape == (5, 3)
  assert {m.momentum for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)} == {0.9}


@pytest.mark.parametrize('name', ['resnet21', 'resnet', 'vgg19', 'resnet34'])
def test_unknown_model_names_the_valid_ones(name):
  with pytest.raises(ValueError, match='valid models are: resnet20, resnet32'):
    models.check_model(name)
