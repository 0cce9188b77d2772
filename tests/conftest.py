"""Test configuration: float64 available (SciPy parity needs it), explicit dtypes everywhere."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
