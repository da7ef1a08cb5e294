"""A tfds dataset's builder, downloaded if allowed, or one clear error that says how to get it.

Imports TensorFlow Datasets: import it from an example's ``tfds_data.py`` only.
"""

import ml_collections
import tensorflow_datasets as tfds

from examples.training.datasets import DatasetUnavailableError


def prepared_builder(config: ml_collections.ConfigDict,
                     offline_hint: str) -> tfds.core.DatasetBuilder:
  """The builder of ``config.dataset`` in ``config.data_dir``, prepared.

  With ``config.download``, it downloads and prepares the dataset first.

  Args:
    config: reads ``dataset``, ``data_dir`` and ``download``.
    offline_hint: the error's last line, e.g. ``'To run offline, use --config.dataset=digits.'``.

  Raises:
    DatasetUnavailableError: if the download fails, or the dataset is not prepared.
  """
  builder = tfds.builder(config.dataset, data_dir=config.data_dir)
  if config.download:
    try:
      builder.download_and_prepare()
    except Exception as error:  # Network and disk failures come in many types.
      raise DatasetUnavailableError(
          f'Could not download {config.dataset!r}: {error}\n{offline_hint}') from error
  try:
    builder.as_dataset(split='train')
  except AssertionError as error:  # tfds's "could not find data" error.
    data_dir = config.data_dir or builder.data_dir_root
    raise DatasetUnavailableError(
        f'Dataset {config.dataset!r} is not prepared in {data_dir}. With internet access,\n'
        f'  tfds build {config.dataset} --data_dir={data_dir}\n'
        'downloads and prepares it once (or rerun with --config.download=True).\n'
        f'{offline_hint}'
    ) from error
  return builder
