"""The paper's Table 2: ResNet-56/101/152 on PatchCamelyon, six methods, 50 epochs.

Needs the prepared tfds dataset (``tfds build patch_camelyon`` or ``--config.download=True``).
"""

from examples.image_classification.configs import cifar10_table1
from examples.image_classification.configs import default

MODELS = ('resnet56', 'resnet101', 'resnet152')


def get_config():
  config = default.get_config()
  config.dataset = 'patch_camelyon'
  config.model = MODELS[0]
  config.num_epochs = 50
  config.sweep.models = MODELS
  config.sweep.methods = cifar10_table1.METHODS
  config.sweep.seeds = (0, 1, 2)
  config.resume = True  # Rerunning the command continues the sweep and skips finished runs.
  return config
