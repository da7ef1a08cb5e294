"""An in-memory :class:`~examples.training.task.DataSource` and batch padding."""

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping

import numpy as np

from examples.training import distributed
from examples.training.task import MASK

NumpyBatch = dict[str, np.ndarray]


def pad_batch(batch: Mapping[str, np.ndarray], size: int) -> NumpyBatch:
  """Pads a batch with zeros to ``size`` rows and adds ``'mask'`` (1 real, 0 padding)."""
  real = len(next(iter(batch.values())))
  padded = {
      key: np.concatenate([value, np.zeros((size - real,) + value.shape[1:], value.dtype)])
      for key, value in batch.items()
  }
  padded[MASK] = (np.arange(size) < real).astype(np.float32)
  return padded


class ArraySource:
  """Serves batches from NumPy arrays held in memory.

  Each epoch is a fresh permutation drawn from ``(seed, epoch)``, cut into
  global batches (the remainder is dropped); each process takes its rows of
  every global batch, so the global batch does not depend on the process count.

  Args:
    train: training arrays, all with the same leading size.
    evaluation: evaluation arrays, all with the same leading size.
    global_batch_size: examples per training step, over all processes.
    process_batch_size: this process's share of it (also the eval batch size).
    seed: seeds the shuffle and ``train_transform``.
    train_transform: optional ``(batch, numpy_generator) -> batch`` applied to
      training batches (augmentation); its generator depends on seed, epoch and
      step, so resuming reproduces it.
  """

  def __init__(
      self,
      train: Mapping[str, np.ndarray],
      evaluation: Mapping[str, np.ndarray],
      *,
      global_batch_size: int,
      process_batch_size: int,
      seed: int,
      train_transform: Callable[[NumpyBatch, np.random.Generator], NumpyBatch] | None = None,
  ):
    self._train = dict(train)
    self._evaluation = dict(evaluation)
    self._global_batch_size = global_batch_size
    self._process_batch_size = process_batch_size
    self._seed = seed
    self._train_transform = train_transform
    num_train = len(next(iter(self._train.values())))
    self.steps_per_epoch = num_train // global_batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(
          f'--config.batch_size={global_batch_size} is larger than the {num_train} '
          'training examples.'
      )

  def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[NumpyBatch]:
    num_train = len(next(iter(self._train.values())))
    order = np.random.default_rng([self._seed, epoch]).permutation(num_train)
    rows = distributed.process_slice(self._global_batch_size)
    for step in range(start_step, self.steps_per_epoch):
      start = step * self._global_batch_size
      indices = order[start : start + self._global_batch_size][rows]
      batch = {key: value[indices] for key, value in self._train.items()}
      if self._train_transform is not None:
        batch = self._train_transform(batch, np.random.default_rng([self._seed, epoch, step]))
      batch[MASK] = np.ones(len(indices), np.float32)
      yield batch

  def eval_batches(self) -> Iterator[NumpyBatch]:
    num_eval = len(next(iter(self._evaluation.values())))
    mine = distributed.process_range(num_eval)
    size = self._process_batch_size
    for b in range(distributed.num_eval_batches(num_eval, size)):
      indices = np.asarray(mine[b * size : (b + 1) * size], dtype=np.int64)
      yield pad_batch({key: value[indices] for key, value in self._evaluation.items()}, size)

