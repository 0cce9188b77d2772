"""Test configuration: float64 available (SciPy parity needs it), explicit dtypes everywhere."""

import os

import jax

# The CLI's persistent compilation cache stays off in tests run in-process
# (tests/test_cli.py turns it on for its console-script run, in a temp folder).
os.environ.setdefault("JAX_LBFGSB_CACHE_DIR", "")

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
