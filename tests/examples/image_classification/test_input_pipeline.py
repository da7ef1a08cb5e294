"""Datasets: tfds (mocked) smoke runs, the offline error, digits preprocessing."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from examples.image_classification import input_pipeline
from examples.image_classification import preprocessing
from examples.image_classification.example import EXAMPLE
from examples.study import experiment
from examples.training import datasets


@pytest.mark.parametrize('dataset, image_shape, num_classes',
                         [('cifar10', (32, 32, 3), 10), ('patch_camelyon', (96, 96, 3), 2)])
def test_tfds_smoke_run(config, tmp_path, dataset, image_shape, num_classes):
  config.dataset = dataset
  config.data_dir = str(tmp_path / 'tfds')
  config.batch_size = 16
  config.num_epochs = 1
  config.normalization_examples = 8
  with tfds.testing.mock_data(num_examples=40):
    loaded = input_pipeline.load(config)
    assert (loaded.image_shape, loaded.num_classes) == (image_shape, num_classes)
    assert loaded.make_source(config).steps_per_epoch == 2
    batch = next(iter(loaded.make_source(config).train_batches(0)))
    assert batch['image'].shape == (16,) + image_shape and batch['image'].dtype == np.float32
    history = experiment.train_and_evaluate(EXAMPLE, config, str(tmp_path / 'run'))
  assert len(history) == 1 and np.isfinite(history[0]['train_loss'])
  assert 0.0 <= history[0]['test_accuracy'] <= 1.0


def test_tfds_eval_batches_cover_test_split_once(config, tmp_path):
  config.dataset, config.data_dir = 'cifar10', str(tmp_path)
  config.normalization_examples = 4
  config.batch_size = 8
  with tfds.testing.mock_data(num_examples=21):
    source = input_pipeline.load(config).make_source(config)
    batches = list(source.eval_batches())
  assert [b['mask'].sum() for b in batches] == [8, 8, 5]
  np.testing.assert_array_equal(batches[-1]['image'][5:], 0.0)


def test_missing_dataset_says_how_to_get_it(config, tmp_path):
  config.dataset, config.data_dir = 'cifar10', str(tmp_path)
  with pytest.raises(datasets.DatasetUnavailableError) as error:
    input_pipeline.load(config)
  message = str(error.value)
  assert f'tfds build cifar10 --data_dir={tmp_path}' in message
  assert '--config.dataset=digits' in message and '--config.download=True' in message


def test_digits_are_normalized_per_channel(config):
  config.image_size = 16
  config.batch_size = 1437  # The whole training split in one batch.
  config.parallel = 'none'  # 1437 does not split over 8 devices.
  loaded = input_pipeline.load(config)
  images = next(iter(loaded.make_source(config).train_batches(0)))['image']
  assert images.shape == (1437, 16, 16, 1) and loaded.num_test == 360
  np.testing.assert_allclose(images.mean(), 0.0, atol=1e-5)
  np.testing.assert_allclose(images.std(), 1.0, atol=1e-4)


def test_channel_statistics_match_numpy():
  images = np.random.default_rng(0).integers(0, 255, size=(5, 4, 3, 2)).astype(np.uint8)
  mean, std = preprocessing.channel_statistics(images)
  for c in range(2):
    np.testing.assert_allclose(mean[c], np.mean(images[..., c].astype(np.float64)))
    np.testing.assert_allclose(std[c], np.std(images[..., c].astype(np.float64)))


def test_augment_crops_and_flips_deterministically():
  image = np.arange(2 * 8 * 8 * 1, dtype=np.float32).reshape(2, 8, 8, 1)
  batch = {'image': image, 'label': np.array([0, 1])}
  first = preprocessing.augment(batch, np.random.default_rng(3))
  again = preprocessing.augment(batch, np.random.default_rng(3))
  np.testing.assert_array_equal(first['image'], again['image'])
  assert first['image'].shape == image.shape
  assert not np.array_equal(first['image'], image)
  np.testing.assert_array_equal(first['label'], batch['label'])
