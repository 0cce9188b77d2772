"""Termination codes and their records: the only code -> text table.

Host-side only (no jax import). The solver writes one :class:`Termination`
code into its state; everything that prints, returns or classifies a
termination reads its :class:`Record`: SciPy's exact ``res.message`` and
``status``, the task text and ``warnflag`` of SciPy's ``fmin_l_bfgs_b`` (which
the iprint table also prints), the cause and a fix in plain words, the
:class:`Outcome`, whether ``x`` is a solution (implicit derivatives), and
which note :func:`jax_lbfgsb.report.diagnose` adds. :func:`codes` selects
codes by these fields, for ``jnp.isin`` under ``jit``. SciPy's texts are those of
``scipy/optimize/_lbfgsb_py.py`` (``status_messages``, ``task_messages``) and
``_minimize.py`` (fixed variables, ``StopIteration``) in SciPy 1.17.
"""

from __future__ import annotations

import enum
import textwrap
from typing import Any, NamedTuple

__all__ = ["Termination", "Outcome", "Record", "RECORDS", "STATUS", "WARNFLAG", "codes"]


class Termination(enum.IntEnum):
  """Why a solve stopped. The numbers are stable API.

  ``RUNNING`` only appears in a state that has not terminated yet. Each code
  has one :class:`Record` (``Termination(code).record``); ``str`` gives the name.

  Examples:
    >>> from jax_lbfgsb import Termination
    >>> code = Termination(1)
    >>> print(code, "|", code.message, "|", code.status)
    CONVERGED_FTOL | CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH | 0
  """

  RUNNING = -1
  CONVERGED_PGTOL = 0  # SciPy task 401
  CONVERGED_FTOL = 1  # SciPy task 402
  MAXITER = 2  # SciPy task 504
  MAXFUN = 3  # SciPy task 502
  ABNORMAL_LINE_SEARCH = 4  # SciPy ABNORMAL: maxls evaluations without an acceptable step
  ABNORMAL_NOT_DESCENT = 5  # SciPy ABNORMAL: the search direction is not a descent direction
  NONFINITE = 6  # SciPy ABNORMAL: f or g is NaN or inf
  INVALID_BOUNDS = 7  # task 701: traced bounds with lower > upper
  CALLBACK_HALT = 8  # the callback raised StopIteration (task 505)
  PRECISION_LIMIT = 9  # SciPy ABNORMAL, where f's changes fell below rounding
  CONVERGED_PGTOL_REL = 10  # ours: ||proj g||_2 <= pgtol_rel (1 + |f|)
  CONVERGED_XTOL = 11  # ours: ||x_k - x_{k-1}||_2 <= xtol_rel (||x_k||_2 + 1)
  INCONSISTENT_GRADIENT = 12  # SciPy ABNORMAL, where f rose against the gradient's prediction
  ALL_FIXED = 13  # every variable fixed by its bounds (lower == upper)

  def __str__(self) -> str:
    return self.name

  @property
  def record(self) -> "Record":
    return RECORDS[self]

  @property
  def message(self) -> str:
    """SciPy's ``res.message`` for this code."""
    return RECORDS[self].message

  @property
  def cause(self) -> str:
    """The cause and a fix in plain words."""
    return RECORDS[self].cause

  @property
  def status(self) -> int:
    """SciPy's ``res.status``."""
    return RECORDS[self].status


class Outcome(enum.Enum):
  """What kind of end a termination code is."""

  RUNNING = "running"  # not terminated yet
  CONVERGED = "converged"  # a stopping test was met: SciPy's status 0
  LIMIT = "limit"  # maxiter or maxfun was reached: SciPy's status 1
  LINE_SEARCH_FAILED = "line search failed"  # SciPy's ABNORMAL, f and g finite
  NONFINITE = "nonfinite"  # SciPy's ABNORMAL, f or g NaN or inf
  INVALID_INPUT = "invalid input"  # the problem has no feasible point
  USER_HALT = "user halt"  # the callback stopped the solve


