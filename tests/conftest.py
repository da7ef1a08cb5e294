"""Test-session setup: 8 simulated CPU devices, set before JAX starts its backend."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import chex

chex.set_n_cpu_devices(8)
