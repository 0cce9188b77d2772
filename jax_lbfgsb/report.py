"""What a finished solve did and why it stopped, in plain words.

Host-side only: everything here runs after :func:`~jax_lbfgsb.minimize` has
returned, on concrete NumPy values; nothing here is imported by the jitted path.

* :func:`timed_minimize` runs a solve twice and returns a :class:`Timing` that
  separates the compile time from the CPU and wall time of the solve itself.
* :func:`diagnose` explains early or surprising stops (fixed variables, a
  box that blocks every free variable, an exactly-zero gradient, a badly
  scaled ``f``, the float32 precision floor, NaN/inf, limits) in sentences.
* :func:`report` is the text report of the classic interactive L-BFGS-B page:
  the termination reason, ``f``, counts, times, every ``x(i)`` and ``g(i)``,
  bound activity and the diagnosis.

Example:
  >>> import jax.numpy as jnp
  >>> import numpy as np
  >>> from jax_lbfgsb import minimize, problems
  >>> rosen = problems.rosenbrock(2).fun
  >>> lower, upper = np.array([-np.inf, 1.5]), np.array([1.0, np.inf])
  >>> res = minimize(rosen, jnp.array([1.0, 1.5]), bounds=(lower, upper))
  >>> for note in diagnose(res, lower, upper):
  ...   print(note[:72])
  The solve stopped at iteration 0, before taking any step: the largest co
  All 2 free variables sit at a bound with the descent direction -g pointi
"""

from __future__ import annotations

import contextlib
import io
import textwrap
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jax_lbfgsb._bounds import projected_gradient
from jax_lbfgsb._inputs import canonicalize_bounds
from jax_lbfgsb._minimize import OptimizeResult, minimize
from jax_lbfgsb._status import Termination

__all__ = ["Timing", "timed_minimize", "diagnose", "report"]

_LARGE_PG = 1e-3  # 100 x SciPy's default gtol: "the projected gradient is still large"
_WIDTH = 88


class Timing(NamedTuple):
  """Seconds spent by :func:`timed_minimize`.

  Attributes:
    wall: wall time of the solve alone (the second, already compiled call).
    cpu: CPU time of the solve alone (``time.process_time``: all threads of
      this process, so it can exceed ``wall``).
    first_wall: wall time of the first call: tracing, compiling and solving.
    first_cpu: CPU time of the first call.
  """

  wall: float
  cpu: float
  first_wall: float
  first_cpu: float

  @property
  def compile(self) -> float:
    """Tracing and compile time, estimated as ``first_wall - wall`` (0 when cached)."""
    return max(self.first_wall - self.wall, 0.0)


def _timed_call(fun, x0, kwargs) -> tuple[OptimizeResult, float, float]:
  wall, cpu = time.perf_counter(), time.process_time()
  result = minimize(fun, x0, **kwargs)
  jax.block_until_ready(result.state)
  jax.effects_barrier()  # iprint and callback output included
  return result, time.perf_counter() - wall, time.process_time() - cpu


def timed_minimize(fun, x0, **kwargs) -> tuple[OptimizeResult, Timing]:
  """:func:`~jax_lbfgsb.minimize` timed: compile time apart from the solve's CPU and wall time.

  Calls ``minimize(fun, x0, **kwargs)`` twice: the first call traces, compiles
  and solves, the second reuses the compiled solve, so ``first - second`` is
  the compile time. The ``iprint`` output of the second call is discarded (its
  ``callback``, if any, does run twice).

  Returns:
    ``(result, timing)``: the second call's :class:`~jax_lbfgsb.OptimizeResult`
    (identical to the first's) and a :class:`Timing`.

  Example:
    >>> import jax.numpy as jnp
    >>> from jax_lbfgsb import problems
    >>> res, timing = timed_minimize(problems.rosenbrock(2).fun, jnp.array([-1.2, 1.0]))
    >>> int(res.nit), all(t >= 0.0 for t in timing), timing.compile >= 0.0
    (36, True, True)
  """
  _, first_wall, first_cpu = _timed_call(fun, x0, kwargs)
  with contextlib.redirect_stdout(io.StringIO()):
    result, wall, cpu = _timed_call(fun, x0, kwargs)
  return result, Timing(wall, cpu, first_wall, first_cpu)


