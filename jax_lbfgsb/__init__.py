"""jax_lbfgsb: SciPy-exact L-BFGS-B in pure JAX (jit, vmap and grad compatible)."""

from jax_lbfgsb._compact import InverseHessian
from jax_lbfgsb._minimize import IntermediateResult, OptimizeResult, minimize
from jax_lbfgsb._solver import History
from jax_lbfgsb._status import MESSAGES, Termination

__version__ = "0.1.0"

__all__ = [
    "History",
    "IntermediateResult",
    "InverseHessian",
    "MESSAGES",
    "OptimizeResult",
    "Termination",
    "minimize",
]
