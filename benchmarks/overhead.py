"""Optimizer step cost of ZNorm over plain Adam, with global-norm clipping and a naive ZNorm as peers.

One step is ``tx.update`` + ``optax.apply_updates`` on a gradient tree shaped
like a real model's. Two ways to time it (``--timing``):

* ``device``: ``--steps`` steps run inside one jitted ``lax.fori_loop``, so
  host dispatch drops out and what is left is the device's work. The gradient
  buffer rides in the loop carry through ``lax.optimization_barrier``, so XLA
  cannot tell that it is the same every iteration and hoist the statistics out
  of the loop, and every step reads it from memory as it would read a fresh
  gradient (``--gradient=barrier``). ``scaled`` feeds ``g * (1 + 1e-3 * i)``
  and ``shifted`` ``g + 1e-3 * params``, as issue 10's table did; both change
  the values, but a step that cannot fuse the arithmetic into its first read of
  ``g`` (ZNorm's ``lax.cond`` cannot) writes the new gradient and reads it
  back, two passes a real step does not make.
* ``host``: one jitted step per Python call, ``--steps`` calls per round. On a
  CPU this is close to the device time; on a GPU it mostly measures dispatch
  of the step's ~600 buffers and every ratio lands near 1.

Optimizers run in interleaved rounds, alternating their order, so drifts in
machine load hit all of them alike. The ratio is the median over rounds of
each round's time over Adam's in that round; the best ratio is the fastest
round's time over Adam's fastest, the better estimate on a loaded machine; the
spread is a method's own (max - min) / median over rounds. The compile ratio is
the time to trace, lower and compile one step over Adam's (the fastest of
``--compile_repeats``, interleaved).

``--clock=cpu`` times with the process's CPU time (all threads) instead of
wall time: on a shared CPU machine whose load exceeds its cores, wall time is
mostly waiting for a core and CPU time is the steadier measure of the work.
It counts work, not latency, so it is for CPU runs only.

    python benchmarks/overhead.py                                 # all trees, device timing
    python benchmarks/overhead.py --trees=resnet56 --timing=host --rounds=5
"""

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import znorm_optax


def resnet56_gradients(key, blocks_per_stage=9):
  """Gradient tree shaped like a CIFAR ResNet-56 in Flax (HWIO kernels, BatchNorm).

  ``blocks_per_stage=3`` gives a ResNet-20.
  """
  shapes = {'stem/conv': (3, 3, 3, 16), 'stem/bn/scale': (16,), 'stem/bn/bias': (16,)}
  in_width = 16
  for stage, width in enumerate((16, 32, 64)):
    for block in range(blocks_per_stage):
      for conv in range(2):
        name = f'stage{stage}/block{block}/conv{conv}'
        shapes[name] = (3, 3, in_width, width)
        shapes[f'{name}/bn/scale'] = (width,)
        shapes[f'{name}/bn/bias'] = (width,)
        in_width = width
  shapes['head/kernel'] = (64, 10)
  shapes['head/bias'] = (10,)
  return _random_tree(key, shapes)


def resnet50_gradients(key):
  """Gradient tree shaped like an ImageNet ResNet-50 in Flax: 161 leaves, 25,557,032 parameters.

  The layout of Flax's ImageNet example and of torchvision's ``resnet50``: a
  7x7 stem, bottleneck blocks (1x1, 3x3, 1x1 x4) in stages of 3, 4, 6 and 3,
  a 1x1 projection on the first block of every stage, bias-free HWIO
  convolutions each followed by a BatchNorm scale and bias, and a 2048x1000
  dense head.
  """
  shapes = {'stem/conv': (7, 7, 3, 64), 'stem/bn/scale': (64,), 'stem/bn/bias': (64,)}
  in_width = 64
  for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
    for block in range(blocks):
      prefix = f'stage{stage}/block{block}'
      convs = {'conv0': (1, 1, in_width, width), 'conv1': (3, 3, width, width),
               'conv2': (1, 1, width, 4 * width)}
      if block == 0:
        convs['projection'] = (1, 1, in_width, 4 * width)
      for name, shape in convs.items():
        shapes[f'{prefix}/{name}'] = shape
        shapes[f'{prefix}/{name}/bn/scale'] = (shape[-1],)
        shapes[f'{prefix}/{name}/bn/bias'] = (shape[-1],)
      in_width = 4 * width
  shapes['head/kernel'] = (2048, 1000)
  shapes['head/bias'] = (1000,)
  return _random_tree(key, shapes)