class _Solve(NamedTuple):
  """One solve's final state as flat float64 NumPy arrays, with the bound masks."""

  x: np.ndarray
  g: np.ndarray
  lower: np.ndarray
  upper: np.ndarray
  pg: np.ndarray  # projected gradient (SciPy's projgr), componentwise
  fixed: np.ndarray  # lower == upper
  at_lower: np.ndarray  # not fixed, x == lower
  at_upper: np.ndarray  # not fixed, x == upper
  outward: np.ndarray  # at a bound with -g, the descent direction, pointing out of the box
  code: Termination
  nit: int
  nfev: int
  f: float
  fold: float
  dtype: np.dtype
  hess_inv: Any  # the result's InverseHessian over the raveled variables


def _flatten(result: OptimizeResult, bounds) -> _Solve:
  """``result`` and ``bounds`` (any form ``minimize`` takes) as flat arrays."""
  if np.ndim(result.fun) != 0:
    raise ValueError(
        "report and diagnose take one solve; this result is batched (fun has shape"
        f" {np.shape(result.fun)}): index it first, e.g. jax.tree.map(lambda a: a[0], result)."
    )
  dtype = np.dtype(result.fun.dtype)
  x = np.asarray(ravel_pytree(result.x)[0], np.float64)
  g = np.asarray(ravel_pytree(result.jac)[0], np.float64)
  l, u = (np.asarray(b, np.float64) for b in canonicalize_bounds(bounds, result.x, dtype))
  fixed = l == u
  at_lower = ~fixed & (x <= l)
  at_upper = ~fixed & (x >= u)
  return _Solve(
      x=x, g=g, lower=l, upper=u, pg=np.asarray(projected_gradient(x, g, l, u)), fixed=fixed,
      at_lower=at_lower, at_upper=at_upper, outward=(at_lower & (g > 0)) | (at_upper & (g < 0)),
      code=Termination(int(result.termination)), nit=int(result.nit), nfev=int(result.nfev),
      f=float(result.fun), fold=float(result.state.fold), dtype=dtype, hess_inv=result.hess_inv,
  )


def _indices(mask: np.ndarray, first: int = 5) -> str:
  """``x(3), x(7), ... (12 in all)``: the first few 1-based indices where ``mask`` holds."""
  where = np.flatnonzero(mask)
  shown = ", ".join(f"x({i + 1})" for i in where[:first])
  return shown + (f", ... ({where.size} in all)" if where.size > first else "")


def _early_stop(s: _Solve, pg_inf: float) -> list[str]:
  """Why a solve with free variables passed the gtol test at its start (nit == 0)."""
  free = ~s.fixed
  nfree = int(free.sum())
  notes = [
      "The solve stopped at iteration 0, before taking any step: the largest component of the"
      f" projected gradient at the start is {'exactly 0' if pg_inf == 0 else f'{pg_inf:.3g}'},"
      " which already passes the gtol test."
  ]
  zero = free & (s.g == 0)
  if zero[free].all():
    notes.append(
        f"The gradient of f is exactly zero in all {nfree} free variables at x0: f is flat there,"
        " so no direction decreases it. In a neural network this is a saturated or dead unit (a"
        " ReLU whose input is negative, or a tanh/sigmoid far out in its tail) that passes no"
        " gradient back. Start from a point where the unit is active, or change the objective"
        " (e.g. maximize the unit's input rather than its output)."
    )
  elif (zero | s.outward)[free].all():
    notes.append(_outward_note(s, free, zero))
  else:
    notes.append(
        f"x0 may already be a minimizer to within gtol, or gtol is too loose for the scale of f:"
        f" |f| = {abs(s.f):.3g} and the largest gradient component is {np.abs(s.g[free]).max():.3g}."
        " Lower gtol, or rescale f so that its gradient at a poor point is of order 1."
    )
  if s.fixed.any():
    notes.append(
        f"{int(s.fixed.sum())} of {s.x.size} variables are fixed by their bounds (lower == upper;"
        f" {_indices(s.fixed)}): the solve never moves them and leaves their gradient out, but"
        " they are not what stopped it."
    )
  return notes


