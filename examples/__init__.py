"""Runnable Flax examples for znorm_optax; run them from the repository root."""
