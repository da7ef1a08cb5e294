"""Random gradient pytrees of mixed shapes and dtypes for the core library's tests."""

import jax.numpy as jnp
import numpy as np

# Flax layouts: HWIO conv kernels, (in, out) dense kernels, vectors, scalars.
MIXED_LEAVES = {
    'conv_kernel': ((3, 3, 4, 8), jnp.float32),
    'dense_kernel': ((16, 8), jnp.float32),
    'bias': ((8,), jnp.float32),
    'bf16_kernel': ((12, 6), jnp.bfloat16),
    'bf16_conv': ((3, 3, 2, 5), jnp.bfloat16),
    'fp16_kernel': ((10, 7), jnp.float16),
    'fp16_vector': ((33,), jnp.float16),
    'column': ((9, 1), jnp.float32),
    'row': ((1, 9), jnp.float32),
    'scalar': ((), jnp.float32),
    'single': ((1,), jnp.bfloat16),
    'empty': ((0,), jnp.float32),
    'empty_kernel': ((4, 0), jnp.float16),
}


def random_leaf(rng: np.random.Generator, shape, dtype, *, loc=None, scale=None) -> jnp.ndarray:
  """Normal values with a random offset and scale, so no leaf is already standardized."""
  loc = rng.uniform(-3, 3) if loc is None else loc
  scale = 10.0 ** rng.uniform(-3, 1) if scale is None else scale
  return jnp.asarray(loc + scale * rng.standard_normal(shape), dtype)


def mixed_tree(seed: int = 0, leaves=None) -> dict[str, jnp.ndarray]:
  """A dict of random leaves with the shapes and dtypes of `leaves` (default: MIXED_LEAVES)."""
  rng = np.random.default_rng(seed)
  leaves = MIXED_LEAVES if leaves is None else leaves
  return {name: random_leaf(rng, shape, dtype) for name, (shape, dtype) in leaves.items()}
