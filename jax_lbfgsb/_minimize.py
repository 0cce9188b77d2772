"""``minimize``: SciPy's L-BFGS-B interface over the jitted solver."""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jax_lbfgsb import _status
from jax_lbfgsb._bounds import canonicalize_bounds, check_precision
from jax_lbfgsb._compact import InverseHessian
from jax_lbfgsb._fun_key import traced_fun
from jax_lbfgsb._implicit import differentiable_solve
from jax_lbfgsb._iprint import IprintPrinter
from jax_lbfgsb._solver import Box, History, Hooks, LbfgsbState, Options, init, resume, run

__all__ = ["OptimizeResult", "IntermediateResult", "minimize"]

_OPTIONS = (
    "bounds", "args", "jac", "maxcor", "ftol", "gtol", "maxiter", "maxfun", "maxls", "callback", "history",
    "iprint", "ls_ftol", "ls_gtol", "pgtol_rel", "xtol_rel",
)


class OptimizeResult(NamedTuple):
  """The result of :func:`minimize`, with SciPy's field names.

  Attributes:
    x: the solution, inside the bounds, with the structure of ``x0``.
    fun: ``f(x)``.
    jac: ``grad f(x)``, with the structure of ``x0``.
    nit: number of iterations (new iterates).
    nfev: number of evaluations of ``f`` and ``g``.
    njev: number of gradient evaluations (equal to ``nfev``).
    status: SciPy's code: 0 converged, 1 an iteration or evaluation limit was
      reached, 2 anything else.
    success: ``status == 0``.
    termination: the finer :class:`Termination` code.
    hess_inv: the L-BFGS inverse Hessian approximation at ``x``, a lazy
      :class:`InverseHessian` (``matvec``, ``todense``) over the raveled variables.
    history: with ``history=K``, a :class:`History` of the first ``K`` iterates
      (``x`` raveled); else None.
    state: the solver state; pass the result as ``x0`` to continue the solve.
  """

  x: Any
  fun: jax.Array
  jac: Any
  nit: jax.Array
  nfev: jax.Array
  njev: jax.Array
  status: jax.Array
  success: jax.Array
  termination: jax.Array
  hess_inv: InverseHessian
  history: History | None
  state: LbfgsbState

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


def _check_options(maxcor, maxiter, maxfun, maxls, ftol, gtol, history, unknown: dict) -> None:
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
  if not isinstance(history, (int, np.integer)) or isinstance(history, bool) or history < 0:
    raise ValueError(f"history must be a Python int >= 0 (it fixes array shapes); got {history!r}.")
  for name, value, low in (("maxls", maxls, 1), ("ftol", ftol, 0), ("gtol", gtol, 0)):
    if not isinstance(value, jax.core.Tracer) and np.ndim(value) == 0 and not value >= low:
      raise ValueError(f"{name} must be >= {low}; got {value!r}.")
  for name, value in (("maxiter", maxiter), ("maxfun", maxfun), ("maxls", maxls)):
    if not isinstance(value, jax.core.Tracer) and np.ndim(value) == 0 and float(value) != int(value):
      raise ValueError(f"{name} must be a whole number; got {value!r}.")


def _check_line_search(ls_ftol, ls_gtol) -> None:
  concrete = [v for v in (ls_ftol, ls_gtol) if not isinstance(v, jax.core.Tracer)]
  if len(concrete) == 2 and not 0 < ls_ftol < ls_gtol < 1:
    raise ValueError(
        f"ls_ftol and ls_gtol must satisfy 0 < ls_ftol < ls_gtol < 1; got ls_ftol={ls_ftol!r},"
        f" ls_gtol={ls_gtol!r} (SciPy's values are 1e-3 and 0.9)."
    )


def _scalar(value: Any, dtype: Any) -> Any:
  """An option as a 0-d array of ``dtype``: NumPy for host values (no device op per call)."""
  return jnp.asarray(value, dtype) if isinstance(value, jax.Array) else np.asarray(value, dtype)


