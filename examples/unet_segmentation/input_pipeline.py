"""Loads a segmentation dataset as in-memory NumPy arrays.

Every dataset gives, per split, ``{'image': uint8 (N, S, S, 3), 'label': uint8 (N, S, S, 1)}``
with ``label`` in {0, 1} (1 = foreground) and ``S = config.image_size``. Images stay uint8 in
memory (the model input is scaled to [0, 1] on device), which keeps LGG MRI under 1 GB.

``--config.dataset``:

* ``synthetic`` (default, offline): ``synthetic.make_split``, lesion-like blobs on textures.
* ``oxford_iiit_pet``: TFDS Oxford-IIIT Pet; the trimap becomes a binary mask of the pet (its
  body and its border) against the background. Downloaded by TFDS on first use.
* ``lgg_mri``: the Kaggle LGG MRI release through this example's TFDS builder
  (``examples.unet_segmentation.lgg_mri``), read from ``--config.manual_dir``.

The TFDS datasets are read by ``tfds_data``, the only module here that needs TensorFlow.
"""

import dataclasses

import ml_collections

from examples.training import datasets
from examples.training import parallel
from examples.training.data import ArraySource
from examples.training.data import NumpyBatch
from examples.unet_segmentation import synthetic

DATASETS = ('synthetic', 'oxford_iiit_pet', 'lgg_mri')


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Both splits in memory; the runs of a sweep share them."""

  train: NumpyBatch
  evaluation: NumpyBatch

  def make_source(self, config: ml_collections.ConfigDict) -> ArraySource:
    """One run's batches: ``config.batch_size`` over all processes, shuffled with ``config.seed``."""
    return ArraySource(self.train, self.evaluation, global_batch_size=config.batch_size,
                       process_batch_size=parallel.process_batch_size(config), seed=config.seed)


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Loads the training and evaluation splits of ``config.dataset``.

  Args:
    config: reads ``dataset``, ``image_size``; for ``synthetic`` also ``synthetic_train_size``,
      ``synthetic_eval_size``, ``synthetic_empty_fraction`` and ``data_seed``; for TFDS datasets
      ``train_split``, ``eval_split``, ``data_dir`` and ``manual_dir``. Nothing of one run
      (model, method, seed), so a sweep loads once.

  Raises:
    DatasetUnavailableError: if a TFDS dataset can be neither found nor prepared (the message
      names the offline flag), or TensorFlow is not installed (it names the ``tfds`` extra).
  """
  if datasets.check_dataset(config.dataset, DATASETS) == 'synthetic':
    def make(num_images, split_index):
      return synthetic.make_split(num_images, config.image_size, (config.data_seed, split_index),
                                  config.synthetic_empty_fraction)
    return Dataset(make(config.synthetic_train_size, 0), make(config.synthetic_eval_size, 1))
  tfds_data = datasets.import_tfds_loader('examples.unet_segmentation.tfds_data', config.dataset)
  return Dataset(*tfds_data.load(config))
