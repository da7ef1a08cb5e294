"""TFDS datasets (oxford_iiit_pet, lgg_mri) as in-memory arrays; see ``input_pipeline``."""

from collections.abc import Callable

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from examples.training.data import NumpyBatch
from examples.training.datasets import DatasetUnavailableError
from examples.unet_segmentation.lgg_mri import lgg_mri_dataset_builder

# Oxford-IIIT Pet trimap values: 1 pet, 2 background, 3 pet border.
_PET_FOREGROUND = (1, 3)


def _resize(example: dict, image_size: int) -> dict:
  """Bilinear resize of the image, nearest of the label (which must stay binary)."""
  size = (image_size, image_size)
  image = tf.image.resize(example['image'], size, method='bilinear')
  label = tf.image.resize(example['label'], size, method='nearest')
  return {'image': tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8),
          'label': tf.cast(label, tf.uint8)}


def pet_example(example: dict) -> dict:
  """Oxford-IIIT Pet example -> image and binary label (pet and its border = 1)."""
  trimap = example['segmentation_mask']
  foreground = tf.reduce_any(tf.stack([trimap == v for v in _PET_FOREGROUND]), axis=0)
  return {'image': example['image'], 'label': tf.cast(foreground, tf.uint8)}


def _lgg_example(example: dict) -> dict:
  return {'image': example['image'], 'label': example['mask']}


_TFDS_CONVERTERS: dict[str, Callable[[dict], dict]] = {
    'oxford_iiit_pet': pet_example,
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
        f'To run offline, use --config.dataset=synthetic.\nCause: {type(error).__name__}: {error}'
    ) from error
  return builder


def _load_tfds_split(builder: tfds.core.DatasetBuilder, split: str, image_size: int) -> NumpyBatch:
  convert = _TFDS_CONVERTERS[builder.name]
  dataset = builder.as_dataset(split=split).map(
      lambda example: _resize(convert(example), image_size), num_parallel_calls=tf.data.AUTOTUNE)
  batches = list(tfds.as_numpy(dataset.batch(256)))
  if not batches:
    raise ValueError(f'Split {split!r} of {builder.name} is empty.')
  return {key: np.concatenate([batch[key] for batch in batches]) for key in ('image', 'label')}


def load(config: ml_collections.ConfigDict) -> tuple[NumpyBatch, NumpyBatch]:
  """The ``config.train_split`` and ``config.eval_split`` of TFDS dataset ``config.dataset``."""
  builder = _prepare_builder(config)
  return (_load_tfds_split(builder, config.train_split, config.image_size),
          _load_tfds_split(builder, config.eval_split, config.image_size))
