"""``LBFGSB``: a drop-in for ``jaxopt.LBFGSB`` (jaxopt is no longer maintained).

The constructor, ``run``, ``init_state``, ``update``, ``optimality_fun`` and
``l2_optimality_error`` follow jaxopt 0.8.5; the solver underneath is SciPy's
L-BFGS-B exactly: ``run`` is :func:`~jax_lbfgsb.minimize`, ``init_state`` is
:func:`jax_lbfgsb._solver.init` and ``update`` one iteration of
:func:`jax_lbfgsb._solver.advance`, the driver of ``minimize``'s loop.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jax_lbfgsb import _solver
from jax_lbfgsb._inputs import Setup, broadcast_like, prepare
from jax_lbfgsb._iprint import IprintPrinter
from jax_lbfgsb._minimize import OptimizeResult, _result, fast_compile_jit, minimize, outputs, unscaled
from jax_lbfgsb._objective import solve_scale, solver_problem
from jax_lbfgsb._options import check_options
from jax_lbfgsb._solver import Box, Hooks, advance, init, resume
from jax_lbfgsb._status import Outcome, codes

__all__ = ["LBFGSB", "LbfgsbState", "OptStep"]

# jaxopt has no evaluation limit.
_MAXFUN = int(np.iinfo(np.int32).max)
# Terminations where the last line search failed (SciPy's ABNORMAL ends, f and g finite).
_LS_FAILED = codes(outcome=Outcome.LINE_SEARCH_FAILED)
# The line-search and H0 knobs of jaxopt: only their defaults have a meaning here.
_LINE_SEARCH_DEFAULTS = {
    "linesearch": "zoom", "linesearch_init": "increase", "increase_factor": 1.5,
    "max_stepsize": 1.0, "min_stepsize": 1e-6,
}
_H0_DEFAULTS = {"theta": 1.0, "use_gamma": True}


class OptStep(NamedTuple):
  """``(params, state)``, as jaxopt's ``OptStep``."""

  params: Any
  state: Any


class LbfgsbState(NamedTuple):
  """The state of :class:`LBFGSB`: jaxopt's fields (in jaxopt's order) and the solve.

  Attributes:
    iter_num: iterations made (SciPy's ``nit``).
    value: ``f(params)``.
    grad: ``grad f(params)``, with the structure of ``params``.
    stepsize: step length accepted by the last line search (0 before any).
    error: ``max_i |clip(x - g, l, u) - x|_i``, jaxopt's stopping criterion
      (the projected gradient's inf-norm, compared with ``tol``).
    aux: with ``has_aux``, the aux output of ``fun`` at ``params``; else None.
    failed_linesearch: whether the solve ended because a line search failed
      (an ``ABNORMAL`` termination); a failure that SciPy's algorithm recovers
      from by resetting the memory is not reported.
    num_fun_eval: evaluations of ``fun`` (value and gradient together) by the
      solver: after ``k`` updates from :meth:`LBFGSB.init_state`, those of
      ``run`` with ``maxiter=k``; an ``update`` from params other than the
      state's, or a ``run`` continuing an :class:`OptStep`, evaluates once more
      at its start. Not the ``has_aux`` evaluation.
    num_grad_eval: equal to ``num_fun_eval``.
    num_linesearch_iter: evaluations made by line searches.
    result: the :class:`~jax_lbfgsb.OptimizeResult` of the solve, whose
      memory ``update`` and ``run`` continue from (``result.termination``
      says why it stopped, ``result.hess_inv`` is the inverse Hessian).
  """

  iter_num: Any
  value: Any
  grad: Any
  stepsize: Any
  error: Any
  aux: Any = None
  failed_linesearch: Any = False
  num_fun_eval: Any = 0
  num_grad_eval: Any = 0
  num_linesearch_iter: Any = 0
  result: Optional[OptimizeResult] = None


def _unsupported(field: str, value: Any, why: str) -> ValueError:
  return ValueError(f"LBFGSB: {field}={value!r} is not supported: {why}")


def _as_opt_step(init_params: Any) -> OptStep | None:
  """``init_params`` as an :class:`OptStep` to continue from, or None for a pytree."""
  if not (isinstance(init_params, tuple) and hasattr(init_params, "params") and hasattr(init_params, "state")):
    return None
  if not isinstance(init_params.state, LbfgsbState) or init_params.state.result is None:
    raise TypeError(
        "LBFGSB: init_params is an OptStep whose state is not a jax_lbfgsb LbfgsbState (one"
        " from jaxopt?); pass its .params to start a new solve."
    )
  return OptStep(*init_params)


