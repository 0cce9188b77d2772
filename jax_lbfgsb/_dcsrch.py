"""The Moré–Thuente line search of MINPACK-2: ``dcsrch`` and ``dcstep``.

``dcsrch`` looks for a step ``stp`` satisfying the sufficient decrease and
curvature conditions

    f(stp) <= f(0) + ftol stp f'(0),     |f'(stp)| <= gtol |f'(0)|,

keeping an interval ``[stx, sty]`` that contains a minimizer of the modified
function ``psi(stp) = f(stp) - f(0) - ftol stp f'(0)`` (stage 1) or of ``f``
(stage 2). ``dcstep`` picks the next trial step by cubic/quadratic
interpolation and safeguards the interval.

Written as ``dcsrch_init`` / ``dcsrch_step`` over a :class:`DcsrchState` so that
a caller's ``lax.while_loop`` evaluates ``f`` between calls, as the reverse
communication of the reference does (``task = 'FG'``).

References:
  Moré and Thuente, `Line search algorithms with guaranteed sufficient
  decrease <https://doi.org/10.1145/192115.192132>`_, ACM TOMS 20(3), 1994.
  SciPy ``scipy/optimize/src/lbfgsb.c`` (``dcsrch``, ``dcstep``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jax_lbfgsb._loops import stack

__all__ = [
    "FG", "CONVERGENCE", "WARNING", "DcsrchState", "dcstep", "dcsrch_init", "dcsrch_step",
    "lnsrlb_first_step", "lnsrlb_trial_point",
]

# Values of DcsrchState.task.
FG = 0  # evaluate f and g at stp, then call dcsrch_step again
CONVERGENCE = 1  # stp satisfies both conditions
WARNING = 2  # rounding, xtol, stp = stpmax or stp = stpmin: stp is the last trial


class DcsrchState(NamedTuple):
  """Saved variables of ``dcsrch`` (its ``isave``/``dsave``) and ``task``."""

  brackt: jax.Array
  stage: jax.Array
  ginit: jax.Array
  gx: jax.Array
  gy: jax.Array
  finit: jax.Array
  fx: jax.Array
  fy: jax.Array
  stx: jax.Array
  sty: jax.Array
  stmin: jax.Array
  stmax: jax.Array
  width: jax.Array
  width1: jax.Array
  task: jax.Array


def _divide(quotients, carry=()) -> jax.Array:
  """``[n / d for n, d in quotients] + carry`` by one division (``carry`` over 1).

  One kernel computes the vector; the later stages read ``carry`` from it
  rather than recompute it (XLA:CPU would give each value read by several
  kernels a kernel of its own).
  """
  nums, dens = zip(*quotients)
  return stack([*nums, *carry]) / stack([*dens, *([1.0] * len(carry))])


def _dcstep(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax, carry=()):
  """``dcstep``, and ``carry`` as computed by its first stage (see ``dcstep``)."""
  # Stage 1, q: [0] sgnd's dx/|dx|, [1] theta's 3 (fx - fp)/(stp - stx),
  # [2] case 1's (fx - fp)/(stp - stx), [3] cases 2 and 3's dp/(dp - dx),
  # [4] case 4's 3 (fp - fy)/(sty - stp); [5:] carried: the inputs and
  # differences later stages read, then ``carry``.
  q = _divide([(dx, jnp.abs(dx)), (3.0 * (fx - fp), stp - stx), (fx - fp, stp - stx), (dp, dp - dx),
               (3.0 * (fp - fy), sty - stp)], (fx, dx, fy, dy, fp, dp, stp - stx, stx - stp, sty - stp, *carry))
  fx, dx, fy, dy, fp, dp, stp_stx, stx_stp, sty_stp = q[5:14]
  theta = q[1] + dx + dp
  theta4 = q[4] + dy + dp
  # Stage 2, r: the cubic's terms over its scale, [0:3] cases 1-3's theta,
  # dx, dp over s, [3:6] case 4's theta4, dy, dp over s4; [6] case 1's
  # quadratic step dx/((fx - fp)/(stp - stx) + dx); [7:] carried.
  s = jnp.maximum(jnp.abs(theta), jnp.maximum(jnp.abs(dx), jnp.abs(dp)))
  s4 = jnp.maximum(jnp.abs(theta4), jnp.maximum(jnp.abs(dy), jnp.abs(dp)))
  r = _divide([(theta, s), (dx, s), (dp, s), (theta4, s4), (dy, s4), (dp, s4), (dx, q[2] + dx)],
              (theta, theta4, s, s4))
  theta, theta4, s, s4 = r[7:11]
  # Stage 3: gamma of cases 1 and 2, of case 3 (clamped at 0), of case 4
  # (each square root has one use, so it fuses into the division below).
  disc = r[0] ** 2 - r[1] * r[2]
  gamma = s * jnp.sqrt(disc)
  right = stp > stx
  gamma1 = jnp.where(stp < stx, -gamma, gamma)
  gamma2 = jnp.where(right, -gamma, gamma)
  gamma = s * jnp.sqrt(jnp.maximum(0.0, disc))
  gamma3 = jnp.where(right, -gamma, gamma)
  gamma = s4 * jnp.sqrt(r[3] ** 2 - r[4] * r[5])
  gamma4 = jnp.where(stp > sty, -gamma, gamma)
  # pq: [0:4] the cubic steps' p/q, cases 1-4; [4:] carried.
  pq = _divide([((gamma1 - dx) + theta, ((gamma1 - dx) + gamma1) + dp),
                ((gamma2 - dp) + theta, ((gamma2 - dp) + gamma2) + dx),
                ((gamma3 - dp) + theta, (gamma3 + (dx - dp)) + gamma3),
                ((gamma4 - dp) + theta4, ((gamma4 - dp) + gamma4) + dy)], (gamma3, jnp.where(right, 1.0, 0.0)))
  gamma3, right = pq[4], pq[5] != 0.0
  stpq = stp + q[3] * stx_stp  # cases 2 and 3
  bound = jnp.where(right, stpmax, stpmin)

  # Case 1: higher function value; the minimum is bracketed.
  stpc = stx + pq[0] * stp_stx
  stpq1 = stx + (r[6] / 2.0) * stp_stx
  stpf1 = jnp.where(jnp.abs(stpc - stx) < jnp.abs(stpq1 - stx), stpc, stpc + (stpq1 - stpc) / 2.0)

  # Case 2: lower function value and derivatives of opposite sign.
  stpc = stp + pq[1] * stx_stp
  stpf2 = jnp.where(jnp.abs(stpc - stp) > jnp.abs(stpq - stp), stpc, stpq)

  # Case 3: lower function value, same-sign derivatives, |derivative| decreases.
  stpc = jnp.where((pq[2] < 0.0) & (gamma3 != 0.0), stp + pq[2] * stx_stp, bound)
  near = jnp.where(jnp.abs(stpc - stp) < jnp.abs(stpq - stp), stpc, stpq)
  near = jnp.where(right, jnp.minimum(stp + 0.66 * sty_stp, near), jnp.maximum(stp + 0.66 * sty_stp, near))
  far = jnp.where(jnp.abs(stpc - stp) > jnp.abs(stpq - stp), stpc, stpq)
  far = jnp.maximum(stpmin, jnp.minimum(stpmax, far))
  stpf3 = jnp.where(brackt, near, far)

  # Case 4: lower function value, same-sign derivatives, |derivative| does not decrease.
  stpf4 = jnp.where(brackt, stp + pq[3] * sty_stp, bound)

  sgnd = dp * q[0]
  case1 = fp > fx
  case2 = ~case1 & (sgnd < 0.0)
  case3 = ~case1 & ~case2 & (jnp.abs(dp) < jnp.abs(dx))
  stpf = jnp.where(case1, stpf1, jnp.where(case2, stpf2, jnp.where(case3, stpf3, stpf4)))
  brackt = brackt | case1 | case2

  # Update the interval: [stx, sty] keeps a minimizer.
  new_sty = case1 | (sgnd < 0.0)
  sty, fy, dy = (
      jnp.where(case1, stp, jnp.where(new_sty, stx, sty)),
      jnp.where(case1, fp, jnp.where(new_sty, fx, fy)),
      jnp.where(case1, dp, jnp.where(new_sty, dx, dy)),
  )
  stx, fx, dx = jnp.where(case1, stx, stp), jnp.where(case1, fx, fp), jnp.where(case1, dx, dp)
  return (stx, fx, dx, sty, fy, dy, stpf, brackt), tuple(q[14:14 + len(carry)])


def dcstep(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):
  """One safeguarded step of the Moré–Thuente interval update (``dcstep``).

  Returns ``(stx, fx, dx, sty, fy, dy, stp, brackt)``.

  Every case's step is computed, then the case's is selected. The divisions
  come in three stages, each one division over a vector (one XLA:CPU kernel
  each; the cheap arithmetic and the square roots fuse into them): (1) the
  quotients of the inputs, (2) the cubic's terms over its scale and case 1's
  quadratic step, (3) the cubic steps' ``p/q``. Each slot holds the
  reference's expression for its case, evaluated in the reference's order.
  """
  return _dcstep(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax)[0]


def dcsrch_init(f: jax.Array, g: jax.Array, stp: jax.Array, stpmin, stpmax, xtrapu=4.0) -> DcsrchState:
  """``dcsrch`` with ``task = 'START'``: ``f, g`` are ``f(0), f'(0)``; asks for ``f(stp)``."""
  width = stpmax - stpmin
  zero = jnp.zeros_like(f)
  return DcsrchState(
      brackt=jnp.zeros((), bool),
      stage=jnp.ones((), jnp.int32),
      ginit=g,
      gx=g,
      gy=g,
      finit=f,
      fx=f,
      fy=f,
      stx=zero,
      sty=zero,
      stmin=zero,
      stmax=stp + xtrapu * stp,
      width=width,
      width1=width / 0.5,
      task=jnp.asarray(FG, jnp.int32),
  )


