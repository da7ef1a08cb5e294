"""Trains any example: one run, or the sweep and report its config asks for.

  python -m examples.main \\
      --config=examples/image_classification/configs/demo.py --workdir=runs/demo

The config names its example (``config.example``). Any field can be overridden,
e.g. ``--config.dataset=cifar10 --config.data_dir=~/tensorflow_datasets`` or
``--config.parallel=pmap``.
"""

from examples.training import stop_signals

if __name__ == '__main__':
  stop_signals.catch_from_start()  # First: a signal during the imports below ends it in one line.

import importlib
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # tf.data only; hide TensorFlow's start-up logs.

import ml_collections

from examples import registry
from examples.study import defaults as study_defaults
from examples.training import cli
from examples.training import defaults as training_defaults
from examples.training import fields

cli.define_flags()


def _experiment():
  """:mod:`examples.study.experiment`, imported once the flags are valid.

  It imports JAX and Flax (and :func:`examples.registry.load` the example's data and
  models): seconds that a refused flag need not wait for.
  """
  return importlib.import_module('examples.study.experiment')


def check_fields(config: ml_collections.ConfigDict) -> None:
  """Checks every field against its declaration: the core's, the study's and the example's.

  Raises:
    ValueError: naming the first bad flag and what it accepts.
  """
  fields.check(config, {**training_defaults.FIELDS, **study_defaults.FIELDS,
                        **registry.fields(config.example)})


def run(config: ml_collections.ConfigDict, workdir: str) -> None:
  """:func:`examples.study.experiment.run` of the example that ``config.example`` names."""
  _experiment().run(registry.load(config.example), config, workdir)


if __name__ == '__main__':
  cli.run(run, check_config=check_fields)