def _check_fun_output(fun, jac, x0, args) -> None:
  """Trace-time check that ``fun`` returns a float scalar (or ``(f, grad)`` with ``jac``)."""
  out = jax.eval_shape(fun, x0, *args)
  f_out = out[0] if jac and isinstance(out, (tuple, list)) else out
  shapes = lambda t: jax.tree.map(lambda a: a.shape, t)
  if jac and (not isinstance(out, (tuple, list)) or len(out) != 2 or shapes(out[1]) != shapes(x0)):
    raise TypeError(
        "with jac=True, fun must return (f, grad) with grad shaped like x0"
        f" {shapes(x0)}; got {jax.tree.map(lambda a: a.shape, out)}."
    )
  if not hasattr(f_out, "shape") or f_out.shape != () or not jnp.issubdtype(f_out.dtype, jnp.floating):
    raise TypeError(
        "fun must return a float scalar (shape ()); got"
        f" {getattr(f_out, 'dtype', type(f_out).__name__)}{getattr(f_out, 'shape', '')}."
        " Reduce it, e.g. return jnp.sum(...)."
    )


class IntermediateResult(NamedTuple):
  """What ``callback`` receives after each iteration (SciPy's ``intermediate_result``)."""

  x: Any
  fun: float
  jac: Any
  nit: int
  nfev: int


@dataclasses.dataclass(frozen=True)
class _HostCallback:
  """Unravels the flat iterate on the host and calls the user's callback; hashable, so no retrace."""

  callback: Callable[[IntermediateResult], Any]
  like: Any  # a pytree of jax.ShapeDtypeStruct shaped like x0

  @functools.cached_property
  def _unravel(self) -> Callable[[Any], Any]:
    return ravel_pytree(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), self.like))[1]

  def __call__(self, new_iterate, x, f, g, nit, nfev) -> np.ndarray:
    if not new_iterate:
      return np.asarray(False)
    result = IntermediateResult(
        x=jax.tree.map(np.asarray, self._unravel(x)), fun=float(f), jac=jax.tree.map(np.asarray, self._unravel(g)),
        nit=int(nit), nfev=int(nfev),
    )
    try:
      halt = self.callback(result)
    except StopIteration:  # as SciPy: raising StopIteration halts the solve
      halt = True
    return np.asarray(bool(halt))

  def __hash__(self):
    return hash((self.callback, jax.tree.structure(self.like), tuple(
        (s.shape, str(s.dtype)) for s in jax.tree.leaves(self.like))))

  def __eq__(self, other):
    return isinstance(other, _HostCallback) and hash(self) == hash(other) and self.callback is other.callback


def _solve(fun, jac, maxcor, hooks, x0, l, u, args, options, warm):
  """The jitted solve. ``fun`` is a :class:`TracedFun`; ``args`` end with its
  constants (the arrays it closes over), so the implicit derivatives reach
  them; ``x0``, the options and a warm state get none."""
  x0_flat, unravel = ravel_pytree(x0)
  _check_fun_output(fun, jac, x0, args)

  def fun_and_grad(x, params):
    inputs = (unravel(x), *params)
    f, g = fun(*inputs) if jac else jax.value_and_grad(fun)(*inputs)
    return jnp.asarray(f, x.dtype).reshape(()), ravel_pytree(g)[0].astype(x.dtype)

  def solve(l, u, params, start):
    x0_flat, options, warm = start
    fg = functools.partial(fun_and_grad, params=params)
    box = Box.of(l, u)
    state = init(fg, x0_flat, box, options, maxcor, hooks) if warm is None else resume(fg, warm, box, options, hooks)
    return run(fg, state, box, options, hooks)

  params = tuple(args)
  state = differentiable_solve(solve, fun_and_grad, l, u, params, (x0_flat, options, warm))
  status = jnp.asarray(_status.WARNFLAG, jnp.int32)[state.termination]
  # The result's other fields are the state's arrays, put together outside
  # the jit: each output of a jitted function costs ~1-2 us per call.
  return unravel(state.x), unravel(state.g), status, status == 0, state


def _result(x, jac, status, success, state: LbfgsbState) -> OptimizeResult:
  return OptimizeResult(
      x=x, fun=state.f, jac=jac, nit=state.nit, nfev=state.nfev, njev=state.nfev, status=status, success=success,
      termination=state.termination, hess_inv=InverseHessian(state.memory), history=state.history, state=state,
  )


def _top_level() -> bool:
  """Whether no JAX transformation is tracing (private API, hence the guard)."""
  try:
    from jax._src.core import trace_state_clean
  except ImportError:
    return False
  return trace_state_clean()


