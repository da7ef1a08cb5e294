"""The paper's Table 2: ResNet-56/101/152 on PatchCamelyon, six methods, 50 epochs.

Needs the prepared tfds dataset (``tfds build patch_camelyon`` or ``--config.download=True``).
"""

from examples.resnet_classification.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'patch_camelyon'
  config.model = 'resnet56'
  config.num_epochs = 50
  config.sweep.models = ('resnet56', 'resnet101', 'resnet152')
  config.sweep.methods = ('adam', 'gc', 'clip', 'wd1e-3', 'wd1e-4', 'znorm')
  config.sweep.seeds = (0, 1, 2)
  config.resume = True  # Rerunning the command continues the sweep and skips finished runs.
  return config
