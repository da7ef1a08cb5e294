"""tfds text datasets (``tiny_shakespeare``) as bytes; imported only when one is chosen."""

import ml_collections
import tensorflow_datasets as tfds

from examples.datasets import tfds_builder
from examples.language_model.input_pipeline import DOCUMENT_SEPARATOR

TEXT_FEATURE = 'text'


def _split_text(builder: tfds.core.DatasetBuilder, split: str) -> bytes:
  texts = [example[TEXT_FEATURE] for example in tfds.as_numpy(builder.as_dataset(split=split))]
  return DOCUMENT_SEPARATOR.join(texts)


def load_text(config: ml_collections.ConfigDict) -> tuple[bytes, bytes]:
  """The ``train`` and ``validation`` text of ``config.dataset``, as bytes.

  Raises:
    DatasetUnavailableError: if the dataset is not prepared in
      ``config.data_dir`` and ``config.download`` is off, or the download fails.
  """
  builder = tfds_builder.prepared_builder(
      config, 'To run offline, use --config.dataset=python_stdlib.')
  return _split_text(builder, 'train'), _split_text(builder, 'validation')
