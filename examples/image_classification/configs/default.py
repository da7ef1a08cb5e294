"""Defaults for every setting; the other configs start from these.

Training follows the paper: Adam, learning rate 1e-3, batch 256, no augmentation.
The study's settings (model, method, learning rate, sweep) and the training
core's (seed, parallelism, logging, checkpoints) come from
:func:`examples.study.defaults.get_config`.
"""

import ml_collections
from ml_collections import config_dict

from examples.study import defaults
from examples.training.fields import Field


def get_config() -> ml_collections.ConfigDict:
  config = defaults.get_config()
  config.example = 'image_classification'

  # Data.
  config.dataset = 'digits'  # 'digits' (offline), 'cifar10' or 'patch_camelyon' (tfds).
  config.data_dir = config_dict.placeholder(str)  # tfds data directory; None: tfds's default.
  config.download = False  # Let tfds download and prepare the dataset.
  config.image_size = 16  # digits only: the 8x8 images are upsampled/padded to this.
  config.augment = False  # Random crop + flip; the paper used none.
  config.shuffle_buffer = 16_384  # tfds datasets.
  config.normalization_examples = 4096  # tfds: training images for the channel statistics.

  # Model.
  config.model = 'resnet56'
  config.width = config_dict.placeholder(int)  # First-stage channels; None: the paper's 16 / 64.
  config.skip_connections = True  # CIFAR ResNets; False builds a plain deep CNN.
  config.bn_momentum = 0.9
  return config


FIELDS = {
    'dataset': Field(str),  # Checked against the datasets by the example.
    'data_dir': Field(str, optional=True),
    'download': Field(bool),
    'image_size': Field(int, minimum=8),
    'augment': Field(bool),
    'shuffle_buffer': Field(int, minimum=1),
    'normalization_examples': Field(int, minimum=1),
    'width': Field(int, minimum=1, optional=True),
    'skip_connections': Field(bool),
    'bn_momentum': Field(float, minimum=0, below=1),
}
"""What each of the example's own fields accepts (:mod:`examples.training.fields`)."""
