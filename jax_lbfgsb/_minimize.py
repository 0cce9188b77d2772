"""``minimize``: SciPy's L-BFGS-B interface over the jitted solver."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import textwrap
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jax_lbfgsb import _status
from jax_lbfgsb._compact import InverseHessian
from jax_lbfgsb._implicit import differentiable_solve
from jax_lbfgsb._inputs import Setup, prepare
from jax_lbfgsb._objective import parts, solve_scale, solver_problem
from jax_lbfgsb._options import DEFAULTS, check_options, iprint_of
from jax_lbfgsb._iprint import IprintPrinter
from jax_lbfgsb._solver import Box, History, Hooks, LbfgsbState, init, resume, run

__all__ = ["OptimizeResult", "IntermediateResult", "minimize"]

_OPTIONS = (
    "maxcor", "ftol", "gtol", "maxiter", "maxfun", "maxls", "iprint", "history", "ls_ftol", "ls_gtol",
    "pgtol_rel", "xtol_rel", "has_aux", "x_scale",
)
# SciPy's options for finite differences (gradients here are exact) and its
# deprecated ``disp``: accepted in ``options``; ``disp`` sets ``iprint`` as in SciPy.
_SCIPY_ONLY = ("eps", "finite_diff_rel_step", "workers", "disp")
_FIELDS = ("message", "success", "status", "fun", "x", "nit", "jac", "nfev", "njev", "hess_inv")


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
      reached, 2 anything else, 99 the callback raised ``StopIteration``.
    success: ``status == 0``.
    termination: the finer :class:`Termination` code; ``message`` and
      ``cause`` are its record's texts.
    hess_inv: the L-BFGS inverse Hessian approximation at ``x``, a lazy
      :class:`InverseHessian` over the raveled variables (SciPy's
      ``LbfgsInvHessProduct`` interface: ``H @ v``, ``matvec``, ``todense``).
    history: with ``history=K``, a :class:`History` of the first ``K`` iterates
      (``x`` raveled); else None.
    state: the solver state; pass the result as ``x0`` to continue the solve.
    aux: with ``has_aux=True``, the auxiliary output of ``fun`` at ``x``; else None.
    x_scale: with ``x_scale``, the ``(n,)`` scales the solver used (``state``
      holds the scaled variables ``x / x_scale``); else None.

  As SciPy's result, it reads by key too (``res["x"]``, ``res.keys()``), and
  its ``repr`` lists the fields (large arrays elided), not the solver state.
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
  aux: Any = None
  x_scale: Any = None

  def _text(self, field: str) -> Any:
    if isinstance(self.termination, jax.core.Tracer):
      raise TypeError(
          f"OptimizeResult.{field} needs concrete values, but this result is"
          " traced (inside jax.jit or vmap). Return the result from the jitted"
          f" function and read .{field} outside, or use .termination/.status"
          " inside."
      )
    codes = np.asarray(self.termination)
    text = lambda code: getattr(_status.Termination(int(code)).record, field)  # noqa: E731
    return text(codes) if codes.ndim == 0 else np.vectorize(text, otypes=[object])(codes)

  @property
  def message(self) -> Any:
    """Why the solve stopped, in SciPy's exact words (``"CONVERGENCE: ..."``).

    A ``str`` for one solve, a NumPy array of ``str`` for a batch. Needs
    concrete values: under ``jax.jit`` read ``termination`` instead.
    """
    return self._text("message")

  @property
  def cause(self) -> Any:
    """What happened and what to do, in plain words (``str``, or an array for a batch)."""
    return self._text("cause")

  def keys(self) -> tuple[str, ...]:
    return _FIELDS + ("cause", "termination", "history", "state", "aux", "x_scale")

  def __getitem__(self, key: Any) -> Any:
    if isinstance(key, str):  # SciPy's res["x"]
      if key not in self.keys():
        raise KeyError(key)
      return getattr(self, key)
    return tuple.__getitem__(self, key)

  def __repr__(self) -> str:
    return _format_result(self)


def _format_value(value: Any) -> str:
  if isinstance(value, InverseHessian):
    return repr(value)
  if isinstance(value, jax.core.Tracer):
    return repr(jax.typeof(value))
  if isinstance(value, (jax.Array, np.ndarray)):
    value = np.asarray(value)
    if value.ndim == 0:
      return str(value.item())
    with np.printoptions(threshold=8, edgeitems=2, precision=3, linewidth=75):
      return np.array2string(value, formatter={"float_kind": lambda v: f"{v: .3e}"}, separator=" ",
                             prefix=" " * 13)
  if isinstance(value, (dict, list, tuple)):
    return repr(jax.tree.map(lambda a: np.asarray(a).round(3) if np.size(a) <= 4 else jax.typeof(a), value))
  return repr(value)


def _format_result(res: "OptimizeResult") -> str:
  """SciPy's layout: one right-aligned field per line; x and jac elided when large."""
  traced = isinstance(res.termination, jax.core.Tracer)
  rows = [] if traced else [("message", res.message), ("cause", res.cause)]
  if not traced and np.ndim(res.termination) == 0:
    rows = [(k, str(v)) for k, v in rows]
  rows += [(name, getattr(res, name)) for name in _FIELDS[1:]]
  rows.append(("termination", res.termination if traced or np.ndim(res.termination) else
               _status.Termination(int(res.termination)).name))
  if res.aux is not None:
    rows.append(("aux", res.aux))
  lines = []
  for name, value in rows:
    if isinstance(value, str):  # message and cause, wrapped
      lines += textwrap.wrap(value, 88, initial_indent=f"{name:>12}: ", subsequent_indent=" " * 14) or [f"{name:>12}:"]
    else:
      lines.append(f"{name:>12}: {_format_value(value)}")
  return "\n".join(lines)


