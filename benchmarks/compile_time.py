"""Compile time of a whole train step with ZNorm, as a ratio over the same step with Adam.

A train step of the image classification example (forward, backward,
``nnx.Optimizer`` update, BatchNorm statistics, the NaN/Inf record) is traced,
lowered and compiled for each optimizer, on abstract inputs of CIFAR shapes.
Every compile starts from a fresh model, optimizer and step function, so
nothing is reused from an earlier one, and the optimizers take turns in
interleaved rounds whose order alternates. The figure is each optimizer's
fastest compile over Adam's fastest.

    python benchmarks/compile_time.py                                # ResNet-56, DenseNet-121
    python benchmarks/compile_time.py --models=resnet56 --rounds=3
"""

import argparse
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

# `python benchmarks/compile_time.py` puts benchmarks/ on the path; the examples live beside it.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import znorm_optax
from examples.image_classification.task import classification_task
from examples.training import steps

OPTIMIZERS = {
    'adam': lambda: optax.adam(1e-3),
    'znorm_adam': lambda: znorm_optax.znorm_adam(1e-3),
    'chain(znorm, adam)': lambda: optax.chain(znorm_optax.znorm(), optax.adam(1e-3)),
    'chain(clip_by_global_norm, adam)': lambda: optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(1e-3)),
}


def compile_seconds(model_name, make_optimizer, *, batch_size, image_size, width=None):
  """Seconds to trace, lower and compile one fresh train step of `model_name`."""
  task = classification_task(model_name, num_classes=10, in_channels=3, width=width)

  def build():
    model = task.create_model(nnx.Rngs(0), None)
    return model, nnx.Optimizer(model, make_optimizer(), wrt=nnx.Param)

  graphdef, state = nnx.split(nnx.eval_shape(build))  # Shapes only: nothing allocated.
  carry = (state, jax.eval_shape(lambda: steps.initial_health(0)))
  batch = {
      'image': jax.ShapeDtypeStruct((batch_size, image_size, image_size, 3), jnp.float32),
      'label': jax.ShapeDtypeStruct((batch_size,), jnp.int32),
      'mask': jax.ShapeDtypeStruct((batch_size,), jnp.float32),
  }
  train_step = steps.train_step(task, graphdef)
  start = time.perf_counter()
  jax.jit(train_step, donate_argnums=(0,)).trace(carry, batch).lower().compile()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='resnet56,densenet121')
  parser.add_argument('--optimizers', default=';'.join(OPTIMIZERS),
                      help=f'semicolon-separated subset of: {"; ".join(OPTIMIZERS)}')
  parser.add_argument('--rounds', type=int, default=2, help='compiles of each step; fastest counts')
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--image_size', type=int, default=32, help='CIFAR-10 is 32')
  parser.add_argument('--width', type=int, default=None, help='first-stage channels')
  args = parser.parse_args()
  labels = [label.strip() for label in args.optimizers.split(';')]
  for label in labels:
    if label not in OPTIMIZERS:
      raise SystemExit(f'--optimizers: unknown optimizer {label!r}; '
                       f'choose from {"; ".join(OPTIMIZERS)}')
  if 'adam' not in labels:
    labels.insert(0, 'adam')
  if args.rounds < 1:
    raise SystemExit('--rounds must be positive')

  print(f'backend {jax.default_backend()}, device {jax.devices()[0].device_kind}, '
        f'JAX {jax.__version__}, {os.cpu_count()} CPUs, '
        f'load average {os.getloadavg()[0]:.2f}')
  for model_name in args.models.split(','):
    seconds = {label: [] for label in labels}
    for round_index in range(args.rounds):
      for label in labels if round_index % 2 == 0 else labels[::-1]:
        seconds[label].append(compile_seconds(
            model_name, OPTIMIZERS[label], batch_size=args.batch_size,
            image_size=args.image_size, width=args.width))
    print(f'\n{model_name} (width {args.width or "default"}), batch {args.batch_size}, '
          f'{args.image_size}x{args.image_size} images, {args.rounds} rounds; '
          f'load average {os.getloadavg()[0]:.2f}')
    print(f'{"optimizer":34s} {"fastest s":>9s} {"ratio":>6s}  all rounds (s)')
    for label, own in seconds.items():
      print(f'{label:34s} {min(own):9.2f} {min(own) / min(seconds["adam"]):6.2f}  '
            + ', '.join(f'{s:.2f}' for s in own))


if __name__ == '__main__':
  main()
