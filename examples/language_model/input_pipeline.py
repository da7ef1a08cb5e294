"""Text as bytes: the Python standard library's own source (offline) or tfds ``tiny_shakespeare``.

Every machine with Python has its standard library's ``.py`` files, so the
default dataset needs no download. Files go to validation or training by a
hash of their path relative to the library, so the split is the same on every
machine with the same Python version (it is part of the dataset's
description). The text is cut into non-overlapping windows of
``config.context + 1`` bytes: a model reads the first ``context`` and predicts
the last ``context``.
"""

import dataclasses
import random
import sys
import sysconfig
import zlib
from pathlib import Path

import ml_collections
import numpy as np

from examples.training import datasets
from examples.training import parallel
from examples.training.data import ArraySource

TFDS_DATASETS = ('tiny_shakespeare',)
DATASETS = ('python_stdlib',) + TFDS_DATASETS
DOCUMENT_SEPARATOR = b'\0'  # Between files; no source file contains it.
_VALIDATION_BUCKETS = 10  # One file in ten (by path hash) is validation text.
_NOT_STANDARD_LIBRARY = ('site-packages', 'dist-packages', '__pycache__')


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Byte windows ``uint8 [N, context + 1]`` of training and validation text."""

  train: np.ndarray
  evaluation: np.ndarray
  description: str
  """Where the text comes from, e.g. ``'Python 3.11.2 standard library'``."""

  def make_source(self, config: ml_collections.ConfigDict) -> ArraySource:
    """One run's batches of ``{'tokens': uint8 [B, context + 1]}``, shuffled with ``config.seed``."""
    return ArraySource({'tokens': self.train}, {'tokens': self.evaluation},
                       global_batch_size=config.batch_size,
                       process_batch_size=parallel.process_batch_size(config), seed=config.seed)


def windows(text: bytes, context: int, max_bytes: int) -> np.ndarray:
  """Non-overlapping windows of ``context + 1`` bytes from the first ``max_bytes`` of ``text``."""
  data = np.frombuffer(text[:max_bytes], np.uint8)
  count = len(data) // (context + 1)
  return data[:count * (context + 1)].reshape(count, context + 1)


def standard_library_files(root: str | Path | None = None) -> list[Path]:
  """The ``.py`` files of the standard library at ``root`` (this Python's by default), sorted."""
  root = Path(root or sysconfig.get_paths()['stdlib'])
  return sorted(path for path in root.rglob('*.py')
                if not set(path.relative_to(root).parts) & set(_NOT_STANDARD_LIBRARY))


def is_validation(relative_path: str) -> bool:
  """Whether a file (path relative to the library, ``/``-separated) is validation text."""
  return zlib.crc32(relative_path.encode()) % _VALIDATION_BUCKETS == 0


def read_text(files: list[Path], root: Path, max_bytes: int) -> tuple[bytes, bytes]:
  """Training and validation text: files in a fixed shuffled order, until each has ``max_bytes``.

  The order (``random.Random(0)``) does not depend on the run's seed, so
  every run of a sweep reads the same text, spread over the whole library.
  """
  order = list(files)
  random.Random(0).shuffle(order)
  parts: dict[bool, list[bytes]] = {False: [], True: []}
  sizes = {False: 0, True: 0}
  for path in order:
    split = is_validation(path.relative_to(root).as_posix())
    if sizes[split] >= max_bytes:
      if all(size >= max_bytes for size in sizes.values()):
        break
      continue
    content = path.read_bytes() + DOCUMENT_SEPARATOR
    parts[split].append(content)
    sizes[split] += len(content)
  return b''.join(parts[False]), b''.join(parts[True])


def load_python_stdlib(config: ml_collections.ConfigDict) -> Dataset:
  """This Python's standard library source: ``config.train_bytes`` and ``config.eval_bytes``."""
  root = Path(sysconfig.get_paths()['stdlib'])
  files = standard_library_files(root)
  if not files:
    raise datasets.DatasetUnavailableError(f'No standard library source files under {root}.')
  train, evaluation = read_text(files, root, max(config.train_bytes, config.eval_bytes))
  version = '.'.join(map(str, sys.version_info[:3]))
  return Dataset(windows(train, config.context, config.train_bytes),
                 windows(evaluation, config.context, config.eval_bytes),
                 f'Python {version} standard library')


def load(config: ml_collections.ConfigDict) -> Dataset:
  """The dataset named by ``config.dataset``; a sweep loads it once for all its runs.

  Raises:
    DatasetUnavailableError: if a tfds dataset is not prepared and may not be
      downloaded, or TensorFlow is not installed.
    ValueError: naming ``--config.batch_size`` if the text has fewer
      training windows than one batch.
  """
  if datasets.check_dataset(config.dataset, DATASETS) == 'python_stdlib':
    dataset = load_python_stdlib(config)
  else:
    tfds_data = datasets.import_tfds_loader('examples.language_model.tfds_data', config.dataset)
    train, evaluation = tfds_data.load_text(config)
    dataset = Dataset(windows(train, config.context, config.train_bytes),
                      windows(evaluation, config.context, config.eval_bytes),
                      f'tfds {config.dataset}')
  if len(dataset.train) < config.batch_size or not len(dataset.evaluation):
    raise ValueError(
        f'--config.batch_size={config.batch_size}: {dataset.description} gives only '
        f'{len(dataset.train)} training and {len(dataset.evaluation)} validation windows of '
        f'{config.context + 1} bytes (--config.train_bytes, --config.eval_bytes).')
  return dataset
