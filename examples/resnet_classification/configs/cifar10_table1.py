"""The paper's Table 1 for ResNet-56 on CIFAR-10: six methods, 100 epochs, batch 256.

Needs the prepared tfds dataset (``tfds build cifar10`` or ``--config.download=True``).
"""

from examples.resnet_classification.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'cifar10'
  config.model = 'resnet56'
  config.num_epochs = 100
  config.sweep.models = ('resnet56',)
  config.sweep.methods = ('adam', 'gc', 'clip', 'wd1e-3', 'wd1e-4', 'znorm')
  config.sweep.seeds = (0, 1, 2)
  config.resume = True  # Rerunning the command continues the sweep and skips finished runs.
  return config