# Names from other libraries, for the hint of an unknown option.
_ALIASES = {"history_size": "maxcor", "memory_size": "maxcor", "m": "maxcor", "pgtol": "gtol", "tol": "gtol",
            "factr": "ftol (= factr * 2.22e-16)", "maxfev": "maxfun", "max_iter": "maxiter", "maxiters": "maxiter"}


def _unknown(names, where: str) -> TypeError:
  hints = []
  for name in names:
    close = [_ALIASES[name]] if name in _ALIASES else difflib.get_close_matches(name, _OPTIONS + _SCIPY_ONLY, n=1)
    hints.append(f"`{name}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
  return TypeError(
      f"minimize() got unknown {where} {', '.join(hints)}; valid options are {', '.join(_OPTIONS)}"
      f" (and SciPy's {', '.join(_SCIPY_ONLY)})."
  )


def _differs(a: Any, b: Any) -> bool:
  """Whether two option values differ; traced or incomparable values count as different."""
  if a is b:
    return False
  try:
    return bool(np.any(np.asarray(a) != np.asarray(b)))
  except Exception:  # noqa: BLE001 (a tracer, a string against an array, ...)
    return True


@functools.cache
def _keyword_defaults() -> dict[str, Any]:
  """minimize's keyword defaults (read once: inspect.signature costs ~40 us a call)."""
  return {k: p.default for k, p in inspect.signature(minimize).parameters.items() if k in _OPTIONS}


def _merge_options(given: dict, options: dict, tol: Any, unknown: dict) -> dict:
  """Our keywords with SciPy's ``options`` and ``tol`` merged in, as SciPy reads them."""
  if unknown:
    raise _unknown(unknown, "keyword(s)")
  bad = [k for k in options if k not in given and k not in _SCIPY_ONLY]
  if bad:
    raise _unknown(bad, "option(s)")
  defaults = _keyword_defaults()
  if tol is not None:  # SciPy: tol is the default of ftol and gtol
    options.setdefault("ftol", tol)
    options.setdefault("gtol", tol)
  if "disp" in options:
    options["iprint"] = iprint_of(options.pop("disp"), options.get("iprint", given["iprint"]))
  merged = dict(given)
  for name, value in options.items():
    if name in _SCIPY_ONLY:
      continue  # finite-difference settings: the gradient is exact
    if _differs(given[name], defaults[name]) and _differs(given[name], value):
      raise TypeError(f"minimize() got {name} both as a keyword ({given[name]!r}) and in options ({value!r}).")
    merged[name] = value
  return merged


class IntermediateResult(NamedTuple):
  """What ``callback(intermediate_result)`` receives after each iteration (SciPy's)."""

  x: Any
  fun: float
  jac: Any
  nit: int
  nfev: int


def _takes_intermediate_result(callback: Callable[..., Any]) -> bool:
  """SciPy's rule: a callback whose only parameter is named ``intermediate_result``
  gets the result; any other gets a copy of ``x`` (the legacy ``callback(xk)``)."""
  try:
    return set(inspect.signature(callback).parameters) == {"intermediate_result"}
  except (TypeError, ValueError):  # no signature (a builtin): SciPy's legacy form
    return False


@dataclasses.dataclass(frozen=True)
class _HostCallback:
  """Unravels the flat iterate on the host and calls the user's callback; hashable, so no retrace."""

  callback: Callable[..., Any]
  like: Any  # a pytree of jax.ShapeDtypeStruct shaped like x0

  @functools.cached_property
  def _intermediate(self) -> bool:
    return _takes_intermediate_result(self.callback)

  @functools.cached_property
  def _unravel(self) -> Callable[[Any], Any]:
    return ravel_pytree(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), self.like))[1]

  def __call__(self, new_iterate, x, f, g, nit, nfev) -> np.ndarray:
    if not new_iterate:
      return np.asarray(False)
    xk = jax.tree.map(np.array, self._unravel(x))  # copies
    try:  # as SciPy: the return value is ignored, StopIteration halts
      if self._intermediate:
        self.callback(intermediate_result=IntermediateResult(
            x=xk, fun=float(f), jac=jax.tree.map(np.asarray, self._unravel(g)), nit=int(nit), nfev=int(nfev)))
      else:
        self.callback(xk)
    except StopIteration:
      return np.asarray(True)
    return np.asarray(False)

  def __hash__(self):
    return hash((self.callback, jax.tree.structure(self.like), tuple(
        (s.shape, str(s.dtype)) for s in jax.tree.leaves(self.like))))

  def __eq__(self, other):
    return isinstance(other, _HostCallback) and hash(self) == hash(other) and self.callback is other.callback