def _outward_note(s: _Solve, free: np.ndarray, zero: np.ndarray) -> str:
  down, up = s.at_lower & s.outward, s.at_upper & s.outward
  note = (
      f"All {int(free.sum())} free variables sit at a bound with the descent direction -g pointing"
      f" out of the box ({int(down.sum())} at a lower bound with g > 0, {int(up.sum())} at an upper"
      f" bound with g < 0; {_indices(s.outward)})"
  )
  if zero.any():
    note += f", or have a gradient of exactly 0 ({_indices(zero)})"
  return note + (
      ": f decreases only by leaving the box, so the projected gradient is 0 and x is optimal"
      " for these bounds. If that is unexpected, check the bounds and the scale of x (e.g."
      " pixels in [0, 255] given to a model that expects [0, 1]), or start inside the box."
  )


def _ftol_notes(s: _Solve, pg_inf: float) -> list[str]:
  """Why the relative-reduction (ftol) test fired, when the gradient says x has not settled.

  Two scale-free yardsticks: Dennis and Schnabel's relative gradient
  ``max_i |pg_i| max(|x_i|, 1) / max(|f|, 1)``, and the quasi-Newton step still
  to take, ``||H pg||_inf`` over the variables strictly inside their bounds,
  relative to ``max(||x||_inf, 1)``. Either above 1e-3 means x is still moving.
  """
  if s.dtype == np.float32 and pg_inf > _LARGE_PG:
    return [_precision_note(s, pg_inf)]
  relgrad = float(np.max(np.abs(s.pg) * np.maximum(np.abs(s.x), 1.0))) / max(abs(s.f), 1.0)
  inside = ~(s.fixed | s.at_lower | s.at_upper)
  step = np.asarray(s.hess_inv.matvec(jnp.asarray(s.pg, s.dtype)), np.float64)
  step_inf = float(np.abs(step[inside]).max(initial=0.0))
  if max(relgrad, step_inf / max(float(np.abs(s.x).max()), 1.0)) <= 1e-3:
    return []
  unsettled = (
      f"ftol stopped the solve although x has not settled: the largest projected-gradient"
      f" component is {pg_inf:.3g} and the quasi-Newton step still to take is about"
      f" {step_inf:.3g} (the last iteration reduced f by {s.fold - s.f:.3g})."
  )
  scale = max(abs(s.fold), abs(s.f))
  if scale < 1.0:
    return [
        f"{unsettled} |f| = {abs(s.f):.3g} is below 1, where the test divides the reduction by"
        " max(|f_k|, |f_k+1|, 1) = 1: it is the absolute test f_k - f_k+1 <= ftol, which a tiny f"
        f" passes at once. Rescale f{_by_power_of_ten(scale)} or lower ftol."
    ]
  return [
      f"{unsettled} Relative to |f| = {abs(s.f):.3g} that reduction is below ftol: f is badly"
      " scaled (e.g. a large constant offset hides its changes), noisy or non-smooth. Remove"
      " offsets or rescale f, or lower ftol."
  ]


def _by_power_of_ten(scale: float) -> str:
  """`` (e.g. multiply it by 1e+11)``: the power of ten that brings ``0 < scale < 1`` to order 1."""
  return f" (e.g. multiply it by {10.0 ** -np.floor(np.log10(scale)):.0e})" if scale > 0 else ""