class Record(NamedTuple):
  """Everything said about one termination code.

  Attributes:
    message: SciPy's ``minimize`` ``res.message``, exactly.
    task: the task text of SciPy's ``fmin_l_bfgs_b`` (its ``d["task"]``) and
      of the iprint table's last line; equal to ``message`` except where
      SciPy's ``minimize`` rewrites it (fixed variables, ``StopIteration``).
    cause: what happened and what to do, in plain words.
    status: SciPy's ``minimize`` ``res.status`` (0 converged, 1 a limit was
      reached, 2 anything else, 99 the callback stopped the solve).
    warnflag: ``fmin_l_bfgs_b``'s ``d["warnflag"]`` (0, 1 or 2).
    outcome: the kind of end, an :class:`Outcome`.
    solved: whether ``x`` satisfies the optimality conditions, to the
      tolerance or to the precision of the type: implicit derivatives are
      taken there, NaN elsewhere.
    limit: the option whose limit was reached (``"maxiter"``, ``"maxfun"``), else ``""``.
    iprint: what the iprint output prints after the task text: the Fortran
      code's lines for a failed line search, the cause for SciPy's other
      bare ``ABNORMAL`` ends (SciPy keeps no detail; we say it), else ``""``.
    diagnosis: the key of the note :func:`jax_lbfgsb.report.diagnose` adds
      for this code (``""``: none of its own).
  """

  message: str
  task: str
  cause: str
  status: int
  warnflag: int
  outcome: Outcome = Outcome.CONVERGED
  solved: bool = False
  limit: str = ""
  iprint: str = ""
  diagnosis: str = ""


_ABNORMAL = "ABNORMAL: "  # SciPy's text for every failed line search (its C port keeps no detail)


def _record(task: str, cause: str, warnflag: int, outcome: Outcome, message: str | None = None,
            status: int | None = None, **fields: Any) -> Record:
  if task == _ABNORMAL:
    fields.setdefault("iprint", "\n".join(textwrap.wrap(cause, 78, initial_indent=" ", subsequent_indent=" ")))
  fields.setdefault("solved", outcome is Outcome.CONVERGED)
  return Record(message=task if message is None else message, task=task, cause=cause,
                status=warnflag if status is None else status, warnflag=warnflag, outcome=outcome, **fields)


