"""Synthetic data, the oxford_iiit_pet path under tfds mock data, and missing-data errors."""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from examples.training import datasets
from examples.unet_segmentation import input_pipeline
from examples.unet_segmentation import synthetic
from examples.unet_segmentation import tfds_data


def _config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict({
      'dataset': 'synthetic', 'image_size': 32, 'data_dir': '', 'manual_dir': '',
      'train_split': 'train', 'eval_split': 'test', 'data_seed': 0, 'synthetic_train_size': 40,
      'synthetic_eval_size': 8, 'synthetic_empty_fraction': 0.3})
  config.update(overrides)
  return config


def test_synthetic_is_deterministic_and_varied():
  first = synthetic.make_split(200, 32, seed=(3, 0))
  np.testing.assert_array_equal(first['image'], synthetic.make_split(200, 32, (3, 0))['image'])
  assert not np.array_equal(first['image'][:5], synthetic.make_split(5, 32, (3, 1))['image'])
  images, labels = first['image'], first['label']
  assert images.dtype == labels.dtype == np.uint8
  assert images.shape == (200, 32, 32, 3) and labels.shape == (200, 32, 32, 1)
  assert set(np.unique(labels)) == {0, 1}
  areas = labels.reshape(200, -1).sum(axis=1)
  assert 0.2 < np.mean(areas == 0) < 0.4  # Empty slices, as configured (0.3).
  lesion_areas = areas[areas > 0]
  assert lesion_areas.min() < 0.3 * lesion_areas.max()  # Small and large lesions.
  # Lesions are brighter than the tissue around them, by varying contrast.
  contrasts = [images[i][labels[i, ..., 0] > 0].mean() - images[i][labels[i, ..., 0] == 0].mean()
               for i in np.flatnonzero(areas > 0)]
  assert min(contrasts) > 0 and np.std(contrasts) > 3


def test_load_synthetic_splits():
  dataset = input_pipeline.load(_config())
  train, evaluation = dataset.train, dataset.evaluation
  assert train['image'].shape == (40, 32, 32, 3) and evaluation['label'].shape == (8, 32, 32, 1)
  assert not np.array_equal(train['image'][:8], evaluation['image'])


def test_pet_trimap_becomes_foreground_mask():
  trimap = tf.constant([[1, 2], [3, 2]], tf.uint8)[..., None]
  example = tfds_data.pet_example({'image': tf.zeros((2, 2, 3), tf.uint8),
                                         'segmentation_mask': trimap})
  np.testing.assert_array_equal(example['label'][..., 0], [[1, 0], [1, 0]])


def test_oxford_iiit_pet_under_tfds_mock_data():
  with tfds.testing.mock_data(num_examples=6):
    dataset = input_pipeline.load(_config(dataset='oxford_iiit_pet', image_size=24))
  for split in (dataset.train, dataset.evaluation):
    assert split['image'].shape == (6, 24, 24, 3) and split['image'].dtype == np.uint8
    assert split['label'].shape == (6, 24, 24, 1) and set(np.unique(split['label'])) <= {0, 1}


def test_missing_lgg_mri_names_the_offline_flag(tmp_path):
  config = _config(dataset='lgg_mri', data_dir=str(tmp_path / 'tfds'),
                   manual_dir=str(tmp_path / 'nothing_here'))
  with pytest.raises(datasets.DatasetUnavailableError,
                     match=r'(?s)--config.manual_dir.*--config.dataset=synthetic'):
    input_pipeline.load(config)


def test_unknown_dataset_names_the_flag():
  with pytest.raises(ValueError, match='--config.dataset'):
    input_pipeline.load(_config(dataset='cityscapes'))
