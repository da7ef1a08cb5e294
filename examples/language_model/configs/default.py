"""Defaults for every setting; the other configs start from these.

A 4-layer byte-level transformer on the Python standard library's source,
offline. With internet, ``--config.dataset=tiny_shakespeare
--config.download=True`` trains on tfds text instead. The study's settings
(model, method, learning rate, sweep) and the training core's (seed,
parallelism, logging, checkpoints) come from
:func:`examples.study.defaults.get_config`.
"""

import ml_collections
from ml_collections import config_dict

from examples.study import defaults
from examples.training.fields import Field


def get_config() -> ml_collections.ConfigDict:
  config = defaults.get_config()
  config.example = 'language_model'

  # Data: windows of context + 1 bytes.
  config.dataset = 'python_stdlib'  # 'python_stdlib' (offline) or 'tiny_shakespeare' (tfds).
  config.data_dir = config_dict.placeholder(str)  # tfds data directory; None: tfds's default.
  config.download = False  # Let tfds download and prepare the dataset.
  config.context = 128  # Bytes a model reads.
  config.train_bytes = 4_000_000  # Training text read.
  config.eval_bytes = 262_144  # Validation text read.

  # Model.
  config.model = 'small'  # tiny, small, deep, gpt2_small (see models.SIZES).
  config.dtype = 'float32'  # Compute dtype: 'float32' or 'bfloat16'; parameters stay float32.
  config.scan_layers = True  # Stack the blocks with nnx.scan; False unrolls them.

  # Optimization: linear warmup, then cosine decay to a tenth.
  config.learning_rate = 1e-3
  config.warmup_steps = 50
  config.batch_size = 32
  config.num_epochs = 1
  config.fixed_on_resume = ('num_epochs',)  # It sizes the cosine schedule.
  config.log_every_steps = 20
  return config


FIELDS = {
    'dataset': Field(str),  # Checked against the datasets by the example.
    'data_dir': Field(str, optional=True),
    'download': Field(bool),
    'context': Field(int, minimum=1),
    'train_bytes': Field(int, minimum=1),
    'eval_bytes': Field(int, minimum=1),
    'dtype': Field(str, choices=('float32', 'bfloat16')),
    'scan_layers': Field(bool),
    'warmup_steps': Field(int, minimum=0),
}
"""What each of the example's own fields accepts (:mod:`examples.training.fields`)."""