def dcsrch_step(
    state: DcsrchState,
    f: jax.Array,
    g: jax.Array,
    stp: jax.Array,
    *,
    ftol=1e-3,
    gtol=0.9,
    xtol=0.1,
    stpmin=0.0,
    stpmax=1e10,
    xtrapl=1.1,
    xtrapu=4.0,
) -> tuple[jax.Array, DcsrchState]:
  """``dcsrch`` after an evaluation: ``f, g`` are ``f(stp), f'(stp)``.

  Returns the next ``stp`` and the state; ``state.task`` says whether to
  evaluate again (``FG``) or stop (``CONVERGENCE``, ``WARNING``; ``stp`` is
  then the step just evaluated).
  """
  s = state
  gtest = ftol * s.ginit
  ftest = s.finit + stp * gtest
  stage = jnp.where((s.stage == 1) & (f <= ftest) & (g >= 0.0), 2, s.stage).astype(jnp.int32)

  # Tests for termination (later tests take precedence, as in the reference).
  warn = (s.brackt & ((stp <= s.stmin) | (stp >= s.stmax))) | (s.brackt & (s.stmax - s.stmin <= xtol * s.stmax))
  warn = warn | ((stp == stpmax) & (f <= ftest) & (g <= gtest))
  warn = warn | ((stp == stpmin) & ((f > ftest) | (g >= gtest)))
  conv = (f <= ftest) & (jnp.abs(g) <= gtol * (-s.ginit))
  task = jnp.where(conv, CONVERGENCE, jnp.where(warn, WARNING, FG)).astype(jnp.int32)

  # Stage 1 with a higher psi: step on the modified function psi. dcstep's
  # first stage carries what is read after it (see ``_dcstep``).
  use_psi = (stage == 1) & (f <= s.fx) & (f > ftest)
  shift_f = lambda val, st: jnp.where(use_psi, val - st * gtest, val)
  shift_g = lambda val: jnp.where(use_psi, val - gtest, val)
  (stx, fx, gx, sty, fy, gy, new_stp, brackt), (gtest, use_psi) = _dcstep(
      s.stx, shift_f(s.fx, s.stx), shift_g(s.gx), s.sty, shift_f(s.fy, s.sty), shift_g(s.gy),
      stp, shift_f(f, stp), shift_g(g), s.brackt, s.stmin, s.stmax, carry=(gtest, jnp.where(use_psi, 1.0, 0.0)),
  )
  use_psi = use_psi != 0.0
  fx = jnp.where(use_psi, fx + stx * gtest, fx)
  fy = jnp.where(use_psi, fy + sty * gtest, fy)
  gx = jnp.where(use_psi, gx + gtest, gx)
  gy = jnp.where(use_psi, gy + gtest, gy)

  # Bisect when the interval does not shrink enough.
  bisect = brackt & (jnp.abs(sty - stx) >= 0.66 * s.width1)
  new_stp = jnp.where(bisect, stx + 0.5 * (sty - stx), new_stp)
  width1 = jnp.where(brackt, s.width, s.width1)
  width = jnp.where(brackt, jnp.abs(sty - stx), s.width)
  stmin = jnp.where(brackt, jnp.minimum(stx, sty), new_stp + xtrapl * (new_stp - stx))
  stmax = jnp.where(brackt, jnp.maximum(stx, sty), new_stp + xtrapu * (new_stp - stx))
  new_stp = jnp.minimum(jnp.maximum(new_stp, stpmin), stpmax)
  stuck = brackt & ((new_stp <= stmin) | (new_stp >= stmax) | (stmax - stmin <= xtol * stmax))
  new_stp = jnp.where(stuck, stx, new_stp)

  # Once task != FG the search is over and the rest of the state is not read
  # again, so it is not rolled back (one select instead of one per field).
  out = DcsrchState(
      brackt=brackt, stage=stage, ginit=s.ginit, gx=gx, gy=gy, finit=s.finit,
      fx=fx, fy=fy, stx=stx, sty=sty, stmin=stmin, stmax=stmax, width=width, width1=width1, task=task,
  )
  return jnp.where(task != FG, stp, new_stp), out


def lnsrlb_first_step(
    d: jax.Array, stpmx: jax.Array, first_iteration: jax.Array, boxed: jax.Array
) -> jax.Array:
  """The first trial step of ``lnsrlb``: ``min(1/||d||, stpmx)`` on iteration 0 unless every variable is boxed, else 1."""
  dnorm = jnp.linalg.norm(d)
  return jnp.where(first_iteration & ~boxed, jnp.minimum(1.0 / dnorm, stpmx), 1.0).astype(d.dtype)


def lnsrlb_trial_point(x, d, z, stp, l, u):
  """The trial point of ``lnsrlb``: exactly ``z`` when ``stp == 1``, else ``x + stp d`` clipped to the box."""
  return jnp.where(stp == 1.0, z, jnp.minimum(jnp.maximum(x + stp * d, l), u))