def _precision_note(s: _Solve, pg_inf: float) -> str:
  eps = float(np.finfo(s.dtype).eps)
  note = (
      f"f = {s.f:.7g} stopped changing at the precision of {s.dtype} (machine epsilon {eps:.2g},"
      f" so changes below about {eps * max(abs(s.f), 1.0):.2g} are lost to rounding) while the"
      f" largest projected-gradient component is still {pg_inf:.3g}."
  )
  if s.dtype == np.float32:
    return note + (
        " Solve in float64: jax.config.update('jax_enable_x64', True) and a float64 x0; or"
        " subtract any large constant from f and rescale x."
    )
  return note + " Subtract any large constant from f and rescale x, or accept x as it is."


def diagnose(result: OptimizeResult, lower: Any = None, upper: Any = None, x0: Any = None) -> list[str]:
  """Explains in plain words why ``result``'s solve stopped, when the message alone may puzzle.

  Looks for: every variable fixed by its bounds; a stop at iteration 0 and its
  cause (a gradient exactly zero at ``x0``, as from a saturated or dead unit,
  or every free variable at a bound with the descent direction -g pointing outward, or a
  ``gtol`` loose for the scale of ``f``); ``ftol`` firing while the projected
  gradient is not small (``f`` tiny or badly scaled; the float32 precision
  floor); ``PRECISION_LIMIT``; a gradient inconsistent with ``f``; NaN or inf and at which iteration; failed line
  searches; iteration and evaluation limits; an ``x0`` outside the bounds.

  Args:
    result: one solve's :class:`~jax_lbfgsb.OptimizeResult` (not a batch).
    lower, upper: the bounds given to ``minimize`` (scalars, ``None``, arrays
      or pytrees shaped like ``x``).
    x0: the starting point, to report variables that were outside the bounds.

  Returns:
    Sentences, most important first; empty when nothing needs explaining.
  """
  if isinstance(result.x, (jax.Array, np.ndarray)):  # lists as arrays: never read as (lo, hi) pairs
    lower, upper = (None if b is None else np.asarray(b, np.float64) for b in (lower, upper))
  return _notes(_flatten(result, (lower, upper)), x0)


def _notes(s: _Solve, x0: Any) -> list[str]:
  pg_inf = float(np.abs(s.pg).max(initial=0.0))
  notes = []
  if x0 is not None:
    start = np.asarray(ravel_pytree(x0)[0], np.float64)
    outside = (start < s.lower) | (start > s.upper)
    if outside.any():
      notes.append(
          f"x0 was outside the bounds in {int(outside.sum())} variable{'s' * (int(outside.sum()) > 1)}"
          f" ({_indices(outside)}): the solve started from its projection onto the box."
      )
  if s.fixed.all():
    return notes + [
        f"All {s.x.size} variables are fixed by their bounds (lower == upper), so there is nothing"
        " to minimize: the projected gradient is 0 by definition and x is x0 projected onto the"
        " bounds. Widen the bounds of the variables you want to optimize."
    ]
  key = s.code.record.diagnosis
  return notes + (_DIAGNOSES[key](s, pg_inf) if key else [])


def _nonfinite_notes(s: _Solve, pg_inf: float) -> list[str]:
  where = ("at the start x0" if s.nfev <= 1
           else f"during iteration {s.nit + 1} (after {s.nit} iterations and {s.nfev} evaluations)")
  return [
      f"f or its gradient became NaN or inf {where}. x is the last point where both were finite."
      " Look for overflow (exp of large values, huge x), log or sqrt of negative values, or a"
      " division by zero inside the bounds; tighter bounds or a rescaled f usually avoid it (or a"
      " larger maxls, when the line search ran out of halvings back from such a region)."
  ]


def _inconsistent_notes(s: _Solve, pg_inf: float) -> list[str]:
  return [
      f"In iteration {s.nit + 1} every trial step raised f although the gradient predicted a"
      " decrease larger than rounding error: the gradient probably does not match f. Compare it"
      " with jax.grad(f)(x) or run jax.test_util.check_grads(f, (x,), order=1)."
  ]