def fast_compile_jit(fun: Callable[..., Any], static_argnames: tuple[str, ...]) -> Callable[..., Any]:
  """``jax.jit(fun)``, compiled on CPU with XLA's classic fusion emitters.

  The newer emitters spend most of the compile time on the solver's many small
  scalar fusions; the classic ones compile a solve about 2.5x faster at the
  same run time (measured with jax 0.10.2, see benchmarks/RESULTS.md). JAX
  accepts compiler options only on a top-level jit, so they apply when the
  call is not under jit, vmap or grad.
  """
  plain = jax.jit(fun, static_argnames=static_argnames)
  cpu = jax.jit(fun, static_argnames=static_argnames,
                compiler_options={"xla_cpu_use_fusion_emitters": False})

  def call(*args, **kwargs):
    return (cpu if jax.default_backend() == "cpu" and _top_level() else plain)(*args, **kwargs)

  return call


_solve_jit = fast_compile_jit(_solve, ("fun", "jac", "maxcor", "hooks"))


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
    callback: Callable[[IntermediateResult], Any] | None = None,
    history: int = 0,
    iprint: int = -1,
    ls_ftol: float = 1e-3,
    ls_gtol: float = 0.9,
    pgtol_rel: float = 0.0,
    xtol_rel: float = 0.0,
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

  The solve is compiled once per *code*: ``fun`` is traced to a jaxpr and the
  compiled solve is keyed by that jaxpr's text and the input types, with the
  arrays ``fun`` closes over (or reads from globals) passed in as traced
  inputs. So new ``x0``, bounds, ``args`` or tolerances, and also a new
  ``lambda`` or ``functools.partial`` of the same code over new arrays
  (``minimize(lambda x: loss(x, batch), x0)`` in a loop), reuse it; a changed
  Python number inside ``fun``, a new ``maxcor``, ``history`` or dtype
  compiles anew. ``fun`` with a ``jax.pure_callback`` or a custom derivative
  rule is keyed by the function object instead, as :func:`jax.jit` does.
  ``minimize`` also works inside :func:`jax.jit` and :func:`jax.vmap`.

  :func:`jax.grad`, :func:`jax.jvp` and their compositions differentiate the
  result's ``x``, ``fun`` and ``jac`` with respect to ``args``, the bounds and
  arrays that ``fun`` closes over, by the implicit function theorem at the
  returned point (the loop is not differentiated): a variable at a bound
  follows it, the free ones keep ``grad f = 0``, a system solved by conjugate
  gradients on Hessian-vector products of ``fun`` (with ``jac=True``, forward
  derivatives of the gradient it returns). This assumes a strict local
  minimum (positive definite Hessian on the free variables, nonzero gradient
  at active bounds); ``x0``, the options, ``hess_inv``, ``state`` and the
  counters get no derivative. The derivatives are NaN when the solve did not
  converge (not ``success``, except ``PRECISION_LIMIT``), and the
  minimum-norm solution of the free system when its Hessian is singular.

  Args:
    fun: ``fun(x, *args) -> scalar`` for ``x`` with the shape of ``x0``. With
      ``jac=True``, ``fun(x, *args) -> (f, grad f)``.
    x0: initial point, a float array or a pytree of float arrays; it is
      projected into the bounds first. Its dtype (float32 or float64) is the
      dtype of the whole solve. Passing a previous :class:`OptimizeResult`
      continues that solve with its memory and counters (warm start): a solve
      stopped by ``maxiter`` and continued gives the iterates of one longer
      solve.
    bounds: ``None``; ``(lower, upper)`` with scalars (``None`` or ``+-inf``
      for no bound), arrays shaped like ``x0``, or pytrees with the structure
      of ``x0``; for an array ``x0`` also a sequence of ``(lo, hi)`` pairs, one
      per variable, or an object with ``.lb`` and ``.ub`` (``scipy.optimize.Bounds``).
    args: extra arguments passed to ``fun`` (may be traced); a single
      non-tuple value is passed as one argument, as in SciPy.
    jac: whether ``fun`` returns ``(f, grad f)`` itself.
    maxcor: number of correction pairs kept (``m``).
    ftol: relative reduction tolerance (SciPy's ``ftol = factr * eps``).
    gtol: projected-gradient tolerance (``pgtol``).
    maxiter: maximum number of iterations.
    maxfun: maximum number of evaluations of ``f`` and ``g``.
    maxls: maximum number of evaluations in one line search.
    callback: ``callback(intermediate_result) -> bool | None``, called on the
      host after each iteration with an :class:`IntermediateResult`; returning
      a true value or raising ``StopIteration`` stops the solve (``STOP:
      CALLBACK REQUESTED HALT``). When None, no host callback is in the graph.
    history: record the first ``history`` iterates in ``result.history``
      (fixed-size arrays, no host callbacks; costs ``history * n`` floats).
    iprint: progress output of the Fortran L-BFGS-B v3.0 (which SciPy
      removed): ``< 0`` none, ``0`` header and final table, ``k > 0`` also
      ``f`` and ``|proj g|`` every ``k`` iterations, ``>= 99`` every iteration
      with its line search. Printed from inside the jitted loop by
      ``jax.debug.callback``; nothing is in the graph when ``iprint < 0``.
    ls_ftol, ls_gtol: the line search's sufficient-decrease and curvature
      constants (MINPACK-2 ``dcsrch``'s ftol and gtol; the delta and kappa of
      the classic L-BFGS page), ``0 < ls_ftol < ls_gtol < 1``. SciPy fixes
      them at 1e-3 and 0.9.
    pgtol_rel: when positive, also stop when ``||proj g||_2 <= pgtol_rel (1 + |f|)``.
    xtol_rel: when positive, also stop when ``||x_k - x_{k-1}||_2 <= xtol_rel (||x_k||_2 + 1)``.

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
  _check_options(maxcor, maxiter, maxfun, maxls, ftol, gtol, history, unknown)
  if not isinstance(args, tuple):  # as SciPy: a single extra argument
    args = (args,)
  _check_line_search(ls_ftol, ls_gtol)
  warm = None
  if isinstance(x0, OptimizeResult):
    warm, x0 = x0.state, x0.x
    if (warm.history.f.shape[0] if warm.history is not None else 0) != history:
      raise ValueError(
          "history: continuing a solve needs the same history= as the solve that"
          f" produced x0 (got history={history})."
      )
  x0 = jax.tree.map(lambda leaf: leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf), x0)
  leaves = jax.tree.leaves(x0)
  for path, leaf in jax.tree_util.tree_leaves_with_path(x0):
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
      raise TypeError(
          f"x0{jax.tree_util.keystr(path)} must be a float array; got dtype {leaf.dtype}. Pass"
          " jnp.asarray(x0, dtype=jnp.float64) (with jax_enable_x64) or jnp.float32."
      )
  for path, leaf in jax.tree_util.tree_leaves_with_path(x0):
    nan = None if isinstance(leaf, jax.core.Tracer) else np.flatnonzero(np.isnan(np.asarray(leaf)))
    if nan is not None and nan.size:
      i = int(nan[0])
      raise ValueError(
          f"x0{jax.tree_util.keystr(path)} has NaN entries (the first at raveled index {i});"
          " give a finite starting point inside the bounds."
      )
  if sum(leaf.size for leaf in leaves) == 0:
    raise ValueError("x0 is empty; minimize needs at least one variable.")
  # Drop weak types, so that e.g. jnp.full(n, 0.1) does not recompile.
  x0 = jax.tree.map(lambda leaf: leaf.astype(leaf.dtype) if leaf.weak_type else leaf, x0)
  dtype = jnp.result_type(*leaves)
  check_precision(dtype, "x0")
  l, u = canonicalize_bounds(bounds, x0, dtype)
  options = Options(
      ftol=_scalar(ftol, dtype),
      gtol=_scalar(gtol, dtype),
      maxiter=_scalar(maxiter, np.int32),
      maxfun=_scalar(maxfun, np.int32),
      maxls=_scalar(maxls, np.int32),
      ls_ftol=_scalar(ls_ftol, dtype),
      ls_gtol=_scalar(ls_gtol, dtype),
      pgtol_rel=_scalar(pgtol_rel, dtype),
      xtol_rel=_scalar(xtol_rel, dtype),
  )
  host_callback = None
  if callback is not None:
    host_callback = _HostCallback(callback, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x0))
  printer = IprintPrinter(int(iprint)) if iprint >= 0 else None
  hooks = Hooks(history=int(history), callback=host_callback, printer=printer)
  # Keyed by fun's jaxpr, not its identity: a new closure of the same code
  # reuses the compiled solve, with the arrays it closes over as inputs.
  traced, consts = traced_fun(fun, x0, args)
  return _result(*_solve_jit(traced, bool(jac), int(maxcor), hooks, x0, l, u, (*args, *consts), options, warm))
