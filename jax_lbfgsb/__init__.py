"""jax_lbfgsb: SciPy-exact L-BFGS-B in pure JAX (jit, vmap and grad compatible)."""

from jax_lbfgsb._minimize import OptimizeResult, minimize
from jax_lbfgsb._status import MESSAGES, Termination

__version__ = "0.1.0"

__all__ = ["MESSAGES", "OptimizeResult", "Termination", "minimize"]
