"""``minimize``: SciPy's L-BFGS-B interface over the jitted solver."""

from __future__ import annotations

import difflib
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_lbfgsb import _status
from jax_lbfgsb._bounds import canonicalize_bounds, project
from jax_lbfgsb._solver import Box, Options, run

__all__ = ["OptimizeResult", "minimize"]

_OPTIONS = ("bounds", "args", "jac", "maxcor", "ftol", "gtol", "maxiter", "maxfun", "maxls")


class OptimizeResult(NamedTuple):
  """The result of :func:`minimize`, with SciPy's field names.

  Attributes:
    x: the solution, inside the bounds, with the shape of ``x0``.
    fun: ``f(x)``.
    jac: ``grad f(x)``, with the shape of ``x0``.
    nit: number of iterations (new iterates).
    nfev: number of evaluations of ``f`` and ``g``.
    njev: number of gradient evaluations (equal to ``nfev``).
    status: SciPy's code: 0 converged, 1 an iteration or evaluation limit was
      reached, 2 anything else.
    success: ``status == 0``.
    termination: the finer :class:`Termination` code.
  """

  x: jax.Array
  fun: jax.Array
  jac: jax.Array
  nit: jax.Array
  nfev: jax.Array
  njev: jax.Array
  status: jax.Array
  success: jax.Array
  termination: jax.Array

  @property
  def message(self) -> Any:
    """Why the solve stopped, in SciPy's words and then in plain words.

    A ``str`` for one solve, a NumPy array of ``str`` for a batch. Needs
    concrete values: under ``jax.jit`` read ``termination`` instead.
    """
    if isinstance(self.termination, jax.core.Tracer):
      raise TypeError(
          "OptimizeResult.message needs concrete values, but this result is"
          " traced (inside jax.jit or vmap). Return the result from the jitted"
          " function and read .message outside, or use .termination/.status"
          " inside."
      )
    codes = np.asarray(self.termination)
    if codes.ndim == 0:
      return _status.message(codes)
    return np.vectorize(_status.message, otypes=[object])(codes)