def transformer_gradients(key, layers=12, width=768, vocab=50257, context=1024):
  """Gradient tree shaped like a GPT-2-small decoder (about 124M parameters)."""
  shapes = {'embed/tokens': (vocab, width), 'embed/positions': (context, width)}
  for layer in range(layers):
    prefix = f'layer{layer}'
    shapes.update({
        f'{prefix}/ln1/scale': (width,), f'{prefix}/ln1/bias': (width,),
        f'{prefix}/attn/qkv/kernel': (width, 3 * width), f'{prefix}/attn/qkv/bias': (3 * width,),
        f'{prefix}/attn/out/kernel': (width, width), f'{prefix}/attn/out/bias': (width,),
        f'{prefix}/ln2/scale': (width,), f'{prefix}/ln2/bias': (width,),
        f'{prefix}/mlp/up/kernel': (width, 4 * width), f'{prefix}/mlp/up/bias': (4 * width,),
        f'{prefix}/mlp/down/kernel': (4 * width, width), f'{prefix}/mlp/down/bias': (width,),
    })
  shapes['final_ln/scale'] = (width,)
  shapes['final_ln/bias'] = (width,)
  return _random_tree(key, shapes)


def _random_tree(key, shapes):
  keys = jax.random.split(key, len(shapes))
  return {
      name: 1e-3 * jax.random.normal(k, shape, jnp.float32)
      for k, (name, shape) in zip(keys, shapes.items())
  }


TREES = {
    'resnet56': resnet56_gradients,
    'resnet50': resnet50_gradients,
    'transformer': transformer_gradients,
}

STEPS_PER_ROUND = {'resnet56': (100, 1000), 'resnet50': (5, 400), 'transformer': (2, 100)}
"""Tree -> default steps per round (on a CPU, on an accelerator): rounds of ~0.1 s or more."""


def naive_znorm(eps=1e-10):
  """ZNorm as one would write it first: ``(g - mean) / (std + eps)`` per leaf, no tuning."""

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda g: (g - g.mean()) / (g.std() + eps), updates), state

  return optax.GradientTransformation(optax.init_empty_state, update)


OPTIMIZERS = {
    'adam': lambda: optax.adam(1e-3),
    'chain(znorm, adam)': lambda: optax.chain(znorm_optax.znorm(), optax.adam(1e-3)),
    'znorm_adam': lambda: znorm_optax.znorm_adam(1e-3),
    'chain(naive znorm, adam)': lambda: optax.chain(naive_znorm(), optax.adam(1e-3)),
    'chain(clip_by_global_norm, adam)': lambda: optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(1e-3)
    ),
}

def _barrier(grads, params, i):
  del params, i
  grads = jax.lax.optimization_barrier(grads)
  return grads, grads


GRADIENTS = {
    'barrier': _barrier,
    'scaled': lambda grads, params, i: (jax.tree.map(lambda g: g * (1 + 1e-3 * i), grads), grads),
    'shifted': lambda grads, params, i: (
        jax.tree.map(lambda g, p: g + 1e-3 * p, grads, params), grads
    ),
}
"""How the device loop makes step ``i``'s gradient: ``(grads, params, i) -> (gradient, carried)``.

``carried`` goes to the next iteration in place of ``grads``.
"""


def step_fn(tx):
  """One optimizer step: ``(params, state, grads) -> (params, state)``."""

  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


def looped_fn(tx, steps, gradient):
  """``steps`` optimizer steps in one ``lax.fori_loop``, each on a different gradient."""
  step = step_fn(tx)

  def looped(params, state, grads):
    def body(i, carry):
      params, state, grads = carry
      step_grads, grads = GRADIENTS[gradient](grads, params, i.astype(jnp.float32))
      return (*step(params, state, step_grads), grads)

    params, state, _ = jax.lax.fori_loop(0, steps, body, (params, state, grads))
    return params, state

  return looped


CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


def compile_seconds(tx, grads, clock=time.perf_counter):
  """Seconds to trace, lower and compile one step of ``tx`` on abstract inputs."""
  params = jax.tree.map(lambda g: jax.ShapeDtypeStruct(g.shape, g.dtype), grads)
  state = jax.eval_shape(tx.init, params)
  start = clock()
  jax.jit(step_fn(tx)).lower(params, state, params).compile()
  return clock() - start


def fresh_carry(tx, grads):
  """Params of ones and a fresh optimizer state, built outside the timed region."""
  params = jax.tree.map(jnp.ones_like, grads)
  return params, tx.init(params)


