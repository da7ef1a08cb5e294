"""Update-step overhead of ZNorm over plain Adam, with clip_by_global_norm as the peer.

Every optimizer's jitted step (``tx.update`` + ``optax.apply_updates``) is
timed in interleaved rounds in one process, so machine load hits all of them
alike; the script prints the median step time of each and its ratio over
Adam's, plus the compile-time ratio.

    python benchmarks/overhead.py                 # both trees
    python benchmarks/overhead.py --trees=resnet56 --rounds=5
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import znorm_optax


def resnet56_gradients(key):
  """Gradient tree shaped like a CIFAR ResNet-56 in Flax (HWIO kernels, BatchNorm)."""
  shapes = {'stem/conv': (3, 3, 3, 16), 'stem/bn/scale': (16,), 'stem/bn/bias': (16,)}
  in_width = 16
  for stage, width in enumerate((16, 32, 64)):
    for block in range(9):
      for conv in range(2):
        name = f'stage{stage}/block{block}/conv{conv}'
        shapes[name] = (3, 3, in_width, width)
        shapes[f'{name}/bn/scale'] = (width,)
        shapes[f'{name}/bn/bias'] = (width,)
        in_width = width
  shapes['head/kernel'] = (64, 10)
  shapes['head/bias'] = (10,)
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


OPTIMIZERS = {
    'adam': lambda: optax.adam(1e-3),
    'chain(znorm, adam)': lambda: optax.chain(znorm_optax.znorm(), optax.adam(1e-3)),
    'znorm_adam': lambda: znorm_optax.znorm_adam(1e-3),
    'chain(clip_by_global_norm, adam)': lambda: optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(1e-3)
    ),
}


def make_step(tx):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1))


def benchmark_tree(name, grads, rounds, steps_per_round):
  params = jax.tree.map(jnp.ones_like, grads)
  runs = {}
  for label, make_tx in OPTIMIZERS.items():
    tx = make_tx()
    state = tx.init(params)
    step = make_step(tx)
    start = time.perf_counter()
    compiled = step.lower(params, state, grads).compile()
    compile_s = time.perf_counter() - start
    own_params = jax.tree.map(jnp.copy, params)
    own_params, state = compiled(own_params, state, grads)  # Warm up.
    jax.block_until_ready(own_params)
    runs[label] = {'step': compiled, 'carry': (own_params, state), 'compile_s': compile_s,
                   'times': []}
  for _ in range(rounds):
    for run in runs.values():  # Interleaved, so load drifts hit every optimizer alike.
      carry = run['carry']
      start = time.perf_counter()
      for _ in range(steps_per_round):
        carry = run['step'](*carry, grads)
      jax.block_until_ready(carry)
      run['times'].append((time.perf_counter() - start) / steps_per_round)
      run['carry'] = carry

  size = sum(leaf.size for leaf in jax.tree.leaves(grads))
  print(f'\n{name}: {len(jax.tree.leaves(grads))} leaves, {size / 1e6:.2f}M parameters, '
        f'{rounds} rounds x {steps_per_round} steps, backend {jax.default_backend()}')
  print(f'{"optimizer":36s} {"step (ms)":>10s} {"ratio":>7s} {"compile ratio":>14s}')
  base_step = statistics.median(runs['adam']['times'])
  base_compile = runs['adam']['compile_s']
  for label, run in runs.items():
    step_ms = statistics.median(run['times'])
    print(f'{label:36s} {1e3 * step_ms:10.3f} {step_ms / base_step:7.3f} '
          f'{run["compile_s"] / base_compile:14.2f}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--trees', default='resnet56,transformer',
                      help='comma-separated subset of: resnet56, transformer')
  parser.add_argument('--rounds', type=int, default=15)
  args = parser.parse_args()
  key = jax.random.key(0)
  trees = {
      'resnet56': (resnet56_gradients, 200),
      'transformer': (transformer_gradients, 2),
  }
  for name in args.trees.split(','):
    if name not in trees:
      raise SystemExit(f'--trees: unknown tree {name!r}; choose from {", ".join(trees)}')
    make_tree, steps_per_round = trees[name]
    benchmark_tree(name, make_tree(key), args.rounds, steps_per_round)


if __name__ == '__main__':
  main()