def _iterate(setup: Setup, maxcor: int, hooks: Hooks, solver: _solver.LbfgsbState | None):
  """The jitted ``init_state`` (``solver`` None: :func:`~jax_lbfgsb._solver.init` at ``setup.x0``) or
  ``update`` (one iteration by :func:`~jax_lbfgsb._solver.advance` from ``setup.x0``, continuing ``solver``).

  ``update`` continues ``solver`` exactly, evaluating nothing before the
  line search, when ``x0`` is the solve's ``x`` (as the last update or
  ``run`` returned it) in the same bounds; from other params it evaluates
  there first and starts over, keeping the memory
  (:func:`~jax_lbfgsb._solver.resume` with ``x``). An update keeps the
  scales of the solve it continues. Returns :func:`outputs` and the line
  searches' evaluations.
  """
  x_flat, unravel, fun_and_grad = setup.objective()
  scale = setup.scale
  if solver is None:
    scale = solve_scale(fun_and_grad, setup.args, setup.auto_scale, scale, x_flat, setup.l, setup.u)
  fg, params, l, u, y = solver_problem(fun_and_grad, setup.args, scale, setup.l, setup.u, x_flat)
  fg, box = functools.partial(fg, params=params), Box.of(l, u)
  if solver is None:
    state = init(fg, y, box, setup.options, maxcor, hooks)._replace(box=box)
    return outputs(setup, unravel, state, scale), jnp.zeros((), jnp.int32)
  landed = unscaled(solver, setup.l, setup.u, scale)[0]  # the solve's x, as returned
  start = resume(fg, solver, box, setup.options, hooks, x=jnp.where(jnp.all(x_flat == landed), solver.x, y))
  state = advance(fg, start, box, setup.options, start.nit + 1, hooks)._replace(box=box)
  return outputs(setup, unravel, state, scale), state.nfev - start.nfev


_iterate_jit = fast_compile_jit(_iterate, ("maxcor", "hooks"))