RECORDS: dict[Termination, Record] = {
    Termination.RUNNING: _record("RUNNING: the solve has not terminated", "", 2, Outcome.RUNNING),
    Termination.CONVERGED_PGTOL: _record(
        "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
        "The largest component of the projected gradient is at most gtol: x satisfies the "
        "first-order optimality conditions to that tolerance.", 0, Outcome.CONVERGED, diagnosis="early stop",
    ),
    Termination.CONVERGED_FTOL: _record(
        "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH",
        "The last iteration reduced f by at most ftol * max(|f|, |f_prev|, 1). This also "
        "fires when f is tiny or badly scaled, or the last step made no progress: if the "
        "projected gradient (see `jac`) is not small, rescale f or lower ftol.", 0, Outcome.CONVERGED,
        diagnosis="ftol",
    ),
    Termination.MAXITER: _record(
        "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
        "The solve ran maxiter iterations without meeting gtol or ftol; increase maxiter "
        "or start closer to a solution.", 1, Outcome.LIMIT, limit="maxiter", diagnosis="limit",
    ),
    Termination.MAXFUN: _record(
        "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
        "More than maxfun evaluations of f and g were made (the limit is checked after "
        "each iteration, so a line search can overshoot it); increase maxfun.", 1, Outcome.LIMIT, limit="maxfun",
        diagnosis="limit",
    ),
    Termination.ABNORMAL_LINE_SEARCH: _record(
        _ABNORMAL,
        "The line search could not find a step that decreases f enough within maxls "
        "evaluations, even along the steepest-descent direction. Usually the gradient does "
        "not match f (check `fun`), or f is noisy or not smooth at x.", 2, Outcome.LINE_SEARCH_FAILED,
        iprint="\n".join([  # the Fortran code's prn3lb
            " Line search cannot locate an adequate point after MAXLS", "  function and gradient evaluations.",
            "  Previous x, f and g restored.", " Possible causes: 1 error in function or gradient evaluation;",
            "                  2 rounding error dominate computation."]),
        diagnosis="line search",
    ),
    Termination.ABNORMAL_NOT_DESCENT: _record(
        _ABNORMAL,
        "The search direction is not a descent direction (g'd >= 0) even along the projected "
        "steepest descent. Usually the gradient does not match f, or rounding dominates at x.", 2,
        Outcome.LINE_SEARCH_FAILED, diagnosis="line search",
    ),
    Termination.NONFINITE: _record(
        _ABNORMAL,
        "f or its gradient is NaN or inf: at x0, or in a region the line search could not "
        "get past (its maxls halvings back from NaN or inf did not reach an acceptable step). "
        "The solve stopped and returns the last iterate where both were finite; check `fun` "
        "for overflow, log/sqrt of negative values or division by zero inside the bounds "
        "(tighten the bounds to exclude such a region), or raise maxls.", 2, Outcome.NONFINITE,
        diagnosis="nonfinite",
    ),
    Termination.INVALID_BOUNDS: _record(
        "ERROR: NO FEASIBLE SOLUTION",
        "Some lower bound is greater than its upper bound, or a bound is NaN, a lower "
        "bound +inf or an upper bound -inf; fix `bounds` so that lower <= upper everywhere "
        "(-inf and inf for no bound). x is x0, projected where the bounds allow.", 2, Outcome.INVALID_INPUT,
    ),
    Termination.CALLBACK_HALT: _record(
        "STOP: CALLBACK REQUESTED HALT",
        "The callback raised StopIteration after this iteration.", 2, Outcome.USER_HALT,
        message="`callback` raised `StopIteration`.", status=99, diagnosis="callback",
    ),
    Termination.PRECISION_LIMIT: _record(
        _ABNORMAL,
        "The solve could not decrease f beyond rounding error: along the search direction "
        "the changes in f fell below the precision of the floating-point type (common in "
        "float32), although the gradient predicted a larger decrease. x is as good as that "
        "precision allows from here, which may still be far from a solution when the "
        "projected gradient (see `jac`) is large; use float64 (jax_enable_x64) or rescale "
        "f and x.", 2, Outcome.LINE_SEARCH_FAILED, solved=True, diagnosis="precision",
    ),
    Termination.CONVERGED_PGTOL_REL: _record(
        "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL_REL*(1+|F|)",
        "The Euclidean norm of the projected gradient is at most pgtol_rel (1 + |f|).", 0, Outcome.CONVERGED,
    ),
    Termination.CONVERGED_XTOL: _record(
        "CONVERGENCE: NORM OF STEP <= XTOL_REL*(1+||X||)",
        "The last step moved x by at most xtol_rel (1 + ||x||) in Euclidean norm; if the "
        "projected gradient is not small, the solve may have stalled rather than "
        "converged.", 0, Outcome.CONVERGED, diagnosis="stall",
    ),
    Termination.INCONSISTENT_GRADIENT: _record(
        _ABNORMAL,
        "The gradient is probably inconsistent with f: along the search direction f rose "
        "where the gradient predicted a decrease, by more than rounding error, and no step "
        "decreased f. Check the gradient: jax.test_util.check_grads(f, (x,), order=1), or "
        "compare it with jax.grad(f)(x) (with jac=True the gradient is the one `fun` "
        "returns). Otherwise f is noisy or not smooth at x.", 2, Outcome.LINE_SEARCH_FAILED,
        diagnosis="inconsistent gradient",
    ),
    Termination.ALL_FIXED: _record(
        "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
        "Every variable is fixed by its bounds (lower == upper): there is nothing to "
        "minimize, and x is x0 projected onto the bounds.", 0, Outcome.CONVERGED,
        message="All independent variables were fixed by bounds.",
    ),
}

# Indexed by code (under jit): SciPy's minimize status and fmin_l_bfgs_b's warnflag.
STATUS: tuple[int, ...] = tuple(RECORDS[Termination(c)].status for c in range(len(RECORDS) - 1))
WARNFLAG: tuple[int, ...] = tuple(RECORDS[Termination(c)].warnflag for c in range(len(RECORDS) - 1))


def codes(**fields: Any) -> tuple[int, ...]:
  """The codes whose record has these field values, e.g. for ``jnp.isin`` under ``jit``.

  >>> codes(outcome=Outcome.LIMIT)
  (2, 3)
  """
  return tuple(int(code) for code, record in RECORDS.items()
               if all(getattr(record, name) == value for name, value in fields.items()))
