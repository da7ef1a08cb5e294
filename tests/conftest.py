"""Test-session setup: 8 simulated CPU devices, set before JAX starts its backend."""

import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import chex
import jax
import pytest

chex.set_n_cpu_devices(8)


_FAST_COMPILE_DIRS = tuple(pathlib.Path(__file__).parent / name
                           for name in ('examples', 'benchmarks'))


@pytest.fixture(autouse=True)
def compile_with_most_optimizations_off(request, monkeypatch):
  """The examples' and benchmarks' tests compile with LLVM at -O0, and so do their subprocesses.

  They are compile-bound: a tiny ResNet's eager initializers alone take 11 s to compile
  otherwise, in every process that builds one. The library's tests keep XLA's defaults, which
  their float64 tolerances were set for (float32 reductions accumulate less error there).
  """
  if not any(request.node.path.is_relative_to(directory) for directory in _FAST_COMPILE_DIRS):
    yield
    return
  monkeypatch.setenv('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
