"""Termination codes and their messages: the only code -> text table.

Host-side only (no jax import). The solver writes one :class:`Termination`
code into its state; :func:`message` turns it into text that starts with
SciPy's wording (``scipy/optimize/_lbfgsb_py.py``, ``task_messages``) and then
says the cause and a fix in plain words.
"""

from __future__ import annotations

import enum

__all__ = ["Termination", "MESSAGES", "TASKS", "WARNFLAG", "message"]


class Termination(enum.IntEnum):
  """Why a solve stopped. The numbers are stable API.

  ``RUNNING`` only appears in a state that has not terminated yet.
  """

  RUNNING = -1
  CONVERGED_PGTOL = 0  # SciPy task 401
  CONVERGED_FTOL = 1  # SciPy task 402
  MAXITER = 2  # SciPy task 504
  MAXFUN = 3  # SciPy task 502
  ABNORMAL_LINE_SEARCH = 4  # SciPy ABNORMAL: maxls evaluations without an acceptable step
  ABNORMAL_NOT_DESCENT = 5  # SciPy ABNORMAL: the search direction is not a descent direction
  NONFINITE = 6  # ours: f or g is NaN or inf
  INVALID_BOUNDS = 7  # ours: traced bounds with lower > upper
  CALLBACK_HALT = 8  # SciPy task 505
  PRECISION_LIMIT = 9  # SciPy ABNORMAL, where f's changes fell below rounding
  CONVERGED_PGTOL_REL = 10  # ours: ||proj g||_2 <= pgtol_rel (1 + |f|)
  CONVERGED_XTOL = 11  # ours: ||x_k - x_{k-1}||_2 <= xtol_rel (||x_k||_2 + 1)
  INCONSISTENT_GRADIENT = 12  # SciPy ABNORMAL, where f rose against the gradient's prediction


# One record per code: SciPy's task text (what SciPy and the iprint table
# print), then the cause and a fix in plain words.
_RECORDS: dict[Termination, tuple[str, str]] = {
    Termination.RUNNING: ("RUNNING: the solve has not terminated", ""),
    Termination.CONVERGED_PGTOL: (
        "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
        "The largest component of the projected gradient is at most gtol: x satisfies the "
        "first-order optimality conditions to that tolerance."
    ),
    Termination.CONVERGED_FTOL: (
        "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH",
        "The last iteration reduced f by at most ftol * max(|f|, |f_prev|, 1). This also "
        "fires when f is tiny or badly scaled, or the last step made no progress: if the "
        "projected gradient (see `jac`) is not small, rescale f or lower ftol."
    ),
    Termination.MAXITER: (
        "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
        "The solve ran maxiter iterations without meeting gtol or ftol; increase maxiter "
        "or start closer to a solution."
    ),
    Termination.MAXFUN: (
        "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
        "More than maxfun evaluations of f and g were made (the limit is checked after "
        "each iteration, so a line search can overshoot it); increase maxfun."
    ),
    Termination.ABNORMAL_LINE_SEARCH: (
        "ABNORMAL: the line search could not find a step that decreases f enough within"
        " maxls evaluations, even along the steepest-descent direction",
        "Usually the gradient does not match f (check `fun`), or f is noisy or not smooth "
        "at x."
    ),
    Termination.ABNORMAL_NOT_DESCENT: (
        "ABNORMAL: the search direction is not a descent direction (g'd >= 0) even along"
        " the projected steepest descent",
        "Usually the gradient does not match f, or rounding dominates at x."
    ),
    Termination.NONFINITE: (
        "ERROR: f or its gradient is NaN or inf",
        "The solve stopped and returns the last iterate where both were finite; check "
        "`fun` for overflow, log/sqrt of negative values or division by zero inside the "
        "bounds."
    ),
    Termination.INVALID_BOUNDS: (
        "ERROR: NO FEASIBLE SOLUTION",
        "Some lower bound is greater than its upper bound, or a bound is NaN, a lower "
        "bound +inf or an upper bound -inf; fix `bounds` so that lower <= upper everywhere "
        "(-inf and inf for no bound). x is x0, projected where the bounds allow."
    ),
    Termination.PRECISION_LIMIT: (
        "ABNORMAL: the line search could not decrease f beyond rounding error: along the"
        " search direction the changes in f fell below the precision of the"
        " floating-point type (common in float32)",
        "x is as accurate as that precision allows; for tighter tolerances use float64 "
        "(jax_enable_x64) or rescale f and x."
    ),
    Termination.INCONSISTENT_GRADIENT: (
        "ABNORMAL: the gradient is probably inconsistent with f: along the search direction"
        " f rose where the gradient predicted a decrease, by more than rounding error, and no"
        " step decreased f",
        "Check the gradient: jax.test_util.check_grads(f, (x,), order=1), or compare it with "
        "jax.grad(f)(x) (with jac=True the gradient is the one `fun` returns). Otherwise f is "
        "noisy or not smooth at x."
    ),
    Termination.CONVERGED_PGTOL_REL: (
        "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL_REL*(1+|F|)",
        "The Euclidean norm of the projected gradient is at most pgtol_rel (1 + |f|)."
    ),
    Termination.CONVERGED_XTOL: (
        "CONVERGENCE: NORM OF STEP <= XTOL_REL*(1+||X||)",
        "The last step moved x by at most xtol_rel (1 + ||x||) in Euclidean norm; if the "
        "projected gradient is not small, the solve may have stalled rather than "
        "converged."
    ),
    Termination.CALLBACK_HALT: (
        "STOP: CALLBACK REQUESTED HALT",
        "The callback returned True after this iteration."
    ),
}

# SciPy's task text for each code (the iprint table's last line), and the full message.
TASKS: dict[Termination, str] = {code: task for code, (task, _) in _RECORDS.items()}
MESSAGES: dict[Termination, str] = {
    code: f"{task}. {cause}" if cause else f"{task}." for code, (task, cause) in _RECORDS.items()
}


def message(code: int) -> str:
  """Returns the message for a termination code (an int or a 0-d array)."""
  return MESSAGES[Termination(int(code))]


# SciPy's ``status`` (its warnflag) for each code, indexed by ``code``:
# 0 converged, 1 an iteration or evaluation limit was reached, 2 anything else.
WARNFLAG: tuple[int, ...] = (0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 2)