def _line_search_notes(s: _Solve, pg_inf: float) -> list[str]:
  return [
      f"The line search failed in iteration {s.nit + 1} (after {s.nit} iterations and {s.nfev}"
      f" evaluations; largest projected-gradient component {pg_inf:.3g}). With jac=True compare"
      " your gradient with jax.grad; otherwise f is probably non-smooth or noisy near x."
  ]


def _limit_notes(s: _Solve, pg_inf: float) -> list[str]:
  limit = s.code.record.limit
  count = f"{s.nit} iterations" if limit == "maxiter" else f"{s.nfev} evaluations"
  return [
      f"The solve reached {limit} after {count} while the largest projected-gradient"
      f" component is still {pg_inf:.3g}. Raise {limit}, or continue from here:"
      f" minimize(fun, result, ...) resumes this solve with its memory."
  ]


def _stall_notes(s: _Solve, pg_inf: float) -> list[str]:
  if pg_inf <= _LARGE_PG:
    return []
  return [
      f"The last step was tiny while the largest projected-gradient component is still"
      f" {pg_inf:.3g}: the solve may have stalled (f badly scaled or non-smooth) rather than"
      " converged. Lower xtol_rel or rescale x and f."
  ]


# Record.diagnosis -> its notes (jax_lbfgsb._status names the key of each code).
_DIAGNOSES = {
    "nonfinite": _nonfinite_notes,
    "early stop": lambda s, pg_inf: _early_stop(s, pg_inf) if s.nit == 0 else [],
    "ftol": _ftol_notes,
    "precision": lambda s, pg_inf: [_precision_note(s, pg_inf)],
    "inconsistent gradient": _inconsistent_notes,
    "line search": _line_search_notes,
    "limit": _limit_notes,
    "stall": _stall_notes,
    "callback": lambda s, pg_inf: [f"Your callback raised StopIteration after iteration {s.nit}."],
}


def _seconds(t: float) -> str:
  return f"{t * 1e3:.3g} ms" if t < 1.0 else f"{t:.3g} s"


def _wrap(label: str, text: str) -> list[str]:
  return textwrap.wrap(text, _WIDTH, initial_indent=f"{label:<12}", subsequent_indent=" " * 12)


