"""``iprint``: the progress output of the Fortran L-BFGS-B v3.0 (``prn1lb``, ``prn2lb``, ``prn3lb``).

Host-side formatting only (no jax import). The solver calls an
:class:`IprintPrinter` through ``jax.debug.callback`` at the start, after each
iteration and at the end, only when ``iprint >= 0`` was asked for; otherwise no
callback is in the graph.

Levels, as in the Fortran code: ``iprint < 0`` no output; ``0`` the header and
the final summary; ``0 < iprint < 99`` also ``f`` and ``|proj g|`` every
``iprint`` iterations; ``>= 99`` every iteration with its line search.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from jax_lbfgsb import _status

__all__ = ["fortran_d", "iterate_line", "summary_table", "IprintPrinter"]


def fortran_d(value: float, width: int, digits: int) -> str:
  """Fortran ``1p,Dw.d``.

  >>> fortran_d(1.5, 12, 5)
  ' 1.50000D+00'
  """
  if not np.isfinite(value):
    return f"{'NaN' if np.isnan(value) else ('Infinity' if value > 0 else '-Infinity'):>{width}}"
  mantissa, exponent = f"{value:.{digits}E}".split("E")
  exponent = int(exponent)
  # Fortran drops the D for three-digit exponents: 6.001+100.
  return (f"{mantissa}D{exponent:+03d}" if abs(exponent) < 100 else f"{mantissa}{exponent:+04d}").rjust(width)


def iterate_line(k: int, f: float, projg: float) -> str:
  """``At iterate    k    f= ...    |proj g|= ...`` (format 2001)."""
  return f"At iterate{k:5d}    f= {fortran_d(f, 12, 5)}    |proj g|= {fortran_d(projg, 12, 5)}"


def summary_table(n, nit, nfev, nintol, nskip, nact, projg, f) -> str:
  """The final table ``N Tit Tnf Tnint Skip Nact Projg F`` (formats 3003-3005)."""
  return "\n".join([
      "",
      "           * * *",
      "",
      "Tit   = total number of iterations",
      "Tnf   = total number of function evaluations",
      "Tnint = total number of segments explored during Cauchy searches",
      "Skip  = number of BFGS updates skipped",
      "Nact  = number of active bounds at final generalized Cauchy point",
      "Projg = norm of the final projected gradient",
      "F     = final function value",
      "",
      "           * * *",
      "",
      "   N    Tit     Tnf  Tnint  Skip  Nact     Projg        F",
      f"{n:5d} {nit:6d} {nfev:6d} {nintol:6d}  {nskip:4d} {nact:5d}"
      f"  {fortran_d(projg, 10, 3)}  {fortran_d(f, 10, 3)}",
  ])


@dataclasses.dataclass(frozen=True)
class IprintPrinter:
  """Prints the Fortran progress output at level ``iprint`` (>= 0) to ``sys.stdout``."""

  iprint: int

  def start(self, n, m, eps, nbound, constrained, projected, f, projg) -> None:
    lines = ["RUNNING THE L-BFGS-B CODE", "", "           * * *", "",
             f"Machine precision = {fortran_d(float(eps), 10, 3)}", f" N = {int(n):12d}     M = {int(m):12d}"]
    if bool(projected):
      lines.append(" The initial X is infeasible.  Restart with its projection.")
    if not bool(constrained):
      lines.append(" This problem is unconstrained.")
    if self.iprint > 0:
      lines += ["", f"At X0 {int(nbound):9d} variables are exactly at the bounds"]
      lines += ["", iterate_line(0, float(f), float(projg))]
    self._print(lines)

  def iterate(self, new_iterate, nit, f, projg, iback, xstep) -> None:
    if not new_iterate:
      return
    nit = int(nit)
    if self.iprint >= 99:
      self._print(["", f"ITERATION {nit:5d}", "",
                   f"LINE SEARCH {int(iback):10d} times; norm of step = {float(xstep):.17g}",
                   "", iterate_line(nit, float(f), float(projg))])
    elif self.iprint > 0 and nit % self.iprint == 0:
      self._print(["", iterate_line(nit, float(f), float(projg))])

  def finish(self, n, nit, nfev, nintol, nskip, nact, projg, f, termination) -> None:
    record = _status.Termination(int(termination)).record
    lines = []
    if record.outcome is not _status.Outcome.INVALID_INPUT:  # the Fortran code prints no table then
      lines.append(summary_table(int(n), int(nit), int(nfev), int(nintol), int(nskip), int(nact),
                                 float(projg), float(f)))
      if self.iprint >= 1:
        lines += ["", f" F = {float(f):.17g}"]
    lines += ["", record.task]
    if record.iprint:
      lines += ["", record.iprint]
    self._print(lines)

  def _print(self, lines) -> None:
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
