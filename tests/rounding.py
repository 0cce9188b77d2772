"""Tolerances for comparing two code paths that take the same steps but round differently.

vmap against single solves, jit against eager, sharded against plain, a pytree
against its flat vector, one XLA instruction set against another (FMA
contraction, vector widths, reduction order): each evaluation of ``f``, ``g``
and each step rounds differently at the level of ``eps``, and a solve carries
those differences along. The tolerances here follow from that arithmetic, not
from the bits one CPU produced.
"""

import jax
import numpy as np


def solution_tolerance(fun, x, nit, *args, free=None) -> float:
  """How far the ends of two such solves of ``fun`` may lie apart, in the inf-norm.

  A relative perturbation ``eps`` of the gradient (size ``||H|| |x|`` near the
  solution) moves a quasi-Newton step by ``||H^-1|| eps ||H|| |x|`` =
  ``cond(H) eps |x|``; ``nit`` iterations add up to ``nit`` such moves. Four
  times that, with ``H`` the Hessian at ``x`` over the ``free`` variables
  (those strictly inside their bounds; the others sit on a bound exactly).
  """
  x = np.asarray(x)
  h = np.asarray(jax.hessian(fun)(x, *args), np.float64)
  if free is not None:
    h = h[np.ix_(free, free)]
  cond = np.linalg.cond(h) if h.size else 1.0
  eps = np.finfo(x.dtype).eps
  return float(4.0 * max(int(nit), 1) * cond * eps * max(np.abs(x).max(), 1.0))


def value_tolerance(fun_value, grad, x_tolerance, nit, dtype) -> float:
  """How far ``f`` at the two ends may differ: ``|g|_1 dx`` plus the rounding of ``f`` itself per iteration."""
  eps = np.finfo(dtype).eps
  return float(np.abs(np.asarray(grad)).sum() * x_tolerance + 4.0 * max(int(nit), 1) * eps * max(abs(float(fun_value)), 1.0))
