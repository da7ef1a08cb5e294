"""Trains a ResNet classifier, or runs the paper's sweep when ``config.sweep.methods`` is set.

  python -m examples.image_classification.main \\
      --config=examples/image_classification/configs/demo.py --workdir=runs/demo

Any config field can be overridden, e.g. ``--config.dataset=cifar10
--config.data_dir=~/tensorflow_datasets`` or ``--config.parallel=pmap``.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # tf.data only; hide TensorFlow's start-up logs.

import jax
import ml_collections

from examples.image_classification import train
from examples.training import cli
from examples.training import validation

cli.define_flags()


def main(config: ml_collections.ConfigDict, workdir: str) -> None:
  train.validate_config(config)
  validation.prepare_workdir(workdir)  # The first write; the flags are valid.
  if config.compilation_cache:
    # Sweep runs of one method compile identical steps; later runs load them from disk.
    jax.config.update('jax_compilation_cache_dir', os.path.join(workdir, 'jax_cache'))
  if not config.sweep.methods:
    train.train_and_evaluate(config, workdir)
    return
  table, plot_path = train.run_sweep(config, workdir)
  if jax.process_index() == 0:
    print(table)
    print(f'Curves: {plot_path}')


if __name__ == '__main__':
  cli.run(main)
