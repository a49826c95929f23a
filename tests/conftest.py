"""Test configuration: CPU, and fast compiles for the tiny test networks."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Compile time dominates the tiny networks of the tests.
jax.config.update("jax_disable_most_optimizations", True)