def unscaled(state: LbfgsbState, l, u, scale) -> tuple[jax.Array, jax.Array]:
  """The state's ``x`` and ``g`` in the caller's variables: ``x = s y`` clipped into the caller's box
  ``[l, u]`` (``s y`` may round past it), ``g / s``; as they are without ``scale``."""
  return (state.x, state.g) if scale is None else (jnp.clip(state.x * scale, l, u), state.g / scale)


def outputs(setup: Setup, unravel, state: LbfgsbState, scale) -> tuple:
  """What :func:`_result` takes from a solver state: ``x`` and ``jac`` in the caller's variables
  (unscaled, ``x`` inside the caller's box), SciPy's status, and ``fun``'s aux at ``x``."""
  x_flat, g_flat = unscaled(state, setup.l, setup.u, scale)
  status = jnp.asarray(_status.STATUS, jnp.int32)[state.termination]
  x = unravel(x_flat)
  aux = parts(setup.fun(x, *setup.args), setup.jac, True)[2] if setup.has_aux else None  # fun's aux at x
  # The result's other fields are the state's arrays, put together outside
  # the jit: each output of a jitted function costs ~1-2 us per call.
  return x, unravel(g_flat), status, status == 0, state, aux, scale


def _solve(setup: Setup, maxcor: int, hooks: Hooks, warm: LbfgsbState | None):
  """The jitted solve of a :class:`~jax_lbfgsb._inputs.Setup`, continuing ``warm`` when given.
  ``setup.args`` end with ``fun``'s constants (the arrays it closes over), so the implicit
  derivatives reach them; ``x0``, the options and a warm state get none. With scales (or
  ``auto_scale``) the solver works on ``y = x / scale`` (:mod:`._scaling`); a warm start keeps
  the scales of the solve it continues."""
  x0_flat, unravel, fun_and_grad = setup.objective()
  scale = solve_scale(fun_and_grad, setup.args, setup.auto_scale, setup.scale, x0_flat, setup.l, setup.u)
  fg, params, l, u, y0 = solver_problem(fun_and_grad, setup.args, scale, setup.l, setup.u, x0_flat)

  def solve(l, u, params, start):
    y0, options, warm = start
    fun = functools.partial(fg, params=params)
    box = Box.of(l, u)
    state = init(fun, y0, box, options, maxcor, hooks) if warm is None else resume(fun, warm, box, options, hooks)
    return run(fun, state, box, options, hooks)

  state = differentiable_solve(solve, fg, l, u, params, (y0, setup.options, warm))
  return outputs(setup, unravel, state, scale)


