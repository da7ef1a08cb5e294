"""Image classification data: tfds ``cifar10`` / ``patch_camelyon``, or offline ``digits``.

Images become float32 ``[H, W, C]`` normalized per channel with the mean and
standard deviation of training images. Augmentation (random 4-pixel-padded
crop and horizontal flip) is optional and off by default, as in the paper.
Each process reads its own share of every split (``jax.process_index()``).
"""

import dataclasses
from collections.abc import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn import datasets as sklearn_datasets
from sklearn import model_selection

from examples.training import distributed
from examples.training.data import ArraySource
from examples.training.data import NumpyBatch
from examples.training.data import pad_batch
from examples.training.task import MASK

TFDS_DATASETS = ('cifar10', 'patch_camelyon')
DATASETS = ('digits',) + TFDS_DATASETS
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_MAX_VALUE = 16.0  # load_digits pixels are counts in [0, 16].
_CROP_PADDING = 4


class DatasetUnavailableError(RuntimeError):
  """A tfds dataset is neither prepared in ``data_dir`` nor allowed to download."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A data source plus what the model needs to know about the images."""

  source: 'ArraySource | TfdsSource'
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_test: int


def check_dataset(name: str) -> str:
  """Returns ``name`` if it is a known dataset, else raises ``ValueError``."""
  if name not in DATASETS:
    raise ValueError(f'Unknown --config.dataset={name!r}; valid datasets are: {", ".join(DATASETS)}.')
  return name


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


def _normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  return ((images - mean) / std).astype(np.float32)


def load_digits(config: ml_collections.ConfigDict, process_batch_size: int) -> Dataset:
  """scikit-learn's 8x8 handwritten digits, upsampled to ``image_size``, split 80/20.

  Real data that ships with scikit-learn, so it needs no network. The 8x8
  images are scaled up by pixel repetition and zero-padded to
  ``config.image_size`` so the ResNet's two stride-2 stages have room.
  """
  digits = sklearn_datasets.load_digits()
  scale = config.image_size // 8
  if scale < 1:
    raise ValueError(f'--config.image_size={config.image_size} must be at least 8 for digits.')
  images = digits.images.repeat(scale, axis=1).repeat(scale, axis=2) / _DIGITS_MAX_VALUE
  margin = config.image_size - 8 * scale
  before, after = margin // 2, margin - margin // 2
  images = np.pad(images, ((0, 0), (before, after), (before, after)))[..., None]
  train_x, test_x, train_y, test_y = model_selection.train_test_split(
      images, digits.target, test_size=_DIGITS_TEST_FRACTION, random_state=0, stratify=digits.target
  )
  mean, std = channel_statistics(train_x)
  source = ArraySource(
      {'image': _normalize(train_x, mean, std), 'label': train_y.astype(np.int32)},
      {'image': _normalize(test_x, mean, std), 'label': test_y.astype(np.int32)},
      global_batch_size=config.batch_size,
      process_batch_size=process_batch_size,
      seed=config.seed,
      train_transform=augment if config.augment else None,
  )
  return Dataset(source, 10, train_x.shape[1:], len(train_x), len(test_x))


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
    train_split: tfds split to train on.
    test_split: tfds split to evaluate on.
  """

  def __init__(self, builder: tfds.core.DatasetBuilder, *, global_batch_size: int,
               process_batch_size: int, seed: int, mean: np.ndarray, std: np.ndarray,
               shuffle_buffer: int, augment_images: bool, train_split: str = 'train',
               test_split: str = 'test'):
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
    self.num_train = _count(builder.as_dataset(split=train_split))
    self.num_test = _count(builder.as_dataset(split=test_split))
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


def _prepared_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  builder = tfds.builder(config.dataset, data_dir=config.data_dir)
  if config.download:
    try:
      builder.download_and_prepare()
    except Exception as error:  # Network and disk failures come in many types.
      raise DatasetUnavailableError(
          f'Could not download {config.dataset!r}: {error}\n'
          'To run offline, use --config.dataset=digits.'
      ) from error
  try:
    builder.as_dataset(split='train')
  except AssertionError as error:  # tfds's "could not find data" error.
    data_dir = config.data_dir or builder.data_dir_root
    raise DatasetUnavailableError(
        f'Dataset {config.dataset!r} is not prepared in {data_dir}. With internet access,\n'
        f'  tfds build {config.dataset} --data_dir={data_dir}\n'
        'downloads and prepares it once (or rerun with --config.download=True).\n'
        'To run offline, use --config.dataset=digits.'
    ) from error
  return builder


def load_tfds(config: ml_collections.ConfigDict, process_batch_size: int) -> Dataset:
  """``cifar10`` or ``patch_camelyon`` from ``config.data_dir`` (downloads with ``download``).

  Raises:
    DatasetUnavailableError: if the dataset is not prepared and may not be downloaded.
  """
  builder = _prepared_builder(config)
  sample = builder.as_dataset(split='train').take(config.normalization_examples)
  images = np.stack([example['image'] for example in tfds.as_numpy(sample)]) / 255.0
  mean, std = channel_statistics(images)
  source = TfdsSource(
      builder, global_batch_size=config.batch_size, process_batch_size=process_batch_size,
      seed=config.seed, mean=mean, std=std, shuffle_buffer=config.shuffle_buffer,
      augment_images=config.augment,
  )
  features = builder.info.features
  return Dataset(source, features['label'].num_classes, tuple(features['image'].shape),
                 source.num_train, source.num_test)


def load(config: ml_collections.ConfigDict, process_batch_size: int) -> Dataset:
  """The dataset named by ``config.dataset``, as this process's source of batches."""
  if check_dataset(config.dataset) == 'digits':
    return load_digits(config, process_batch_size)
  return load_tfds(config, process_batch_size)
