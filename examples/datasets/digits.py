"""scikit-learn's 8x8 handwritten digits, split 80/20: real data that needs no network."""

import numpy as np
from sklearn import datasets as sklearn_datasets
from sklearn import model_selection

from examples.training.data import NumpyBatch

NUM_CLASSES = 10
_TEST_FRACTION = 0.2
_MAX_VALUE = 16.0  # load_digits pixels are counts in [0, 16].


def load() -> tuple[NumpyBatch, NumpyBatch]:
  """The training and test splits: ``image`` ``[N, 8, 8]`` in [0, 1] and int32 ``label``.

  The split is stratified by label and the same on every call (1437 and 360 images).
  """
  digits = sklearn_datasets.load_digits()
  train_images, test_images, train_labels, test_labels = model_selection.train_test_split(
      digits.images / _MAX_VALUE, digits.target, test_size=_TEST_FRACTION, random_state=0,
      stratify=digits.target)
  return ({'image': train_images, 'label': train_labels.astype(np.int32)},
          {'image': test_images, 'label': test_labels.astype(np.int32)})