@dataclasses.dataclass(frozen=True)
class LBFGSB:
  """L-BFGS-B with jaxopt's ``LBFGSB`` interface, solved by SciPy's algorithm.

  A drop-in for ``jaxopt.LBFGSB`` (0.8.5): the same constructor,
  ``run(init_params, bounds, *args, **kwargs) -> OptStep(params, state)``,
  ``init_state``, ``update``, ``optimality_fun`` and ``l2_optimality_error``.
  The iterations are those of :func:`~jax_lbfgsb.minimize` (SciPy's
  L-BFGS-B: Moré–Thuente line search, ``H0`` and first step as in L-BFGS-B),
  stopped when jaxopt's ``error`` (the projected gradient's inf-norm) is at
  most ``tol`` (``gtol=tol``, ``ftol=0``, no evaluation limit), after
  ``maxiter`` iterations, or when a line search fails. Unlike jaxopt, ``run``
  makes no iteration when ``init_params`` already meets ``tol``. A ``tol``
  below what a line search on ``f`` resolves (a projected gradient of about
  ``sqrt(eps |f| ||H||)``: ~1e-8 in float64 for ``f`` and the Hessian of order
  one) may end, as in SciPy, when ``f`` stops decreasing with ``error > tol``
  (``state.result.termination`` says so).

  ``run`` works under :func:`jax.jit` and :func:`jax.vmap`, and
  :func:`jax.grad` differentiates ``run(...).params`` (and ``value``,
  ``grad``) with respect to ``args``, array ``kwargs`` and the bounds by
  implicit differentiation, as jaxopt's default does; the derivatives are
  NaN when the solve stopped unconverged (``maxiter``, a failed line search:
  ``state.result.termination``), so differentiate ``run``, not ``update``.

  Migration: ``jaxopt.LBFGSB`` -> ``jax_lbfgsb.LBFGSB``, ``jaxopt.OptStep`` ->
  ``jax_lbfgsb.OptStep``; the state keeps jaxopt's fields except
  ``s_history``, ``y_history``, ``theta`` and ``num_updates``, whose
  counterpart is ``state.result`` (an :class:`~jax_lbfgsb.OptimizeResult`:
  ``hess_inv``, ``termination``, ``message``).

  Attributes:
    fun: ``fun(params, *args, **kwargs) -> value`` (see ``value_and_grad``
      and ``has_aux``).
    value_and_grad: False; True when ``fun`` returns ``(value, grad)``; or a
      callable returning them, ``fun`` then giving the value.
    has_aux: whether ``fun`` returns ``(value, aux)`` (``((value, aux), grad)``
      with ``value_and_grad``); ``state.aux`` is ``aux`` at the returned
      ``params``.
    maxiter: maximum number of iterations.
    tol: tolerance on ``error``, SciPy's ``gtol``.
    stepsize: must be ``<= 0`` (line search); a fixed or callable step raises.
    linesearch, linesearch_init, increase_factor, max_stepsize, min_stepsize:
      only the defaults are accepted: the line search is SciPy's (MINPACK-2
      ``dcsrch``) with L-BFGS-B's first trial step (1, or ``1/||d||`` first).
    stop_if_linesearch_fails: ignored: as in SciPy, a failed line search
      resets the memory once and then ends the solve.
    condition, decrease_factor: ignored with a DeprecationWarning (as jaxopt).
    maxls: maximum number of evaluations in one line search.
    theta, use_gamma: only the defaults are accepted: ``H0 = I / theta_k``
      with L-BFGS-B's ``theta_k = y'y / s'y`` (jaxopt's ``use_gamma=True``).
    history_size: number of correction pairs kept (SciPy's ``maxcor``).
    implicit_diff, implicit_diff_solve, jit, unroll: accepted and ignored:
      they only choose how jaxopt takes derivatives and runs its loop. Each
      solve is one jitted ``lax.while_loop``, and derivatives of ``run`` are
      always implicit, the free system solved by conjugate gradients on
      Hessian-vector products (where jaxopt, with ``implicit_diff=False``,
      would unroll its loop instead: both give the derivative of the
      solution, the implicit one without storing the iterates).
    verbose: True or 1 prints ``f`` and ``|proj g|`` at each iteration
      (``minimize``'s ``iprint=1``), 2 also the line searches (``iprint=99``).
    x_scale: ours, not jaxopt's: variable scales or ``"auto"`` (see
      :func:`~jax_lbfgsb.minimize`); ``update`` and a continued ``run`` keep
      the scales of the solve they continue.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jax_lbfgsb import LBFGSB
    >>> def fun(x, a, scale=1.0):
    ...   return scale * jnp.sum((x - a) ** 2) + jnp.sum(x) ** 2
    >>> solver = LBFGSB(fun=fun, tol=1e-8)
    >>> a = jnp.array([1.0, -2.0, 0.5])
    >>> sol = solver.run(jnp.zeros(3), (-1.0, 1.0), a, scale=2.0)
    >>> print(sol.params.round(4), f"{sol.state.value:.4f}", bool(sol.state.error <= 1e-8))
    [ 0.875 -1.     0.375] 2.1250 True
  """

  fun: Callable[..., Any]
  value_and_grad: Union[bool, Callable[..., Any]] = False
  has_aux: bool = False

  maxiter: int = 50
  tol: float = 1e-3

  stepsize: Union[float, Callable[[Any], float]] = 0.0
  linesearch: str = "zoom"
  linesearch_init: str = "increase"
  stop_if_linesearch_fails: bool = False
  condition: Any = None
  maxls: int = 30
  decrease_factor: Any = None
  increase_factor: float = 1.5
  max_stepsize: float = 1.0
  min_stepsize: float = 1e-6

  theta: float = 1.0
  history_size: int = 10
  use_gamma: bool = True

  implicit_diff: bool = True
  implicit_diff_solve: Optional[Callable[..., Any]] = None

  jit: bool = True
  unroll: Union[str, bool] = "auto"

  verbose: Union[bool, int] = False
  x_scale: Any = None

  def __post_init__(self):
    search = "the line search is SciPy's L-BFGS-B search (MINPACK-2 dcsrch, Moré–Thuente)"
    if callable(self.stepsize) or self.stepsize > 0:
      raise _unsupported("stepsize", self.stepsize, f"{search}; fixed step sizes are not available (use <= 0).")
    for field, default in _LINE_SEARCH_DEFAULTS.items():
      if getattr(self, field) != default:
        raise _unsupported(
            field, getattr(self, field),
            f"{search}, with L-BFGS-B's first trial step (1, or 1/||d|| at the first iteration);"
            f" leave {field} at its default {default!r}.")
    for field, default in _H0_DEFAULTS.items():
      if getattr(self, field) != default:
        raise _unsupported(
            field, getattr(self, field),
            "the initial Hessian follows L-BFGS-B (theta I with theta = y'y / s'y, jaxopt's"
            f" use_gamma=True with theta=1.0); leave {field} at its default {default!r}.")
    for field in ("condition", "decrease_factor"):
      if getattr(self, field) is not None:
        warnings.warn(f"Argument {field} is deprecated (and ignored, as by jaxopt)", DeprecationWarning, stacklevel=3)
    self._options(self.maxiter)  # raises for a bad history_size, tol, maxiter or maxls, at construction

  def _options(self, maxiter: Any) -> dict[str, Any]:
    """The solve's checked options (:func:`~jax_lbfgsb._options.check_options`, named as the fields are)."""
    return check_options({"maxcor": "history_size", "gtol": "tol"}, "LBFGSB", maxcor=self.history_size, ftol=0.0,
                         gtol=self.tol, maxiter=maxiter, maxfun=_MAXFUN, maxls=self.maxls)

  # ------------------------------------------------------------------ fun's forms

  def _solver_fun(self, kwargs: dict) -> tuple[Callable[..., Any], bool]:
    """``(fun, jac)`` for :func:`minimize`, with ``kwargs`` bound (arrays in them become
    traced inputs of the solve, so they get implicit derivatives)."""
    if callable(self.value_and_grad):
      base, jac = self.value_and_grad, True
    else:
      base, jac = self.fun, bool(self.value_and_grad)
    if not kwargs:
      return base, jac
    return (lambda x, *args: base(x, *args, **kwargs)), jac

  def _value_grad_aux(self, params: Any, args: tuple, kwargs: dict) -> tuple[Any, Any, Any]:
    if callable(self.value_and_grad):
      out = self.value_and_grad(params, *args, **kwargs)
    elif self.value_and_grad:
      out = self.fun(params, *args, **kwargs)
    else:
      out = jax.value_and_grad(self.fun, has_aux=self.has_aux)(params, *args, **kwargs)
    (value, aux), grad = out if self.has_aux else ((out[0], None), out[1])
    return value, grad, aux

  # ------------------------------------------------------------------ the solve

  def _minimize(self, x0: Any, bounds: Any, args: tuple, kwargs: dict, maxiter: Any) -> OptimizeResult:
    fun, jac = self._solver_fun(kwargs)
    verbose = int(self.verbose)
    return minimize(
        fun, x0, bounds=bounds, args=tuple(args), jac=jac, has_aux=self.has_aux, maxcor=self.history_size, ftol=0.0,
        gtol=self.tol, maxiter=maxiter, maxfun=_MAXFUN, maxls=self.maxls,
        iprint=-1 if verbose <= 0 else (1 if verbose == 1 else 99),
        x_scale=None if isinstance(x0, OptimizeResult) else self.x_scale,
    )

  def _state(self, result: OptimizeResult, aux: Any, searches: Any) -> LbfgsbState:
    """The state of ``result``, whose line searches made ``searches`` evaluations."""
    return LbfgsbState(
        iter_num=result.nit, value=result.fun, grad=result.jac, stepsize=result.state.stp,
        error=result.state.sbgnrm, aux=aux,
        failed_linesearch=jnp.isin(result.termination, jnp.asarray(_LS_FAILED, jnp.int32)),
        num_fun_eval=result.nfev, num_grad_eval=result.njev, num_linesearch_iter=searches, result=result,
    )

  def _iterate(self, params: Any, bounds: Any, args: tuple, kwargs: dict, previous: LbfgsbState | None
               ) -> OptStep:
    """:meth:`init_state` (``previous`` None) or :meth:`update` (one iteration continuing ``previous``)."""
    fun, jac = self._solver_fun(kwargs)
    setup = prepare(fun, params, tuple(args), bounds, jac=jac, has_aux=self.has_aux,
                    x_scale=self.x_scale if previous is None else None, options=self._options(_MAXFUN),
                    name="LBFGSB: params")
    solver = None
    if previous is not None:
      setup, solver = dataclasses.replace(setup, scale=previous.result.x_scale), previous.result.state
    printer = IprintPrinter(1 if int(self.verbose) == 1 else 99) if previous is not None and self.verbose else None
    out, searches = _iterate_jit(setup, self.history_size, Hooks(printer=printer), solver)
    result = _result(*out)
    if previous is not None:
      searches = previous.num_linesearch_iter + searches
    return OptStep(result.x, self._state(result, result.aux, searches))

  def _continue(self, step: OptStep, bounds: Any, args: tuple, kwargs: dict, iterations: Any) -> OptStep:
    """``iterations`` more iterations from ``step``, with its memory, from ``step.params``."""
    result = step.state.result
    x = ravel_pytree(step.params)[0].astype(result.state.x.dtype)
    if result.x_scale is not None:  # the solver's variables are x / scale; the solve's own x where it returned it
      x = jnp.where(jnp.all(x == ravel_pytree(result.x)[0]), result.state.x, x / result.x_scale)
    warm = result._replace(x=step.params, state=result.state._replace(x=x))
    result = self._minimize(warm, bounds, args, kwargs, maxiter=result.state.nit + iterations)
    # a continued solve evaluates once at its start
    searches = step.state.num_linesearch_iter + (result.nfev - step.state.result.nfev - 1)
    return OptStep(result.x, self._state(result, result.aux, searches))

  def run(self, init_params: Any, bounds: Any = None, *args, **kwargs) -> OptStep:
    """Runs the solver from ``init_params`` for at most ``maxiter`` iterations.

    Args:
      init_params: a float array or pytree of them, or an :class:`OptStep`
        of this solver to continue (with its memory) for ``maxiter`` more
        iterations.
      bounds: None or ``(lower, upper)``, each a scalar (``None`` or
        ``+-inf``: no bound) or a pytree with the structure of the params.
      *args: positional arguments of ``fun``.
      **kwargs: keyword arguments of ``fun``.

    Returns:
      ``OptStep(params, state)``; with ``maxiter=0``, as jaxopt, ``init_params``
      (projected into the bounds) and :meth:`init_state`.
    """
    step = _as_opt_step(init_params)
    if not isinstance(self.maxiter, jax.Array) and self.maxiter <= 0:  # as jaxopt: no iteration
      if step is not None:
        return step
      state = self.init_state(init_params, bounds, *args, **kwargs)
      return OptStep(state.result.x, state)
    if step is not None:
      return self._continue(step, bounds, args, kwargs, self.maxiter)
    result = self._minimize(init_params, bounds, args, kwargs, maxiter=self.maxiter)
    # every evaluation but the first is a line search's
    return OptStep(result.x, self._state(result, result.aux, result.nfev - 1))

  def init_state(self, init_params: Any, bounds: Any = None, *args, **kwargs) -> LbfgsbState:
    """The state at ``init_params`` (projected into the bounds) before any iteration: one evaluation.

    ``value``, ``grad`` and ``aux`` are differentiable with respect to
    ``args`` and ``kwargs``. ``result.termination`` is ``RUNNING``, or
    ``CONVERGED_PGTOL`` where ``init_params`` already meet ``tol`` (updates
    then stay put). An :class:`OptStep` gives its own state.
    """
    step = _as_opt_step(init_params)
    if step is not None:
      return step.state
    return self._iterate(init_params, bounds, args, kwargs, None).state

  def update(self, params: Any, state: LbfgsbState, bounds: Any = None, *args, **kwargs) -> OptStep:
    """One iteration from ``params``, continuing the solve in ``state``.

    From the ``params`` that the last ``update`` (or :meth:`init_state`,
    :meth:`run`) returned, with the same ``args`` and ``bounds``, it continues
    the solve exactly and evaluates ``fun`` only in its line search: ``k``
    updates from :meth:`init_state` make the iterates and ``num_fun_eval`` of
    ``run`` with ``maxiter=k``. From other ``params`` (the caller moved them)
    it evaluates ``fun`` there first (one more ``num_fun_eval``) and restarts
    from them, keeping the memory. ``args`` are assumed unchanged, as by
    jaxopt, which also reuses ``state.value`` and ``state.grad``. Once the
    solve has converged, ``params`` stay put.
    """
    if isinstance(params, OptStep):
      params = params.params
    return self._iterate(params, bounds, args, kwargs, state)

  # ------------------------------------------------------------------ optimality

  def optimality_fun(self, sol: Any, bounds: Any, *args, **kwargs) -> Any:
    """jaxopt's optimality residual: ``clip(x - g, l, u) - x`` (``g`` when ``bounds`` is None)."""
    _, grad, _ = self._value_grad_aux(sol, args, kwargs)
    if bounds is None:
      return grad
    flat, unravel = ravel_pytree(sol)
    l, u = (unravel(broadcast_like(b, sol, flat.dtype, fill, name, "bounds"))
            for b, fill, name in zip(bounds, (-np.inf, np.inf), ("lower", "upper")))
    return jax.tree.map(lambda x, g, l, u: jnp.clip(x - g, l, u) - x, sol, grad, l, u)

  def l2_optimality_error(self, params: Any, bounds: Any, *args, **kwargs) -> Any:
    """The l2 norm of :meth:`optimality_fun`."""
    if isinstance(params, OptStep):
      params = params.params
    leaves = jax.tree.leaves(self.optimality_fun(params, bounds, *args, **kwargs))
    return jnp.sqrt(sum(jnp.vdot(leaf, leaf).real for leaf in leaves))
