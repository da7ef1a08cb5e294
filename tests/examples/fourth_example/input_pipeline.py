"""The digits (:mod:`examples.datasets.digits`) as flat vectors of 64 pixels."""

import dataclasses

import ml_collections
import numpy as np

from examples.datasets import digits
from examples.training import datasets
from examples.training import parallel
from examples.training.data import ArraySource
from examples.training.data import NumpyBatch

DATASETS = ('digits',)


@dataclasses.dataclass(frozen=True)
class Dataset:
  train: NumpyBatch
  test: NumpyBatch

  def make_source(self, config: ml_collections.ConfigDict) -> ArraySource:
    """One run's batches: ``config.batch_size`` over all processes, shuffled with the seed."""
    return ArraySource(self.train, self.test, global_batch_size=config.batch_size,
                       process_batch_size=parallel.process_batch_size(config), seed=config.seed)


def _flat(split: NumpyBatch) -> NumpyBatch:
  images = split['image']
  return {'pixels': images.reshape(len(images), -1).astype(np.float32), 'label': split['label']}


def load(config: ml_collections.ConfigDict) -> Dataset:
  """``config.dataset``; it depends on no field a sweep changes."""
  datasets.check_dataset(config.dataset, DATASETS)
  train, test = digits.load()
  return Dataset(_flat(train), _flat(test))
