"""Training throughput of a ResNet with ZNorm versus plain Adam, in images per second.

Whole train steps (forward, backward, optimizer update, BatchNorm statistics)
of the ResNet classification example are timed in interleaved rounds in one
process, alternating which method goes first, so machine load hits both
alike; every round begins with untimed warm-up steps. The script prints each
method's median images/s and the ratio znorm / adam (the target is >= 0.98).

    python benchmarks/train_throughput.py                      # ResNet-56, batch 256
    python benchmarks/train_throughput.py --batch_size=32 --rounds=3 --steps_per_round=3
"""

import argparse
import pathlib
import statistics
import sys
import time

import jax
import numpy as np
from flax import nnx

# `python benchmarks/train_throughput.py` puts benchmarks/ on the path; the examples live beside it.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from examples.resnet_classification.task import classification_task
from examples.training import methods
from examples.training import parallel
from examples.training import steps

METHODS = ('adam', 'znorm')


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='resnet56')
  parser.add_argument('--width', type=int, default=None, help='first-stage channels')
  parser.add_argument('--batch_size', type=int, default=256)
  parser.add_argument('--image_size', type=int, default=32, help='CIFAR-10 is 32')
  parser.add_argument('--rounds', type=int, default=10)
  parser.add_argument('--steps_per_round', type=int, default=20)
  parser.add_argument('--warmup_steps', type=int, default=2,
                      help='untimed steps at the start of every round: the first steps after '
                      'switching methods run slower')
  parser.add_argument('--parallel', default='none', choices=parallel.MODES)
  return parser.parse_args()


def _compiled_step(args: argparse.Namespace, method: str, data_parallel, batch):
  """A compiled train step of ``method`` and its placed initial state."""
  task = classification_task(args.model, num_classes=10, in_channels=3, width=args.width)
  model = task.create_model(nnx.Rngs(0), data_parallel.batch_norm_axis_name)
  optimizer = nnx.Optimizer(model, methods.make_optimizer(method, 1e-3), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  step = data_parallel.compile(
      steps.train_step(task, graphdef, data_parallel.batch_norm_axis_name), donate_argnums=(0,)
  )
  state = data_parallel.put_state(state)
  state, metrics = step(state, batch)  # Compiles.
  jax.block_until_ready(metrics)
  return step, state


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
  compiled = {m: _compiled_step(args, m, data_parallel, batch) for m in METHODS}
  throughput = {m: [] for m in METHODS}
  for round_index in range(args.rounds):
    order = METHODS if round_index % 2 == 0 else METHODS[::-1]
    for method in order:
      step, state = compiled[method]
      for _ in range(args.warmup_steps):
        state, metrics = step(state, batch)
      jax.block_until_ready(metrics)
      start = time.perf_counter()
      for _ in range(args.steps_per_round):
        state, metrics = step(state, batch)
      jax.block_until_ready(metrics)
      elapsed = time.perf_counter() - start
      compiled[method] = (step, state)
      throughput[method].append(args.steps_per_round * args.batch_size / elapsed)

  print(f'{args.model} (width {args.width or "default"}), batch {args.batch_size}, '
        f'{args.image_size}x{args.image_size} images, {args.rounds} rounds x '
        f'{args.steps_per_round} steps, parallel={args.parallel}, devices: {jax.devices()[0].device_kind} '
        f'x{data_parallel.num_devices}')
  medians = {m: statistics.median(throughput[m]) for m in METHODS}
  for method in METHODS:
    print(f'  {method:6s} median {medians[method]:10.1f} images/s  '
          f'(rounds: {", ".join(f"{x:.1f}" for x in throughput[method])})')
  print(f'  ratio znorm / adam: {medians["znorm"] / medians["adam"]:.3f} (target >= 0.98)')


if __name__ == '__main__':
  main()
