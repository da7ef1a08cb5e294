"""The paper's Table 1: eight architectures on CIFAR-10, six methods, 100 epochs, batch 256.

ResNet-56/101/152, DenseNet-121/169, MobileNetV2, VGG-16 and Xception, each with
its small-image stem (see ``models.create_model``), in the paper's order; the methods
in the paper's row order. Needs the prepared tfds dataset (``tfds build
cifar10`` or ``--config.download=True``).
"""

from examples.image_classification.configs import default

MODELS = ('resnet56', 'resnet101', 'resnet152', 'densenet121', 'densenet169', 'mobilenetv2',
          'vgg16', 'xception')
METHODS = ('adam', 'gc', 'clip', 'wd1e-3', 'wd1e-4', 'znorm')


def get_config():
  config = default.get_config()
  config.dataset = 'cifar10'
  config.model = MODELS[0]
  config.num_epochs = 100
  config.sweep.models = MODELS
  config.sweep.methods = METHODS
  config.sweep.seeds = (0, 1, 2)
  config.resume = True  # Rerunning the command continues the sweep and skips finished runs.
  return config
