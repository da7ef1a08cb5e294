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
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# `python benchmarks/train_throughput.py` puts benchmarks/ on the path; the examples live beside it.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from examples.image_classification.task import classification_task
from examples.study import methods
from examples.training import parallel
from examples.training import steps

METHODS = ('adam', 'znorm')

CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}

STEPS_PER_ROUND = (2, 50)
"""Default steps per round (on a CPU, on an accelerator): rounds of about a second or more."""


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='resnet56')
  parser.add_argument('--width', type=int, default=None, help='first-stage channels')
  parser.add_argument('--batch_size', type=int, default=256)
  parser.add_argument('--image_size', type=int, default=32, help='CIFAR-10 is 32')
  parser.add_argument('--rounds', type=int, default=6)
  parser.add_argument('--steps_per_round', type=int, default=None,
                      help=f'default {STEPS_PER_ROUND[0]} on a CPU, {STEPS_PER_ROUND[1]} otherwise')
  parser.add_argument('--loop', default=None, choices=('device', 'host'),
                      help='run a round\'s steps in one jitted loop, or one call per step '
                      '(default: host on a CPU, device otherwise)')
  parser.add_argument('--warmup_steps', type=int, default=2,
                      help='--loop=host: untimed steps at the start of every round, since the '
                      'first steps after switching methods run slower')
  parser.add_argument('--parallel', default='none', choices=parallel.MODES)
  parser.add_argument('--clock', default='wall', choices=tuple(CLOCKS),
                      help='cpu: process CPU time, steadier on a loaded CPU machine')
  args = parser.parse_args()
  on_cpu = jax.default_backend() == 'cpu'
  if args.steps_per_round is None:
    args.steps_per_round = STEPS_PER_ROUND[0 if on_cpu else 1]
  if args.loop is None:
    args.loop = 'host' if on_cpu else 'device'
  if min(args.batch_size, args.rounds, args.steps_per_round) < 1 or args.warmup_steps < 0:
    parser.error('--batch_size, --rounds and --steps_per_round must be positive, '
                 '--warmup_steps not negative')
  return args


def _looped(train_step, num_steps):
  """``num_steps`` train steps on the same batch in one ``lax.fori_loop``; the last metrics."""

  def looped(carry, batch):
    metrics = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                           jax.eval_shape(train_step, carry, batch)[1])
    return jax.lax.fori_loop(
        0, num_steps, lambda _, outputs: train_step(outputs[0], batch), (carry, metrics)
    )

  return looped


def _compiled_round(args: argparse.Namespace, method: str, data_parallel, batch):
  """A compiled round (one loop or one step) of ``method`` and its placed initial carry.

  The carry is the train step's: the model and optimizer state, and the
  NaN/Inf record that the examples' train step keeps on device.
  """
  task = classification_task(args.model, num_classes=10, in_channels=3, width=args.width)
  model = task.create_model(nnx.Rngs(0), data_parallel.data_axis_name)
  optimizer = nnx.Optimizer(model, methods.make_optimizer(method, 1e-3), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  train_step = steps.train_step(task, graphdef, data_parallel.data_axis_name)
  if args.loop == 'device':
    train_step = _looped(train_step, args.steps_per_round)
  run = data_parallel.compile(train_step, donate_argnums=(0,))
  carry = data_parallel.put_state((state, steps.initial_health(0)))
  carry, metrics = run(carry, batch)  # Compiles.
  jax.block_until_ready(metrics)
  return run, carry


def _timed_round(args, run, carry, batch):
  """Runs one round; returns the new carry and the seconds it took."""
  if args.loop == 'host':
    for _ in range(args.warmup_steps):
      carry, _ = run(carry, batch)
  jax.block_until_ready(carry)
  now = CLOCKS[args.clock]
  start = now()
  if args.loop == 'device':
    carry, metrics = run(carry, batch)
  else:
    for _ in range(args.steps_per_round):
      carry, metrics = run(carry, batch)
  jax.block_until_ready((carry, metrics))
  return carry, now() - start


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
  compiled = {m: _compiled_round(args, m, data_parallel, batch) for m in METHODS}
  throughput = {m: [] for m in METHODS}
  for round_index in range(args.rounds):
    for method in METHODS if round_index % 2 == 0 else METHODS[::-1]:
      run, carry = compiled[method]
      carry, seconds = _timed_round(args, run, carry, batch)
      compiled[method] = (run, carry)
      throughput[method].append(args.steps_per_round * args.batch_size / seconds)

  print(f'{args.model} (width {args.width or "default"}), batch {args.batch_size}, '
        f'{args.image_size}x{args.image_size} images, {args.rounds} rounds x '
        f'{args.steps_per_round} steps, {args.loop} loop, {args.clock} clock, '
        f'parallel={args.parallel}; '
        f'backend {jax.default_backend()}, {jax.devices()[0].device_kind} '
        f'x{data_parallel.num_devices}, JAX {jax.__version__}; '
        f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
  for method in METHODS:
    rounds = throughput[method]
    median = statistics.median(rounds)
    print(f'  {method:6s} median {median:10.1f} images/s, {1e3 * args.batch_size / median:8.2f} '
          f'ms/step, spread {100 * (max(rounds) - min(rounds)) / median:5.1f}%  '
          f'(rounds: {", ".join(f"{x:.1f}" for x in rounds)})')
  ratios = [z / a for z, a in zip(throughput['znorm'], throughput['adam'])]
  print(f'  ratio znorm / adam: {statistics.median(ratios):.3f} '
        f'(rounds {min(ratios):.3f}-{max(ratios):.3f}; target >= 0.98)')


if __name__ == '__main__':
  main()
