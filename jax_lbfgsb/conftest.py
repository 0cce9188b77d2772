"""Doctest configuration: the examples run with float64 enabled, as SciPy parity needs."""

import jax

jax.config.update("jax_enable_x64", True)