def _table(s: _Solve, names: Sequence[str] | None, max_rows: int) -> list[str]:
  n = s.x.size
  state = np.select([s.fixed, s.at_lower, s.at_upper], ["fixed", "lower", "upper"], "")
  width = max((len(name) for name in names), default=0) + 2 if names is not None else 0
  head = f"{'i':>7}{'name':<{width}}" if names is not None else f"{'i':>7}"
  lines = [f"{head}  {'x(i)':>18}  {'g(i)':>12}  bound"]
  rows = np.arange(n)
  if n > max_rows:
    rows = np.r_[rows[: max_rows // 2], -1, rows[n - (max_rows - max_rows // 2):]]
  for i in rows:
    if i < 0:
      lines.append(f"{'...':>7}  ({n - max_rows} variables not shown; max_rows={max_rows})")
      continue
    label = f"  {names[i]:<{width - 2}}" if names is not None else ""
    lines.append(f"{i + 1:>7}{label}  {s.x[i]:>18.10e}  {s.g[i]:>12.4e}  {state[i]}".rstrip())
  return lines


def report(
    result: OptimizeResult,
    *,
    problem: Any = None,
    bounds: Any = None,
    names: Sequence[str] | None = None,
    timing: Timing | None = None,
    max_rows: int = 20,
) -> str:
  """The text report of a solve, as the classic interactive L-BFGS-B page prints it.

  Args:
    result: one solve's :class:`~jax_lbfgsb.OptimizeResult`.
    problem: the :class:`~jax_lbfgsb.problems.Problem` solved (its name, bounds,
      ``x0`` and known ``f*`` are used; ``f_opt=None`` shows "f* unknown"); or None.
    bounds: without ``problem``, the ``bounds`` given to ``minimize``.
    names: a name per variable for the table (default: just the index).
    timing: the :class:`Timing` of :func:`timed_minimize`, shown when given.
    max_rows: at most this many rows of ``x(i)``, ``g(i)``; the middle is elided.

  Returns:
    The report: termination reason, ``f``, ``nit``, ``nfev``, the projected
    gradient, times, bound activity, the ``x(i)``/``g(i)`` table and the
    :func:`diagnose` notes.

  Example:
    >>> import jax.numpy as jnp
    >>> from jax_lbfgsb import minimize, problems
    >>> p = problems.rosenbrock_box(2)
    >>> res = minimize(p.fun, jnp.asarray(p.x0), bounds=(p.lower, p.upper))
    >>> print(report(res, problem=p))  # doctest: +ELLIPSIS
    problem     rosenbrock_2_box: chained Rosenbrock, n=2, box bounds
    termination CONVERGED_PGTOL (status 0, success)
    ...
    f           4.000000000000e-02   (known f* = 0.04, f - f* = ...)
    nit         3
    nfev        4
    ...
          i                x(i)          g(i)  bound
          1    8.0000000000e-01   -4.0000e-01  upper
          2    6.4000000000e-01   ...
    ...
  """
  if problem is not None and bounds is not None:
    raise ValueError("report: give problem= or bounds=, not both (a problem carries its bounds).")
  x0 = None if problem is None else problem.x0
  s = _flatten(result, bounds if problem is None else (problem.lower, problem.upper))
  if names is not None and len(names) != s.x.size:
    raise ValueError(f"names: expected {s.x.size} names, one per variable; got {len(names)}.")
  lines = []
  if problem is not None:
    lines += _wrap("problem", f"{problem.name}: {problem.description}")
  status = int(result.status)
  lines.append(f"{'termination':<12}{s.code.name} (status {status}, {'success' if status == 0 else 'no success'})")
  lines += _wrap("message", result.message) + _wrap("cause", result.cause)
  f_line = f"{s.f:.12e}"
  f_opt = getattr(problem, "f_opt", None)
  if f_opt is not None:
    f_line += f"   (known f* = {f_opt:.12g}, f - f* = {s.f - f_opt:.3g})"
  elif problem is not None:
    f_line += "   (f* unknown)"
  lines += [f"{'f':<12}{f_line}", f"{'nit':<12}{s.nit}", f"{'nfev':<12}{s.nfev}"]
  lines.append(f"{'|proj g|':<12}{np.abs(s.pg).max(initial=0.0):.3e} (largest component; Euclidean"
               f" norm {np.linalg.norm(s.pg):.3e})")
  if timing is not None:
    lines.append(
        f"{'time':<12}solve {_seconds(timing.wall)} wall, {_seconds(timing.cpu)} CPU; first call"
        f" {_seconds(timing.first_wall)} wall, of which compile ~{_seconds(timing.compile)}"
    )
  free_inside = s.x.size - int(s.fixed.sum() + s.at_lower.sum() + s.at_upper.sum())
  lines += _wrap("bounds", (
      f"{s.x.size} variables: {int(s.at_lower.sum())} at a lower bound, {int(s.at_upper.sum())} at"
      f" an upper bound, {int(s.fixed.sum())} fixed (lower == upper), {free_inside} strictly inside;"
      f" {int(s.outward.sum())} at a bound with the descent direction -g pointing out of the box"
  ))
  lines += [""] + _table(s, names, max_rows)
  notes = _notes(s, x0)
  if notes:
    lines += ["", "diagnosis"]
    for note in notes:
      lines += textwrap.wrap(note, _WIDTH, initial_indent="  - ", subsequent_indent="    ")
  return "\n".join(lines)
