"""jax_lbfgsb: SciPy-exact L-BFGS-B in pure JAX (jit, vmap and grad compatible)."""

from jax_lbfgsb._batch import minimize_batch
from jax_lbfgsb._compact import InverseHessian
from jax_lbfgsb._fmin import fmin_l_bfgs_b
from jax_lbfgsb._jaxopt import LBFGSB, LbfgsbState, OptStep
from jax_lbfgsb._minimize import IntermediateResult, OptimizeResult, minimize
from jax_lbfgsb._solver import History
from jax_lbfgsb._status import RECORDS, Outcome, Record, Termination

__version__ = "0.1.0"

__all__ = [
    "History",
    "IntermediateResult",
    "LBFGSB",
    "LbfgsbState",
    "OptStep",
    "InverseHessian",
    "OptimizeResult",
    "Outcome",
    "RECORDS",
    "Record",
    "Termination",
    "fmin_l_bfgs_b",
    "minimize",
    "minimize_batch",
]
