"""The paper's Table 3 setup: three U-Nets x six gradient methods, Adam at lr 1e-2, batch 128.

50 epochs, lr divided by 10 every 5 epochs from epoch 30. The dataset defaults to the offline
``synthetic`` data; the paper's data is ``--config.dataset=lgg_mri
--config.manual_dir=/path/holding/kaggle_3m`` (see ``lgg_mri/``), and
``--config.dataset=oxford_iiit_pet`` downloads Oxford-IIIT Pet through TFDS.
"""

import ml_collections

from examples.study import defaults
from examples.training.fields import Field


def get_config() -> ml_collections.ConfigDict:
  config = defaults.get_config()
  config.example = 'unet_segmentation'

  # Data.
  config.dataset = 'synthetic'  # 'synthetic' (offline), 'lgg_mri' or 'oxford_iiit_pet'.
  config.image_size = 256  # LGG MRI slices are 256 x 256.
  config.data_dir = ''  # TFDS data directory; '' is TFDS's default (~/tensorflow_datasets).
  config.manual_dir = ''  # lgg_mri: the folder holding kaggle_3m/; '' is TFDS's default.
  config.train_split = 'train'
  config.eval_split = 'test'
  config.data_seed = 0  # synthetic: the same data for every run of a sweep.
  config.synthetic_train_size = 3000
  config.synthetic_eval_size = 600
  config.synthetic_empty_fraction = 0.3

  # Sweep: models x methods x seeds (Table 3 of the paper).
  config.sweep.models = ('resnet_unet', 'unet_plus_plus', 'attention_unet')
  config.sweep.methods = ('adam', 'gc', 'clip', 'wd1e-3', 'wd1e-4', 'znorm')
  config.sweep.seeds = (0, 1, 2)
  # Constructor arguments per model (see models.py); unlisted models use their defaults.
  config.model_kwargs = ml_collections.ConfigDict({
      'unet': {'base_features': 64, 'depth': 4},
      'attention_unet': {'base_features': 64, 'depth': 4},
      'resnet_unet': {'base_features': 64, 'stage_sizes': (3, 4, 6, 3)},
      'unet_plus_plus': {'base_features': 32, 'depth': 4},
  })
  config.bn_momentum = 0.9  # Running statistics converge within short runs (Flax: 0.99).

  # Optimisation: the paper's schedule.
  config.learning_rate = 1e-2
  config.batch_size = 128  # Global, over all devices and processes.
  config.num_epochs = 50
  config.lr_decay_start_epoch = 30
  config.lr_decay_every_epochs = 5
  config.lr_decay_factor = 0.1

  # Loss: bce_weight * BCE + dice_weight * (1 - soft Dice).
  config.bce_weight = 1.0
  config.dice_weight = 1.0
  config.dice_smooth = 1.0

  # Metrics: Tversky weights of false positives (alpha) and false negatives (beta).
  config.tversky_alpha = 0.3
  config.tversky_beta = 0.7
  config.num_example_images = 6  # Rows of predictions_<model>.png.

  # Training core (see examples/training/defaults.py): logging, checkpoints, resume.
  config.log_every_steps = 10
  config.checkpoint_every_steps = 500
  config.resume = True
  return config


_NON_NEGATIVE_NUMBER = Field(float, minimum=0)

FIELDS = {
    'dataset': Field(str),  # Checked against the datasets by the example.
    'image_size': Field(int, minimum=1),  # The example checks its models' divisors.
    'data_dir': Field(str),
    'manual_dir': Field(str),
    'train_split': Field(str),
    'eval_split': Field(str),
    'data_seed': Field(int, minimum=0),
    'synthetic_train_size': Field(int, minimum=1),
    'synthetic_eval_size': Field(int, minimum=1),
    'synthetic_empty_fraction': Field(float, minimum=0, maximum=1),
    'model_kwargs': Field(ml_collections.ConfigDict),  # Each model's constructor checks its own.
    'bn_momentum': Field(float, minimum=0, below=1),
    'lr_decay_start_epoch': Field(int, minimum=0),
    'lr_decay_every_epochs': Field(int, minimum=1),
    'lr_decay_factor': Field(float, above=0),
    'bce_weight': _NON_NEGATIVE_NUMBER,
    'dice_weight': _NON_NEGATIVE_NUMBER,
    'dice_smooth': _NON_NEGATIVE_NUMBER,
    'tversky_alpha': _NON_NEGATIVE_NUMBER,
    'tversky_beta': _NON_NEGATIVE_NUMBER,
    'num_example_images': Field(int, minimum=0),
}
"""What each of the example's own fields accepts (:mod:`examples.training.fields`)."""
