"""``fmin_l_bfgs_b``: SciPy's legacy interface, with exact gradients."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from jax_lbfgsb._options import DEFAULTS, iprint_of
from jax_lbfgsb._minimize import minimize
from jax_lbfgsb._status import Termination

__all__ = ["fmin_l_bfgs_b"]

_EPSMCH = float(np.finfo(np.float64).eps)  # SciPy: ftol = factr * eps of float64


def fmin_l_bfgs_b(
    func: Callable[..., Any],
    x0: Any,
    fprime: Callable[..., Any] | None = None,
    args: Any = (),
    approx_grad: int = 0,
    bounds: Any = None,
    m: int = DEFAULTS.maxcor,
    factr: float = 1e7,
    pgtol: float = DEFAULTS.gtol,
    epsilon: float = 1e-8,
    iprint: int = -1,
    maxfun: int = DEFAULTS.maxfun,
    maxiter: int = DEFAULTS.maxiter,
    disp: int | None = None,
    callback: Callable[..., Any] | None = None,
    maxls: int = DEFAULTS.maxls,
    *,
    x_scale: Any = None,
) -> tuple[np.ndarray, float, dict[str, Any]]:
  """Minimizes ``func`` subject to bounds: ``scipy.optimize.fmin_l_bfgs_b``, call for call.

  Same signature, defaults and return value as SciPy's; change the import and
  keep the call. The difference is the gradient: ``approx_grad=1`` (SciPy's
  finite differences with step ``epsilon``) and a ``func`` returning ``(f, g)``
  (no ``fprime``) get it from :func:`jax.grad`, exactly, so ``func`` must be
  written with ``jax.numpy``; ``epsilon`` is accepted and unused. A finite
  difference can be useless where exact gradients are not: in float32, or
  where ``f`` changes by less than rounding over ``epsilon`` (SciPy then
  stops at iteration 0 with a zero gradient).

  This is the host-side face (NumPy results, ``d["task"]`` a string); inside
  ``jax.jit`` or ``jax.vmap`` call :func:`jax_lbfgsb.minimize`.

  Args:
    func: ``func(x, *args) -> f``; with neither ``fprime`` nor ``approx_grad``,
      ``func(x, *args) -> (f, g)`` as in SciPy.
    x0: initial point (array-like; integers and lists become float).
    fprime: ``fprime(x, *args) -> g``, the gradient; None: see ``func``.
    args: extra arguments of ``func`` and ``fprime``.
    approx_grad: SciPy's finite differences; here the gradient by ``jax.grad``.
    bounds: ``(min, max)`` pairs per variable (``None`` for no bound), or any
      form :func:`~jax_lbfgsb.minimize` takes.
    m: number of correction pairs kept (``maxcor``).
    factr: stop when the relative reduction of f is at most ``factr * eps``
      (``eps`` of float64, as in SciPy: ``ftol = factr * 2.22e-16``).
    pgtol: stop when ``max |proj g_i| <= pgtol``.
    epsilon: SciPy's finite-difference step; unused.
    iprint: the Fortran progress output (see :func:`~jax_lbfgsb.minimize`).
    maxfun, maxiter, maxls: limits, as in SciPy.
    disp: when not None, overrides ``iprint`` (0: silent), as in SciPy.
    callback: ``callback(xk)`` after each iteration; raising
      ``StopIteration`` stops the solve.
    x_scale: ours, not SciPy's: variable scales or ``"auto"`` (see
      :func:`~jax_lbfgsb.minimize`).

  Returns:
    ``(x, f, d)``: the solution (a NumPy array), ``f(x)`` (a float) and SciPy's
    dict: ``grad``, ``task`` (SciPy's text), ``funcalls``, ``nit``,
    ``warnflag`` (0 converged, 1 a limit reached, 2 anything else), plus
    ``cause`` (why it stopped, in plain words) and ``termination`` (the
    :class:`~jax_lbfgsb.Termination` code).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jax_lbfgsb import fmin_l_bfgs_b
    >>> def f(x):
    ...   return jnp.sum((x - jnp.array([1.0, 6.0])) ** 2)
    >>> x, fx, d = fmin_l_bfgs_b(f, [2.0, 8.0], approx_grad=1, bounds=[(0, 5), (5, 10)])
    >>> print(x.round(6), round(fx, 9), d["task"], d["warnflag"])
    [1. 6.] 0.0 CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL 0
  """
  del epsilon  # the gradient is exact
  if approx_grad or fprime is None:
    jac = None if approx_grad else True
  else:
    jac = fprime
  res = minimize(
      func, x0, args=args, jac=jac, bounds=bounds,
      callback=callback, maxcor=m, ftol=factr * _EPSMCH, gtol=pgtol, maxiter=maxiter, maxfun=maxfun,
      maxls=maxls, iprint=iprint_of(disp, iprint), x_scale=x_scale,
  )
  code = Termination(int(res.termination))
  d = {
      "grad": np.asarray(res.jac), "task": code.record.task, "funcalls": int(res.nfev), "nit": int(res.nit),
      "warnflag": code.record.warnflag, "cause": code.cause, "termination": code,
  }
  return np.asarray(res.x), float(res.fun), d
