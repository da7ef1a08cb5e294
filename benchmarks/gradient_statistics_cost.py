"""Cost of ``--config.log_gradient_statistics``: train-step time with and without it.

Times the examples' jitted train step (image classification, ``none``
parallelism, one call per step as the training loop makes them) in three
variants, in interleaved rounds whose order rotates, so machine load hits all
alike:

* ``off``: no statistics (the default);
* ``log steps``: the statistics as the loop computes them, under ``lax.cond``
  at every ``--log_every_steps``-th step (each round holds the same share of
  log steps);
* ``every step``: computed at every step, the alternative to ``lax.cond``.

It prints each variant's median milliseconds per step and the median over
rounds of its ratio to the first variant (``off``) within the round.

    python benchmarks/gradient_statistics_cost.py             # the demo's ResNet-20
    python benchmarks/gradient_statistics_cost.py --model=resnet8 --width=4 --image_size=8 \\
        --batch_size=64 --log_every_steps=5                   # the tiny config's
"""

import argparse
import os
import pathlib
import statistics
import sys
import time

import jax
import numpy as np
from flax import nnx

# `python benchmarks/gradient_statistics_cost.py` puts benchmarks/ on the path.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from examples.image_classification.task import classification_task
from examples.study import gradient_statistics
from examples.study import methods
from examples.training import parallel
from examples.training import steps

VARIANTS = ('off', 'log steps', 'every step')

CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='resnet20')
  parser.add_argument('--width', type=int, default=8)
  parser.add_argument('--image_size', type=int, default=16)
  parser.add_argument('--in_channels', type=int, default=1, help='digits: 1')
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--method', default='znorm', choices=tuple(methods.METHODS))
  parser.add_argument('--log_every_steps', type=int, default=5)
  parser.add_argument('--rounds', type=int, default=6)
  parser.add_argument('--steps_per_round', type=int, default=None,
                      help='default: 40 x --log_every_steps')
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help=f'comma-separated, from {VARIANTS}; the first is the baseline')
  parser.add_argument('--clock', default='wall', choices=tuple(CLOCKS),
                      help='cpu: process CPU time, steadier on a loaded CPU machine')
  args = parser.parse_args()
  args.steps_per_round = args.steps_per_round or 40 * args.log_every_steps
  if min(args.batch_size, args.rounds, args.steps_per_round, args.log_every_steps) < 1:
    parser.error('sizes and counts must be positive')
  if args.steps_per_round % args.log_every_steps:
    parser.error('--steps_per_round must be a multiple of --log_every_steps')
  args.variants = tuple(args.variants.split(','))
  if not set(args.variants) <= set(VARIANTS):
    parser.error(f'--variants must be from {VARIANTS}')
  return args


def _compiled(args, variant: str, data_parallel, batch):
  """The compiled train step of ``variant`` and its placed initial carry."""
  task = classification_task(args.model, num_classes=10, in_channels=args.in_channels,
                             width=args.width)
  model = task.create_model(nnx.Rngs(0), None)
  optimizer = nnx.Optimizer(model, methods.make_optimizer(args.method, 1e-3), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  statistics_every = {'off': None, 'log steps': args.log_every_steps, 'every step': 1}[variant]
  recorder = None
  if statistics_every is not None:
    params = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    recorder = gradient_statistics.StepStatistics(methods.gradient_transform(args.method),
                                                  statistics_every, params)
  run = data_parallel.compile(steps.train_step(task, graphdef, gradient_statistics=recorder),
                              donate_argnums=(0,))
  carry = data_parallel.put_state((state, steps.initial_health(0)))
  carry, outputs = run(carry, batch)  # Compiles.
  jax.block_until_ready(outputs)
  return run, carry


def _timed_round(args, run, carry, batch):
  """One round of steps; returns the new carry and the seconds per step."""
  jax.block_until_ready(carry)
  now = CLOCKS[args.clock]
  start = now()
  for _ in range(args.steps_per_round):
    carry, outputs = run(carry, batch)
  jax.block_until_ready((carry, outputs))
  return carry, (now() - start) / args.steps_per_round


def main():
  args = _parse_args()
  data_parallel = parallel.make('none')
  rng = np.random.default_rng(0)
  size = (args.batch_size, args.image_size, args.image_size, args.in_channels)
  batch = data_parallel.put_batch({
      'image': rng.normal(size=size).astype(np.float32),
      'label': rng.integers(0, 10, size=args.batch_size).astype(np.int32),
      'mask': np.ones(args.batch_size, np.float32),
  })
  variants = args.variants
  compiled = {v: _compiled(args, v, data_parallel, batch) for v in variants}
  # Each variant's first steps after compiling or switching run slower: one untimed round each.
  for variant in variants:
    run, carry = compiled[variant]
    compiled[variant] = (run, _timed_round(args, run, carry, batch)[0])
  seconds = {v: [] for v in variants}
  for round_index in range(args.rounds):
    shift = round_index % len(variants)
    for variant in variants[shift:] + variants[:shift]:
      run, carry = compiled[variant]
      carry, per_step = _timed_round(args, run, carry, batch)
      compiled[variant] = (run, carry)
      seconds[variant].append(per_step)

  print(f'{args.model} (width {args.width}), batch {args.batch_size}, {args.image_size}x'
        f'{args.image_size}x{args.in_channels} images, method {args.method}, log every '
        f'{args.log_every_steps} steps; {args.rounds} rounds x {args.steps_per_round} steps, '
        f'{args.clock} clock; '
        f'backend {jax.default_backend()}, {jax.devices()[0].device_kind}, JAX {jax.__version__}; '
        f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
  for variant in variants:
    ratios = [s / o for s, o in zip(seconds[variant], seconds[variants[0]])]
    print(f'  {variant:10s} median {1e3 * statistics.median(seconds[variant]):8.2f} ms/step, '
          f'ratio to {variants[0]} {statistics.median(ratios):.3f} '
          f'(rounds {min(ratios):.3f}-{max(ratios):.3f})')


if __name__ == '__main__':
  main()