def benchmark_tree(name, grads, *, timing, rounds, steps, gradient='barrier', compile_repeats=1,
                   clock='wall'):
  """Times every optimizer on ``grads`` and prints the table."""
  now = CLOCKS[clock]
  txs = {label: make() for label, make in OPTIMIZERS.items()}
  compile_s = {label: [] for label in txs}
  for _ in range(compile_repeats):
    for label, tx in txs.items():
      compile_s[label].append(compile_seconds(tx, grads, now))

  runs = {}
  for label, tx in txs.items():
    if timing == 'device':
      run = jax.jit(looped_fn(tx, steps, gradient), donate_argnums=(0, 1))
    else:
      run = jax.jit(step_fn(tx), donate_argnums=(0, 1))
    jax.block_until_ready(run(*fresh_carry(tx, grads), grads))  # Compiles and warms up.
    runs[label] = run

  times = {label: [] for label in txs}
  for round_index in range(rounds):
    order = list(txs) if round_index % 2 == 0 else list(txs)[::-1]
    for label in order:
      carry = fresh_carry(txs[label], grads)  # One live state at a time: GPT-2's is 1.5 GB.
      jax.block_until_ready(carry)
      start = now()
      if timing == 'device':
        carry = runs[label](*carry, grads)
      else:
        for _ in range(steps):
          carry = runs[label](*carry, grads)
      jax.block_until_ready(carry)
      times[label].append((now() - start) / steps)
      del carry

  leaves = jax.tree.leaves(grads)
  print(f'\n{name}: {len(leaves)} leaves, {sum(x.size for x in leaves) / 1e6:.2f}M parameters; '
        f'{timing} timing, {clock} clock, {rounds} rounds x {steps} steps'
        + (f', {gradient} gradient' if timing == 'device' else '')
        + f'; load average {os.getloadavg()[0]:.2f}')
  print(f'{"optimizer":34s} {"ms/step":>9s} {"ratio":>6s} {"ratio range":>12s} {"best":>6s} '
        f'{"spread":>7s} {"compile s":>9s} {"compile ratio":>13s}')
  for label, own in times.items():
    ratios = [t / base for t, base in zip(own, times['adam'])]
    median = statistics.median(own)
    spread = (max(own) - min(own)) / median
    compile_best = min(compile_s[label])
    print(f'{label:34s} {1e3 * median:9.3f} {statistics.median(ratios):6.3f} '
          f'{min(ratios):5.3f}-{max(ratios):5.3f} {min(own) / min(times["adam"]):6.3f} '
          f'{100 * spread:6.1f}% {compile_best:9.3f} '
          f'{compile_best / min(compile_s["adam"]):13.2f}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--trees', default=','.join(TREES),
                      help=f'comma-separated subset of: {", ".join(TREES)}')
  parser.add_argument('--timing', default='device', choices=('device', 'host'))
  parser.add_argument('--gradient', default='barrier', choices=tuple(GRADIENTS),
                      help='device timing: how each step\'s gradient changes')
  parser.add_argument('--clock', default='wall', choices=tuple(CLOCKS),
                      help='cpu: process CPU time, steadier on a loaded CPU machine')
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--steps', type=int, default=None,
                      help='steps per round (default: per tree and backend, see STEPS_PER_ROUND)')
  parser.add_argument('--compile_repeats', type=int, default=1,
                      help='compiles of each step timed, interleaved; the fastest counts')
  args = parser.parse_args()
  names = args.trees.split(',')
  for name in names:
    if name not in TREES:
      raise SystemExit(f'--trees: unknown tree {name!r}; choose from {", ".join(TREES)}')
  if min(args.rounds, args.compile_repeats, args.steps or 1) < 1:
    raise SystemExit('--rounds, --steps and --compile_repeats must be positive')

  device = jax.devices()[0]
  print(f'backend {jax.default_backend()}, device {device.device_kind} '
        f'(x{jax.device_count()}, timing one), JAX {jax.__version__}, optax {optax.__version__}, '
        f'Python {platform.python_version()}, {os.cpu_count()} CPUs, '
        f'load average {os.getloadavg()[0]:.2f}')
  on_cpu = jax.default_backend() == 'cpu'
  key = jax.random.key(0)
  for name in names:
    steps = args.steps or STEPS_PER_ROUND[name][0 if on_cpu else 1]
    benchmark_tree(name, TREES[name](key), timing=args.timing, rounds=args.rounds, steps=steps,
                   gradient=args.gradient, compile_repeats=args.compile_repeats,
                   clock=args.clock)


if __name__ == '__main__':
  main()
