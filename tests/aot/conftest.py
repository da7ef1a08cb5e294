"""Compile-only sessions: no accelerator is probed (benchmarks/aot_cost.py sets the rest)."""

import jax

jax.config.update('jax_platforms', 'cpu')
