"""Trains and evaluates the U-Net segmentation sweep (the paper's Table 3).

  python -m examples.unet_segmentation.main \\
      --config=examples/unet_segmentation/configs/demo.py --workdir=runs/unet_demo

Any config field can be overridden, e.g. ``--config.dataset=lgg_mri
--config.manual_dir=/data/lgg`` or ``--config.parallel=pmap``.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # tf.data only; hide TensorFlow's start-up logs.

import jax
import ml_collections

from examples.training import cli
from examples.training import validation
from examples.unet_segmentation import train

cli.define_flags()


def main(config: ml_collections.ConfigDict, workdir: str) -> None:
  train.validate_config(config)
  validation.prepare_workdir(workdir)  # The first write; the flags are valid.
  train.train_and_evaluate(config, workdir)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'table.md')) as f:
      print(f.read())
    print(f'Report, curves and prediction grids in {workdir}')


if __name__ == '__main__':
  cli.run(main)
