"""Trains any example: one run, or the sweep and report its config asks for.

  python -m examples.main \\
      --config=examples/image_classification/configs/demo.py --workdir=runs/demo

The config names its example (``config.example``). Any field can be overridden,
e.g. ``--config.dataset=cifar10 --config.data_dir=~/tensorflow_datasets`` or
``--config.parallel=pmap``.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # tf.data only; hide TensorFlow's start-up logs.

from examples.study import experiment
from examples.training import cli

cli.define_flags()

if __name__ == '__main__':
  cli.run(experiment.run)
