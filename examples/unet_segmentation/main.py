"""Trains and evaluates the U-Net segmentation sweep (the paper's Table 3).

  python -m examples.unet_segmentation.main \\
      --config=examples/unet_segmentation/configs/demo.py --workdir=runs/unet_demo

Any config field can be overridden, e.g. ``--config.dataset=lgg_mri
--config.manual_dir=/data/lgg`` or ``--config.parallel=pmap``.
"""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # tf.data only; hide TensorFlow's start-up logs.

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from examples.training import distributed
from examples.unet_segmentation import input_pipeline
from examples.unet_segmentation import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for results, checkpoints and logs.')
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint step at INFO.
  config = FLAGS.config
  try:
    distributed.initialize(config.coordinator_address, config.num_processes, config.process_id)
    train.validate_config(config)
    train.train_and_evaluate(config, FLAGS.workdir)
  except (ValueError, input_pipeline.DatasetUnavailableError) as error:
    sys.exit(f'error: {error}')
  if jax.process_index() == 0:
    with open(os.path.join(FLAGS.workdir, 'table.md')) as f:
      print(f.read())
    print(f'Report, curves and prediction grids in {FLAGS.workdir}')


if __name__ == '__main__':
  app.run(main)