def _result(x, jac, status, success, state: LbfgsbState, aux, scale) -> OptimizeResult:
  history = state.history
  if scale is not None and history is not None:
    history = history._replace(x=history.x * scale[..., None, :])
  return OptimizeResult(
      x=x, fun=state.f, jac=jac, nit=state.nit, nfev=state.nfev, njev=state.nfev, status=status, success=success,
      termination=state.termination, hess_inv=InverseHessian(state.memory, scale), history=history, state=state,
      aux=aux, x_scale=scale,
  )


def _top_level() -> bool:
  """Whether no JAX transformation is tracing (private API, hence the guard)."""
  try:
    from jax._src.core import trace_state_clean
  except ImportError:
    return False
  return trace_state_clean()


# XLA:CPU's classic fusion emitters, and no loop-invariant code motion, whose
# hoisted per-pass invariants cost loop-carried buffers and kernels of their
# own: both the compile and a bounded Rosenbrock solve (n = 10) take about 10%
# less time without it, and EPT/PJB/MSA at n = 90,000 no more
# (benchmarks/RESULTS_compile.md, RESULTS_steady.md).
CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False,
                        "xla_disable_hlo_passes": "while-loop-invariant-code-motion"}


def fast_compile_jit(fun: Callable[..., Any], static_argnames: tuple[str, ...]) -> Callable[..., Any]:
  """``jax.jit(fun)``, compiled on CPU with :data:`CPU_COMPILER_OPTIONS` (XLA's classic fusion emitters).

  The newer emitters spend most of the compile time on the solver's many small
  scalar fusions; the classic ones compile a solve about 2.5x faster at the
  same run time (measured with jax 0.10.2, see benchmarks/RESULTS.md). JAX
  accepts compiler options only on a top-level jit, so they apply when the
  call is not under jit, vmap or grad.
  """
  plain = jax.jit(fun, static_argnames=static_argnames)
  cpu = jax.jit(fun, static_argnames=static_argnames, compiler_options=CPU_COMPILER_OPTIONS)

  def call(*args, **kwargs):
    return (cpu if jax.default_backend() == "cpu" and _top_level() else plain)(*args, **kwargs)

  return call


_solve_jit = fast_compile_jit(_solve, ("maxcor", "hooks"))