def _check_options(maxcor, maxls, ftol, gtol, unknown: dict) -> None:
  if unknown:
    hints = []
    for name in unknown:
      close = difflib.get_close_matches(name, _OPTIONS, n=1)
      hints.append(f"`{name}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
    raise TypeError(
        f"minimize() got unknown option(s) {', '.join(hints)}; valid options are"
        f" {', '.join(_OPTIONS)}."
    )
  if not isinstance(maxcor, (int, np.integer)) or isinstance(maxcor, bool) or maxcor < 1:
    raise ValueError(f"maxcor must be a Python int >= 1 (it fixes array shapes); got {maxcor!r}.")
  for name, value, low in (("maxls", maxls, 1), ("ftol", ftol, 0), ("gtol", gtol, 0)):
    if not isinstance(value, jax.core.Tracer) and np.ndim(value) == 0 and not value >= low:
      raise ValueError(f"{name} must be >= {low}; got {value!r}.")


def _check_fun_output(fun, jac, x0, args) -> None:
  """Trace-time check that ``fun`` returns a float scalar (or ``(f, grad)`` with ``jac``)."""
  out = jax.eval_shape(fun, x0, *args)
  f_out = out[0] if jac and isinstance(out, (tuple, list)) else out
  if jac and (not isinstance(out, (tuple, list)) or len(out) != 2 or out[1].shape != x0.shape):
    raise TypeError(
        "with jac=True, fun must return (f, grad) with grad shaped like x0"
        f" {x0.shape}; got {jax.tree.map(lambda a: a.shape, out)}."
    )
  if not hasattr(f_out, "shape") or f_out.shape != () or not jnp.issubdtype(f_out.dtype, jnp.floating):
    raise TypeError(
        "fun must return a float scalar (shape ()); got"
        f" {getattr(f_out, 'dtype', type(f_out).__name__)}{getattr(f_out, 'shape', '')}."
        " Reduce it, e.g. return jnp.sum(...)."
    )


@functools.partial(jax.jit, static_argnames=("fun", "jac", "maxcor"))
def _solve(fun, jac, maxcor, x0, l, u, args, options):
  _check_fun_output(fun, jac, x0, args)
  shape = x0.shape
  x0 = x0.ravel()

  def fun_and_grad(x):
    if jac:
      f, g = fun(x.reshape(shape), *args)
    else:
      f, g = jax.value_and_grad(fun)(x.reshape(shape), *args)
    return jnp.asarray(f, x.dtype).reshape(()), jnp.asarray(g, x.dtype).ravel()

  state = run(fun_and_grad, x0, Box(l=l, u=u, fixed=l == u), options, maxcor)
  status = jnp.asarray(_status.WARNFLAG, jnp.int32)[state.termination]
  return OptimizeResult(
      x=project(state.x, l, u).reshape(shape),
      fun=state.f,
      jac=state.g.reshape(shape),
      nit=state.nit,
      nfev=state.nfev,
      njev=state.nfev,
      status=status,
      success=status == 0,
      termination=state.termination,
  )


def minimize(
    fun: Callable[..., Any],
    x0: Any,
    *,
    bounds: Any = None,
    args: tuple = (),
    jac: bool = False,
    maxcor: int = 10,
    ftol: float = 2.220446049250313e-09,
    gtol: float = 1e-05,
    maxiter: int = 15000,
    maxfun: int = 15000,
    maxls: int = 20,
    **unknown: Any,
) -> OptimizeResult:
  """Minimizes ``fun`` subject to ``lower <= x <= upper`` with L-BFGS-B.

  The same algorithm, options and stopping tests as
  ``scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B")``, with the
  gradient from :func:`jax.value_and_grad` and the whole solve in one jitted
  ``lax.while_loop``. It stops when

  - ``max_i |proj g_i| <= gtol`` (``CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL``),
  - ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol``
    (``CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH``),
  - ``nit >= maxiter`` or ``nfev > maxfun`` (checked after each iteration), or
  - the line search fails with an empty memory (``ABNORMAL``), or ``f``/``g``
    become NaN or inf.

  ``fun`` is a static argument of the internal jit: calling again with the same
  ``fun`` and new ``x0``, bounds, ``args`` or tolerances does not recompile
  (``maxcor`` fixes array shapes, so a new ``maxcor`` does). ``minimize`` also
  works inside :func:`jax.jit` and :func:`jax.vmap`.

  Args:
    fun: ``fun(x, *args) -> scalar`` for ``x`` with the shape of ``x0``. With
      ``jac=True``, ``fun(x, *args) -> (f, grad f)``.
    x0: initial point, a float array; it is projected into the bounds first.
      Its dtype (float32 or float64) is the dtype of the whole solve.
    bounds: ``None``; ``(lower, upper)`` with arrays or scalars (``None`` or
      ``+-inf`` for no bound); a sequence of ``(lo, hi)`` pairs, one per
      variable; or an object with ``.lb`` and ``.ub`` (``scipy.optimize.Bounds``).
    args: extra arguments passed to ``fun`` (may be traced).
    jac: whether ``fun`` returns ``(f, grad f)`` itself.
    maxcor: number of correction pairs kept (``m``).
    ftol: relative reduction tolerance (SciPy's ``ftol = factr * eps``).
    gtol: projected-gradient tolerance (``pgtol``).
    maxiter: maximum number of iterations.
    maxfun: maximum number of evaluations of ``f`` and ``g``.
    maxls: maximum number of evaluations in one line search.

  Returns:
    :class:`OptimizeResult`; ``status``, ``termination`` and ``message`` say
    why it stopped.

  Raises:
    TypeError: for an unknown option, a non-float ``x0``, or a ``fun`` that
      does not return a scalar.
    ValueError: for bounds that do not fit ``x0`` or have ``lower > upper``
      (when concrete), ``maxcor < 1`` or ``maxls < 1``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jax_lbfgsb import minimize
    >>> def rosen(x):
    ...   return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    >>> res = minimize(rosen, jnp.array([-1.2, 1.0]), bounds=(-1.5, 0.8))
    >>> print(res.x.round(4), f"{res.fun:.4f}", int(res.nit), res.message[:11])
    [0.8  0.64] 0.0400 3 CONVERGENCE

  References:
    Byrd, Lu, Nocedal, Zhu, `A limited memory algorithm for bound constrained
    optimization <https://doi.org/10.1137/0916069>`_, SIAM J. Sci. Comput.
    16(5), 1995. Morales and Nocedal, `Remark on "Algorithm 778"
    <https://doi.org/10.1145/2049662.2049669>`_, ACM TOMS 38(1), 2011.
  """
  _check_options(maxcor, maxls, ftol, gtol, unknown)
  x0 = jnp.asarray(x0)
  if not jnp.issubdtype(x0.dtype, jnp.floating):
    raise TypeError(
        f"x0 must be a float array; got dtype {x0.dtype}. Pass"
        " jnp.asarray(x0, dtype=jnp.float64) (with jax_enable_x64) or jnp.float32."
    )
  if x0.size == 0:
    raise ValueError("x0 is empty; minimize needs at least one variable.")
  x0 = x0.astype(x0.dtype)  # drop a weak type, so jnp.full(n, 0.1) does not recompile
  l, u = canonicalize_bounds(bounds, x0.size, x0.dtype)
  dtype = x0.dtype
  options = Options(
      ftol=jnp.asarray(ftol, dtype),
      gtol=jnp.asarray(gtol, dtype),
      maxiter=jnp.asarray(maxiter, jnp.int32),
      maxfun=jnp.asarray(maxfun, jnp.int32),
      maxls=jnp.asarray(maxls, jnp.int32),
  )
  return _solve(fun, bool(jac), int(maxcor), x0, l, u, tuple(args), options)
