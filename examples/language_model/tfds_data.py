"""tfds text datasets (``tiny_shakespeare``) as bytes; imported only when one is chosen."""

import ml_collections
import tensorflow_datasets as tfds

from examples.language_model.input_pipeline import DOCUMENT_SEPARATOR
from examples.training.datasets import DatasetUnavailableError

TEXT_FEATURE = 'text'
_OFFLINE_HINT = 'To run offline, use --config.dataset=python_stdlib.'


def _builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  builder = tfds.builder(config.dataset, data_dir=config.data_dir)
  if config.download:
    try:
      builder.download_and_prepare()
    except Exception as error:  # Network and disk failures come in many types.
      raise DatasetUnavailableError(
          f'Could not download {config.dataset!r}: {error}\n{_OFFLINE_HINT}') from error
  return builder


def _split_text(builder: tfds.core.DatasetBuilder, split: str) -> bytes:
  texts = [example[TEXT_FEATURE] for example in tfds.as_numpy(builder.as_dataset(split=split))]
  return DOCUMENT_SEPARATOR.join(texts)


def load_text(config: ml_collections.ConfigDict) -> tuple[bytes, bytes]:
  """The ``train`` and ``validation`` text of ``config.dataset``, as bytes.

  Raises:
    DatasetUnavailableError: if the dataset is not prepared in
      ``config.data_dir`` and ``config.download`` is off, or the download fails.
  """
  builder = _builder(config)
  try:
    return _split_text(builder, 'train'), _split_text(builder, 'validation')
  except AssertionError as error:  # tfds's "could not find data" error.
    data_dir = config.data_dir or builder.data_dir_root
    raise DatasetUnavailableError(
        f'Dataset {config.dataset!r} is not prepared in {data_dir}; rerun with '
        f'--config.download=True (needs internet) or prepare it with '
        f'`tfds build {config.dataset} --data_dir={data_dir}`.\n{_OFFLINE_HINT}') from error
