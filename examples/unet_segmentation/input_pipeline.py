"""Loads a segmentation dataset as in-memory NumPy arrays.

Every dataset gives, per split, ``{'image': uint8 (N, S, S, 3), 'label': uint8 (N, S, S, 1)}``
with ``label`` in {0, 1} (1 = foreground) and ``S = config.image_size``. Images stay uint8 in
memory (the model input is scaled to [0, 1] on device), which keeps LGG MRI under 1 GB.

``--config.dataset``:

* ``synthetic`` (default, offline): `synthetic.make_split`, lesion-like blobs on textures.
* ``oxford_iiit_pet``: TFDS Oxford-IIIT Pet; the trimap becomes a binary mask of the pet (its
  body and its border) against the background. Downloaded by TFDS on first use.
* ``lgg_mri``: the Kaggle LGG MRI release through this example's TFDS builder
  (`examples.unet_segmentation.lgg_mri`), read from ``--config.manual_dir``.
"""

from collections.abc import Callable

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from examples.unet_segmentation import synthetic
from examples.unet_segmentation.lgg_mri import lgg_mri_dataset_builder

Arrays = dict[str, np.ndarray]
DATASETS = ('synthetic', 'oxford_iiit_pet', 'lgg_mri')
OFFLINE_FLAG = '--config.dataset=synthetic'


class DatasetUnavailableError(RuntimeError):
  """The dataset is neither prepared nor obtainable (no internet, no manual download)."""


# Oxford-IIIT Pet trimap values: 1 pet, 2 background, 3 pet border.
_PET_FOREGROUND = (1, 3)


def _resize(example: dict, image_size: int) -> dict:
  """Bilinear resize of the image, nearest of the label (which must stay binary)."""
  size = (image_size, image_size)
  image = tf.image.resize(example['image'], size, method='bilinear')
  label = tf.image.resize(example['label'], size, method='nearest')
  return {'image': tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8),
          'label': tf.cast(label, tf.uint8)}


def _pet_example(example: dict) -> dict:
  trimap = example['segmentation_mask']
  foreground = tf.reduce_any(tf.stack([trimap == v for v in _PET_FOREGROUND]), axis=0)
  return {'image': example['image'], 'label': tf.cast(foreground, tf.uint8)}


def _lgg_example(example: dict) -> dict:
  return {'image': example['image'], 'label': example['mask']}


_TFDS_CONVERTERS: dict[str, Callable[[dict], dict]] = {
    'oxford_iiit_pet': _pet_example,
    lgg_mri_dataset_builder.Builder.name: _lgg_example,  # The import registers it with TFDS.
}


def _prepare_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The TFDS builder of ``config.dataset``, downloaded and prepared if needed."""
  builder = tfds.builder(config.dataset, data_dir=config.data_dir or None)
  download_config = tfds.download.DownloadConfig(manual_dir=config.manual_dir or None)
  try:
    builder.download_and_prepare(download_config=download_config)
  except Exception as error:  # Any failure here means the data is not available.
    hint = ('--config.manual_dir must point at the unzipped Kaggle release; see the builder '
            'instructions below.\n' if config.dataset == 'lgg_mri' else
            'TFDS downloads it on first use, which needs internet access.\n')
    raise DatasetUnavailableError(
        f'Dataset {config.dataset!r} is not available in {builder.data_dir}: {hint}'
        f'To run offline, use {OFFLINE_FLAG}.\nCause: {type(error).__name__}: {error}'
    ) from error
  return builder


def _load_tfds_split(builder: tfds.core.DatasetBuilder, split: str, image_size: int) -> Arrays:
  convert = _TFDS_CONVERTERS[builder.name]
  dataset = builder.as_dataset(split=split).map(
      lambda example: _resize(convert(example), image_size), num_parallel_calls=tf.data.AUTOTUNE)
  batches = list(tfds.as_numpy(dataset.batch(256)))
  if not batches:
    raise ValueError(f'Split {split!r} of {builder.name} is empty.')
  return {key: np.concatenate([batch[key] for batch in batches]) for key in ('image', 'label')}


def check_dataset(name: str) -> None:
  """Raises ``ValueError`` naming the flag if ``name`` is not one of `DATASETS`."""
  if name not in DATASETS:
    raise ValueError(f'Unknown --config.dataset={name!r}; valid values are: {", ".join(DATASETS)}.')


def load(config: ml_collections.ConfigDict) -> tuple[Arrays, Arrays]:
  """Loads the training and evaluation splits of ``config.dataset``.

  Args:
    config: Reads ``dataset``, ``image_size``; for ``synthetic`` also ``synthetic_train_size``,
      ``synthetic_eval_size``, ``synthetic_empty_fraction`` and ``data_seed``; for TFDS datasets
      ``train_split``, ``eval_split``, ``data_dir`` and ``manual_dir``.

  Returns:
    ``(train, evaluation)`` arrays.

  Raises:
    DatasetUnavailableError: if a TFDS dataset can be neither found nor prepared; the message
      names the offline flag.
  """
  if config.dataset == 'synthetic':
    def make(num_images, split_index):
      return synthetic.make_split(num_images, config.image_size, (config.data_seed, split_index),
                                  config.synthetic_empty_fraction)
    return make(config.synthetic_train_size, 0), make(config.synthetic_eval_size, 1)
  check_dataset(config.dataset)
  builder = _prepare_builder(config)
  return (_load_tfds_split(builder, config.train_split, config.image_size),
          _load_tfds_split(builder, config.eval_split, config.image_size))
