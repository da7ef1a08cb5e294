"""Training throughput of a ResNet with ZNorm versus plain Adam, in images per second.

Whole train steps (forward, backward, optimizer update, BatchNorm statistics)
of the image classification example are timed in interleaved rounds in one
process, alternating which method goes first, so machine load hits both
alike. ``--loop=device`` (the default on accelerators) runs a round's
``--steps_per_round`` steps inside one jitted ``lax.fori_loop``, so the figure
is the device's and not the host's dispatch. ``--loop=host`` (the default on a
CPU) calls the jitted step once per step, as a training loop does, after
``--warmup_steps`` untimed steps; XLA:CPU runs convolutions inside a loop body
about 20x slower than outside one (jax-ml/jax#12868), so the in-jit loop would
measure that instead. Comparing the two on a GPU shows whether the host keeps
the device busy. Every round ends with a device sync and nothing else syncs
inside it. ``--clock=cpu`` times with the process's CPU time, steadier than
wall time on a CPU machine loaded beyond its cores (it counts work, not
latency, so it is for CPU runs only).

The script prints each method's median images/s, the spread of its rounds,
(max - min) / median, and the ratio znorm / adam: the median over rounds of
the ratio within a round (the target is >= 0.98).

    python benchmarks/train_throughput.py                      # ResNet-56, batch 256
    python benchmarks/train_throughput.py --batch_size=32 --rounds=2 --steps_per_round=2
"""

import argparse
import os
import pathlib
import sys

import jax
import numpy as np

# Also when imported as benchmarks.train_throughput: throughput.py is beside this file, the examples
# beside benchmarks/.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(1, str(pathlib.Path(__file__).resolve().parents[1]))
import throughput

from examples.image_classification.task import classification_task
from examples.study import methods
from examples.training import parallel

METHODS = ('adam', 'znorm')

STEPS_PER_ROUND = (2, 50)
"""Default steps per round (on a CPU, on an accelerator): rounds of about a second or more."""


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='resnet56')
  parser.add_argument('--width', type=int, default=None, help='first-stage channels')
  parser.add_argument('--batch_size', type=int, default=256)
  parser.add_argument('--image_size', type=int, default=32, help='CIFAR-10 is 32')
  throughput.add_round_arguments(parser, STEPS_PER_ROUND)
  return throughput.check_round_arguments(parser, parser.parse_args(), STEPS_PER_ROUND)


def main():
  args = _parse_args()
  data_parallel = parallel.make(args.parallel)
  rng = np.random.default_rng(0)
  batch = data_parallel.put_batch({
      'image': rng.normal(size=(args.batch_size, args.image_size, args.image_size, 3))
      .astype(np.float32),
      'label': rng.integers(0, 10, size=args.batch_size).astype(np.int32),
      'mask': np.ones(args.batch_size, np.float32),
  })
  task = classification_task(args.model, num_classes=10, in_channels=3, width=args.width)
  compiled = {}
  for method in METHODS:
    run, carry, _ = throughput.compiled_round(
        args, task, lambda model, method=method: methods.make_optimizer(method, 1e-3),
        data_parallel, batch)
    compiled[method] = (run, carry)
  images_per_s = throughput.interleaved_rounds(args, compiled, batch, args.batch_size)

  print(f'{args.model} (width {args.width or "default"}), batch {args.batch_size}, '
        f'{args.image_size}x{args.image_size} images, {args.rounds} rounds x '
        f'{args.steps_per_round} steps, {args.loop} loop, {args.clock} clock, '
        f'parallel={args.parallel}; '
        f'backend {jax.default_backend()}, {jax.devices()[0].device_kind} '
        f'x{data_parallel.num_devices}, JAX {jax.__version__}; '
        f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
  throughput.print_report(images_per_s, unit='images', items_per_step=args.batch_size,
                          baseline='adam', targets={'znorm': 0.98})


if __name__ == '__main__':
  main()
