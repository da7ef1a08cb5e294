"""Trains a ResNet classifier, or runs the paper's sweep when ``config.sweep.methods`` is set.

  python -m examples.resnet_classification.main \\
      --config=examples/resnet_classification/configs/demo.py --workdir=runs/demo
"""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # tf.data only; hide TensorFlow's start-up logs.

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from examples.resnet_classification import input_pipeline
from examples.resnet_classification import train
from examples.training import distributed

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and sweep results.')
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
    if config.compilation_cache:
      # Sweep runs of one method compile identical steps; later runs load them from disk.
      jax.config.update('jax_compilation_cache_dir', os.path.join(FLAGS.workdir, 'jax_cache'))
    if config.sweep.methods:
      table, plot_path = train.run_sweep(config, FLAGS.workdir)
      if jax.process_index() == 0:
        print(table)
        print(f'Curves: {plot_path}')
    else:
      train.train_and_evaluate(config, FLAGS.workdir)
  except (ValueError, input_pipeline.DatasetUnavailableError) as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  app.run(main)
