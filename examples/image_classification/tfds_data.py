"""``cifar10`` and ``patch_camelyon`` through tensorflow-datasets and ``tf.data``."""

from collections.abc import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from examples.datasets import tfds_builder
from examples.image_classification.preprocessing import Dataset
from examples.image_classification.preprocessing import augment
from examples.image_classification.preprocessing import channel_statistics
from examples.training import distributed
from examples.training import parallel
from examples.training.data import NumpyBatch
from examples.training.data import pad_batch
from examples.training.task import MASK


def _count(dataset: tf.data.Dataset) -> int:
  count = int(dataset.cardinality())
  if count < 0:  # Unknown for generated datasets (e.g. tfds.testing.mock_data): count once.
    count = int(dataset.reduce(0, lambda total, _: total + 1))
  return count


class TfdsSource:
  """Streams a tfds image classification dataset through ``tf.data``.

  Every epoch reads the files and shuffles the examples with a seed drawn
  from ``(seed, epoch)``, so a resumed run sees the same batches.

  Args:
    builder: the prepared tfds builder.
    global_batch_size: examples per training step over all processes.
    process_batch_size: this process's share (also the eval batch size).
    seed: seeds shuffling and augmentation.
    mean: per-channel mean of training images in [0, 1].
    std: per-channel standard deviation of training images in [0, 1].
    shuffle_buffer: examples held by the shuffle buffer.
    augment_images: whether to apply :func:`augment` to training batches.
    num_train: examples in ``train_split``.
    num_test: examples in ``test_split``.
    train_split: tfds split to train on.
    test_split: tfds split to evaluate on.
  """

  def __init__(self, builder: tfds.core.DatasetBuilder, *, global_batch_size: int,
               process_batch_size: int, seed: int, mean: np.ndarray, std: np.ndarray,
               shuffle_buffer: int, augment_images: bool, num_train: int, num_test: int,
               train_split: str = 'train', test_split: str = 'test'):
    self._builder = builder
    self._global_batch_size = global_batch_size
    self._process_batch_size = process_batch_size
    self._seed = seed
    self._mean = tf.constant(mean, tf.float32)
    self._std = tf.constant(std, tf.float32)
    self._shuffle_buffer = shuffle_buffer
    self._augment = augment_images
    self._train_split = train_split
    self._test_split = test_split
    self.num_train, self.num_test = num_train, num_test
    self.steps_per_epoch = self.num_train // global_batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(
          f'--config.batch_size={global_batch_size} is larger than the {self.num_train} '
          'training examples.'
      )

  def _normalize(self, example):
    image = (tf.cast(example['image'], tf.float32) / 255.0 - self._mean) / self._std
    return {'image': image, 'label': tf.cast(example['label'], tf.int32)}

  def _process_split(self, split: str, shuffle_seed: int | None) -> tf.data.Dataset:
    return self._builder.as_dataset(
        split=tfds.split_for_jax_process(split),
        shuffle_files=shuffle_seed is not None,
        read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed),
    ).map(self._normalize, num_parallel_calls=tf.data.AUTOTUNE)

  def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[NumpyBatch]:
    epoch_seed = int(np.random.SeedSequence([self._seed, epoch]).generate_state(1)[0])
    dataset = (
        self._process_split(self._train_split, epoch_seed)
        .shuffle(self._shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        .batch(self._process_batch_size, drop_remainder=True)
        .skip(start_step)
        .take(self.steps_per_epoch - start_step)  # The same number of steps in every process.
        .prefetch(tf.data.AUTOTUNE)
    )
    for step, batch in enumerate(tfds.as_numpy(dataset), start_step):
      if self._augment:
        batch = augment(batch, np.random.default_rng([self._seed, epoch, step]))
      batch[MASK] = np.ones(self._process_batch_size, np.float32)
      yield batch

  def eval_batches(self) -> Iterator[NumpyBatch]:
    size = self._process_batch_size
    dataset = self._process_split(self._test_split, None).batch(size).prefetch(tf.data.AUTOTUNE)
    yielded, empty = 0, None
    for batch in tfds.as_numpy(dataset):
      yield pad_batch(batch, size)
      yielded += 1
      empty = {key: value[:0] for key, value in batch.items()}
    # Processes with a smaller share still take part in every collective step.
    for _ in range(distributed.num_eval_batches(self.num_test, size) - yielded):
      yield pad_batch(empty, size)


def load(config: ml_collections.ConfigDict) -> Dataset:
  """``cifar10`` or ``patch_camelyon`` from ``config.data_dir`` (downloads with ``download``).

  Raises:
    DatasetUnavailableError: if the dataset is not prepared and may not be downloaded.
  """
  builder = tfds_builder.prepared_builder(config, 'To run offline, use --config.dataset=digits.')
  sample = builder.as_dataset(split='train').take(config.normalization_examples)
  images = np.stack([example['image'] for example in tfds.as_numpy(sample)]) / 255.0
  mean, std = channel_statistics(images)
  num_train, num_test = (_count(builder.as_dataset(split=split)) for split in ('train', 'test'))

  def make_source(run_config: ml_collections.ConfigDict) -> TfdsSource:
    return TfdsSource(
        builder, global_batch_size=run_config.batch_size,
        process_batch_size=parallel.process_batch_size(run_config), seed=run_config.seed,
        mean=mean, std=std, shuffle_buffer=run_config.shuffle_buffer,
        augment_images=run_config.augment, num_train=num_train, num_test=num_test,
    )

  features = builder.info.features
  return Dataset(features['label'].num_classes, tuple(features['image'].shape), num_train,
                 num_test, make_source)
