"""What the image classification loaders share: their result, channel statistics, augmentation."""

import dataclasses
from collections.abc import Callable

import ml_collections
import numpy as np

from examples.training.data import NumpyBatch
from examples.training.task import DataSource

_CROP_PADDING = 4


@dataclasses.dataclass(frozen=True)
class Dataset:
  """What the model needs to know about the images, and how to serve one run's batches."""

  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_test: int
  make_source: Callable[[ml_collections.ConfigDict], DataSource]
  """``config ->`` one run's batches: ``config.batch_size`` over all processes, shuffled (and
  augmented) with ``config.seed``."""


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of ``[N, H, W, C]`` images (float64)."""
  images = np.asarray(images, np.float64)
  return images.mean(axis=(0, 1, 2)), images.std(axis=(0, 1, 2))


def augment(batch: NumpyBatch, rng: np.random.Generator) -> NumpyBatch:
  """Random crop of the 4-pixel zero-padded image and random horizontal flip."""
  images = batch['image']
  n, height, width, _ = images.shape
  p = _CROP_PADDING
  padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
  tops, lefts = rng.integers(0, 2 * p + 1, size=(2, n))
  flips = rng.random(n) < 0.5
  out = np.empty_like(images)
  for i in range(n):
    crop = padded[i, tops[i] : tops[i] + height, lefts[i] : lefts[i] + width]
    out[i] = crop[:, ::-1] if flips[i] else crop
  return dict(batch, image=out)
