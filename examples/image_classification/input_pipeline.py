"""Image classification data: tfds ``cifar10`` / ``patch_camelyon``, or offline ``digits``.

The tfds datasets are read by :mod:`tfds_data`, imported only when needed.
Images become float32 ``[H, W, C]`` normalized per channel with the mean and
standard deviation of training images. Augmentation (random 4-pixel-padded
crop and horizontal flip) is optional and off by default, as in the paper.
Each process reads its own share of every split (``jax.process_index()``).
"""

import ml_collections
import numpy as np

from examples.datasets import digits
from examples.image_classification.preprocessing import Dataset
from examples.image_classification.preprocessing import augment
from examples.image_classification.preprocessing import channel_statistics
from examples.training import datasets
from examples.training import parallel
from examples.training.data import ArraySource

TFDS_DATASETS = ('cifar10', 'patch_camelyon')
DATASETS = ('digits',) + TFDS_DATASETS


def _normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  return ((images - mean) / std).astype(np.float32)


def load_digits(config: ml_collections.ConfigDict) -> Dataset:
  """:mod:`examples.datasets.digits`, upsampled to ``image_size``.

  The 8x8 images are scaled up by pixel repetition and zero-padded to
  ``config.image_size`` so the ResNet's two stride-2 stages have room.
  """
  scale = config.image_size // 8
  if scale < 1:
    raise ValueError(f'--config.image_size={config.image_size} must be at least 8 for digits.')
  margin = config.image_size - 8 * scale
  before, after = margin // 2, margin - margin // 2

  def upsampled(images: np.ndarray) -> np.ndarray:
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    return np.pad(images, ((0, 0), (before, after), (before, after)))[..., None]

  train_split, test_split = digits.load()
  train_x, test_x = upsampled(train_split['image']), upsampled(test_split['image'])
  mean, std = channel_statistics(train_x)
  train = {'image': _normalize(train_x, mean, std), 'label': train_split['label']}
  test = {'image': _normalize(test_x, mean, std), 'label': test_split['label']}

  def make_source(run_config: ml_collections.ConfigDict) -> ArraySource:
    return ArraySource(train, test, global_batch_size=run_config.batch_size,
                       process_batch_size=parallel.process_batch_size(run_config),
                       seed=run_config.seed, train_transform=augment if run_config.augment else None)

  return Dataset(digits.NUM_CLASSES, train_x.shape[1:], len(train_x), len(test_x),
                 make_source)


def load(config: ml_collections.ConfigDict) -> Dataset:
  """The dataset named by ``config.dataset``; a sweep loads it once for all its runs.

  Raises:
    DatasetUnavailableError: if a tfds dataset is not prepared and may not be
      downloaded, or TensorFlow is not installed.
  """
  if datasets.check_dataset(config.dataset, DATASETS) == 'digits':
    return load_digits(config)
  tfds_data = datasets.import_tfds_loader('examples.image_classification.tfds_data', config.dataset)
  return tfds_data.load(config)
