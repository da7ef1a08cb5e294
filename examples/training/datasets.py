"""Dataset names an example accepts, and one clean error for data that cannot be read.

:func:`examples.training.cli.run` prints :class:`DatasetUnavailableError` as one
line, so an example's loaders raise it and its ``main.py`` handles nothing.
"""

import importlib
import types
from collections.abc import Sequence

TFDS_MODULES = ('tensorflow', 'tensorflow_datasets')
"""The top-level modules of the ``tfds`` extra."""


class DatasetUnavailableError(RuntimeError):
  """The dataset is neither prepared nor obtainable here (no download, no TensorFlow)."""


def check_dataset(name: str, known: Sequence[str]) -> str:
  """Returns ``name`` if it is one of ``known``; else raises ``ValueError`` naming the flag."""
  if name not in known:
    raise ValueError(f'Unknown --config.dataset={name!r}; valid datasets are: {", ".join(known)}.')
  return name


def import_tfds_loader(module: str, dataset: str) -> types.ModuleType:
  """Imports an example's TensorFlow-based loader ``module`` for ``--config.dataset``.

  Loaders are imported only when a tfds dataset is chosen, so that the offline
  datasets need no TensorFlow.

  Raises:
    DatasetUnavailableError: naming the ``tfds`` extra, if TensorFlow or
      tensorflow-datasets is not installed.
  """
  try:
    return importlib.import_module(module)
  except ModuleNotFoundError as error:
    if (error.name or '').partition('.')[0] not in TFDS_MODULES:
      raise
    raise DatasetUnavailableError(
        f'--config.dataset={dataset} needs TensorFlow and tensorflow-datasets '
        f"({error.name} is not installed): pip install 'znorm-optax[tfds]'"
    ) from error