def minimize(
    fun: Callable[..., Any],
    x0: Any,
    args: Any = (),
    method: str | None = None,
    jac: bool | str | Callable[..., Any] | None = None,
    hess: Any = None,
    hessp: Any = None,
    bounds: Any = None,
    constraints: Any = (),
    tol: float | None = None,
    callback: Callable[..., Any] | None = None,
    options: dict[str, Any] | None = None,
    *,
    maxcor: int = DEFAULTS.maxcor,
    ftol: float = DEFAULTS.ftol,
    gtol: float = DEFAULTS.gtol,
    maxiter: int = DEFAULTS.maxiter,
    maxfun: int = DEFAULTS.maxfun,
    maxls: int = DEFAULTS.maxls,
    history: int = 0,
    iprint: int = -1,
    ls_ftol: float = DEFAULTS.ls_ftol,
    ls_gtol: float = DEFAULTS.ls_gtol,
    pgtol_rel: float = DEFAULTS.pgtol_rel,
    xtol_rel: float = DEFAULTS.xtol_rel,
    has_aux: bool = False,
    x_scale: Any = None,
    **unknown: Any,
) -> OptimizeResult:
  """Minimizes ``fun`` subject to ``lower <= x <= upper`` with L-BFGS-B.

  The same algorithm, signature, options and stopping tests as
  ``scipy.optimize.minimize(fun, x0, method="L-BFGS-B")`` (a SciPy call runs
  unchanged), with the gradient from :func:`jax.value_and_grad`, never finite
  differences, and the whole solve in one jitted ``lax.while_loop``. SciPy's
  ``options`` dict and our keywords are two spellings of the same settings. It
  stops when

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
    args: extra arguments passed to ``fun`` (may be traced); a single
      non-tuple value is passed as one argument, as in SciPy.
    method: ``None`` or ``"L-BFGS-B"`` (any case); anything else raises.
    jac: ``None``/``False`` (or SciPy's ``"2-point"``, ``"3-point"``,
      ``"cs"``): the gradient by :func:`jax.value_and_grad`; ``True``: ``fun``
      returns ``(f, grad f)``; a callable ``jac(x, *args)``: the gradient.
    hess, hessp, constraints: not supported by L-BFGS-B; passing one raises.
    bounds: ``None``; ``(lower, upper)`` with scalars (``None`` or ``+-inf``
      for no bound), arrays shaped like ``x0``, or pytrees with the structure
      of ``x0``; for an array ``x0`` also a sequence of ``(lo, hi)`` pairs, one
      per variable, or an object with ``.lb`` and ``.ub`` (``scipy.optimize.Bounds``).
    tol: as in SciPy: the default of ``ftol`` and ``gtol`` in ``options``.
    callback: called on the host after each iteration, as in SciPy:
      ``callback(intermediate_result)`` (that exact parameter name) gets an
      :class:`IntermediateResult`, any other ``callback(xk)`` a copy of ``x``.
      Raising ``StopIteration`` stops the solve (status 99); the return value
      is ignored. When None, no host callback is in the graph.
    options: SciPy's options dict: ``maxcor, ftol, gtol, maxiter, maxfun,
      maxls, iprint, disp`` (and any keyword below); ``eps``,
      ``finite_diff_rel_step`` and ``workers`` configure SciPy's finite
      differences and are accepted and ignored (gradients here are exact).
    maxcor: number of correction pairs kept (``m``).
    ftol: relative reduction tolerance (SciPy's ``ftol = factr * eps``).
    gtol: projected-gradient tolerance (``pgtol``).
    maxiter: maximum number of iterations.
    maxfun: maximum number of evaluations of ``f`` and ``g``.
    maxls: maximum number of evaluations in one line search. The three
      limits may be fractional (or ``inf``), compared as SciPy compares
      them: ``nit >= maxiter``, ``nfev > maxfun``.
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
    has_aux: ``fun`` returns ``(f, aux)`` (with ``jac=True``: ``((f, aux),
      grad)``); ``result.aux`` is ``aux`` at the solution.
    x_scale: the variables' scales ``s`` (a positive scalar, or an array or
      pytree like ``x0``, may be traced), or ``"auto"``: the solver works on
      ``y = x / s`` and the result (``x``, ``jac``, ``hess_inv``,
      ``history.x``) is in the caller's variables; ``gtol`` then applies to
      the scaled projected gradient ``s * proj g`` (the variables the solver
      sees; SciPy's users comparing runs: ``x_scale=None`` is SciPy's test),
      ``ftol`` to ``f`` as before. ``"auto"`` takes ``s_i`` from the box width
      ``u_i - l_i`` where both bounds are finite and from the curvature at
      ``x0``, ``1 / sqrt(|H_ii|)``, elsewhere; as powers of two relative to
      each group's geometric mean, leaving variables within a factor 16 of it
      at 1, and boxes whose geometric-mean width is beyond a factor 16 of 1
      also scaled by it (:mod:`jax_lbfgsb._scaling`,
      ``benchmarks/RESULTS_scaling.md``). ``None`` or ``1``: no scaling.

  ``x0`` may also be a list of numbers or an integer array, as in SciPy: it
  becomes float64 (float32, with a one-time warning, when ``jax_enable_x64``
  is off).

  Returns:
    :class:`OptimizeResult`; ``status``, ``message`` (SciPy's text),
    ``cause`` (plain words) and ``termination`` say why it stopped.

  Raises:
    TypeError: for an unknown option, a complex ``x0``, or a ``fun`` that
      does not return a scalar.
    ValueError: for another ``method``, ``hess``, ``hessp`` or
      ``constraints``, bounds that do not fit ``x0`` or have ``lower > upper``
      (when concrete), ``maxcor < 1`` or ``maxls < 1``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jax_lbfgsb import minimize
    >>> def rosen(x):
    ...   return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    >>> res = minimize(rosen, jnp.array([-1.2, 1.0]), bounds=(-1.5, 0.8))
    >>> print(res.x.round(4), f"{res.fun:.4f}", int(res.nit), res.message)
    [0.8  0.64] 0.0400 3 CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL

  References:
    Byrd, Lu, Nocedal, Zhu, `A limited memory algorithm for bound constrained
    optimization <https://doi.org/10.1137/0916069>`_, SIAM J. Sci. Comput.
    16(5), 1995. Morales and Nocedal, `Remark on "Algorithm 778"
    <https://doi.org/10.1145/2049662.2049669>`_, ACM TOMS 38(1), 2011.
  """
  if method is not None and (not isinstance(method, str) or method.lower() != "l-bfgs-b"):
    raise ValueError(
        f"minimize: method={method!r} is not available; jax_lbfgsb implements L-BFGS-B only"
        " (method=None or 'L-BFGS-B'). For other methods use scipy.optimize.minimize or optax."
    )
  for name, value in (("hess", hess), ("hessp", hessp)):
    if value is not None:
      raise ValueError(f"minimize: L-BFGS-B takes no {name} (it builds its own curvature model); drop `{name}`.")
  if constraints is not None and (not isinstance(constraints, (tuple, list, dict)) or len(constraints)):
    raise ValueError(
        "minimize: L-BFGS-B handles bounds only, not constraints; drop `constraints` (SciPy's"
        " SLSQP, trust-constr or COBYLA take them), or express them as bounds or penalties."
    )
  given = dict(maxcor=maxcor, ftol=ftol, gtol=gtol, maxiter=maxiter, maxfun=maxfun, maxls=maxls, history=history,
               iprint=iprint, ls_ftol=ls_ftol, ls_gtol=ls_gtol, pgtol_rel=pgtol_rel, xtol_rel=xtol_rel,
               has_aux=has_aux, x_scale=x_scale)
  merged = given if not (options or tol is not None or unknown) else _merge_options(
      given, dict(options or {}), tol, unknown)
  (maxcor, ftol, gtol, maxiter, maxfun, maxls, history, iprint, ls_ftol, ls_gtol, pgtol_rel, xtol_rel, has_aux,
   x_scale) = (merged[k] for k in given)
  checked = check_options(maxcor=maxcor, ftol=ftol, gtol=gtol, maxiter=maxiter, maxfun=maxfun, maxls=maxls,
                          history=history, ls_ftol=ls_ftol, ls_gtol=ls_gtol, pgtol_rel=pgtol_rel, xtol_rel=xtol_rel)
  warm, scale = None, None
  if isinstance(x0, OptimizeResult):
    if x_scale is not None:
      raise ValueError("x_scale: a warm start keeps the scales of the solve it continues (result.x_scale);"
                       " leave x_scale out.")
    warm, scale, x0 = x0.state, x0.x_scale, x0.x
    if (warm.history.f.shape[0] if warm.history is not None else 0) != history:
      raise ValueError(
          "history: continuing a solve needs the same history= as the solve that"
          f" produced x0 (got history={history})."
      )
  setup = prepare(fun, x0, args, bounds, jac=jac, has_aux=has_aux, x_scale=x_scale,
                  options={k: checked[k] for k in ("ftol", "gtol", "maxiter", "maxfun", "maxls", "ls_ftol", "ls_gtol",
                                                   "pgtol_rel", "xtol_rel")})
  if warm is not None:
    setup = dataclasses.replace(setup, scale=scale)
  host_callback = None
  if callback is not None:
    host_callback = _HostCallback(callback, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), setup.x0))
  printer = IprintPrinter(int(iprint)) if iprint >= 0 else None
  hooks = Hooks(history=int(history), callback=host_callback, printer=printer)
  # Keyed by fun's jaxpr, not its identity (prepare): a new closure of the
  # same code reuses the compiled solve, with the arrays it closes over as inputs.
  return _result(*_solve_jit(setup, int(maxcor), hooks, warm))
