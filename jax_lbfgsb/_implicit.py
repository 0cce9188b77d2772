"""Implicit differentiation of the solve through its optimality conditions.

At a solution ``x*`` of ``min f(x, p)`` subject to ``l <= x <= u`` each
variable is

- active at its lower bound: ``x_i = l_i`` and ``g_i >= 0``, or ``l_i = u_i``;
- active at its upper bound: ``x_i = u_i`` and ``g_i <= 0``;
- free otherwise, with ``g_i = 0``,

where ``g = grad_x f(x*, p)``. These are the zeros of the projected fixed-point
residual ``x - P[l, u](x - g)`` (the residual jaxopt differentiates). Holding
the active set fixed (strict complementarity), an active variable follows its
bound, ``dx_A = dl_A`` or ``du_A``, and the free ones keep ``g_F = 0``:

    H_FF dx_F = -(d_p g)_F dp - H_FA dx_A,    H = d^2 f / dx^2 at x*.

The system is solved matrix-free by conjugate gradients with Hessian-vector
products. It is wrapped in :func:`jax.lax.custom_linear_solve`, so the rule is
linear in the tangents and transposes to the same solve: ``jax.grad`` works as
well as ``jax.jvp``, and the solver's ``while_loop`` is never differentiated.
``f`` and ``g`` at ``x*`` get their total derivatives, ``df = d_p f dp + g'dx``
and ``dg = d_p g dp + H dx``; the state's box carries the bounds' tangents and
every other field a zero tangent.

The rule where these assumptions fail:

- A solve that did not converge (any termination but the ``CONVERGED_*``
  codes and ``PRECISION_LIMIT``: an iteration or evaluation limit, a failed
  line search, NaN, a callback halt) has NaN derivatives: ``x`` is not a
  solution, so the optimality conditions say nothing about it.
- When conjugate gradients cannot solve the free system (``H_FF`` singular,
  as when ``f`` is invariant along a direction, and a right-hand side with a
  part in its null space, as a reverse-mode cotangent has; or ``H_FF``
  indefinite), detected as a loss of positive curvature or no convergence in
  ``min(10 n, 10000)`` iterations, the system is solved in the least-squares
  sense by conjugate gradients on ``H_FF^2 v = H_FF b`` from 0: the
  minimum-norm solution ``pinv(H_FF) b`` (jaxopt's default ``solve_normal_cg``
  does the same). When that fails too, the derivatives are NaN.

References:
  Blondel, Berthet, Cuturi, Frostig, Hoyer, Llinares-López, Pedregosa, Vert,
  `Efficient and modular implicit differentiation
  <https://arxiv.org/abs/2105.15183>`_, NeurIPS 2022 (jaxopt's
  ``custom_root`` and the projected fixed point of box constraints).
  Nocedal and Wright, `Numerical Optimization
  <https://doi.org/10.1007/978-0-387-40065-5>`_, 2nd ed., Springer 2006,
  section 5.1 (conjugate gradients) and section 12.8 (sensitivity of
  constrained minimizers).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_lbfgsb._bounds import project
from jax_lbfgsb._solver import LbfgsbState
from jax_lbfgsb._status import codes

__all__ = ["differentiable_solve"]

_HI = lax.Precision.HIGHEST
_CG_MAXITER = 10_000  # cap on the 10 n conjugate-gradient iterations
# Terminations at a solution: the optimality conditions hold there (to the
# tolerance: SciPy's status 0, or to the precision of the type).
_SOLVED = codes(solved=True)


def _zero_tangent(leaf: jax.Array) -> Any:
  """A zero tangent for ``leaf``: float0 for integers and booleans."""
  if jnp.issubdtype(leaf.dtype, jnp.inexact):
    return jnp.zeros_like(leaf)
  return np.zeros(leaf.shape, jax.dtypes.float0)


class _CG(NamedTuple):
  x: jax.Array
  r: jax.Array
  p: jax.Array
  rr: jax.Array  # r'r
  curvature: jax.Array  # the largest p'Hp / p'p seen: a scale for ||H||
  k: jax.Array
  converged: jax.Array
  broken: jax.Array  # p'Hp <= eps ||H|| p'p (or NaN): singular or indefinite along p


def _cg(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, run=True) -> tuple[jax.Array, jax.Array]:
  """Conjugate gradients for ``matvec(x) = b`` from ``x = 0``, to ``||r|| <= tol ||b||``.

  Returns ``x`` and whether it converged; it stops without converging when
  ``p'Hp`` is not positive beyond rounding (``matvec`` singular or indefinite
  along ``p``) or after ``min(10 n, 10000)`` iterations. With ``run`` False
  it returns at once (unconverged), also per lane under ``vmap``.
  """
  dtype = b.dtype
  tol = 1e-10 if dtype == jnp.float64 else 1e-5
  maxiter = min(10 * b.size, _CG_MAXITER)
  eps = jnp.finfo(dtype).eps
  rr = jnp.vdot(b, b, precision=_HI)
  atol2 = tol * tol * rr

  def body(c: _CG) -> _CG:
    hp = matvec(c.p)
    php, pp = jnp.vdot(c.p, hp, precision=_HI), jnp.vdot(c.p, c.p, precision=_HI)
    curvature = jnp.maximum(c.curvature, php / pp)
    broken = ~(php > eps * curvature * pp)
    alpha = c.rr / php
    x, r = c.x + alpha * c.p, c.r - alpha * hp
    rr = jnp.vdot(r, r, precision=_HI)
    new = _CG(x=x, r=r, p=r + (rr / c.rr) * c.p, rr=rr, curvature=curvature, k=c.k + 1,
              converged=rr <= atol2, broken=broken)
    return jax.tree.map(lambda old, upd: jnp.where(broken, old, upd), c, new)._replace(broken=broken, k=c.k + 1)

  init = _CG(x=jnp.zeros_like(b), r=b, p=b, rr=rr, curvature=jnp.zeros((), dtype), k=jnp.zeros((), jnp.int32),
             converged=run & (rr <= atol2), broken=~jnp.asarray(run))
  c = lax.while_loop(lambda c: ~(c.converged | c.broken) & (c.k < maxiter), body, init)
  return c.x, c.converged


def _solve_free(matvec: Callable[[jax.Array], jax.Array], b: jax.Array) -> jax.Array:
  """Solves the free system: conjugate gradients, else minimum-norm least squares, else NaN (module docstring)."""
  x, converged = _cg(matvec, b)
  # The fallback runs only where CG failed (a lax.cond would run it in every lane under vmap).
  x_ls, converged_ls = _cg(lambda v: matvec(matvec(v)), matvec(b), run=~converged)
  return jnp.where(converged, x, jnp.where(converged_ls, x_ls, jnp.nan))


def differentiable_solve(
    solve: Callable[[jax.Array, jax.Array, Any, Any], LbfgsbState],
    fun_and_grad: Callable[[jax.Array, Any], tuple[jax.Array, jax.Array]],
    l: jax.Array,
    u: jax.Array,
    params: Any,
    start: Any,
) -> LbfgsbState:
  """Runs ``solve(l, u, params, start)`` with derivatives of ``x``, ``f``, ``g`` by the implicit function theorem.

  The primal is ``solve`` alone, with ``x`` projected into the box: nothing
  else runs unless the result is differentiated. JAX traces the derivative
  rule lazily, after the caller's trace may have ended, so ``solve`` and
  ``fun_and_grad`` must not close over traced values: they reach them through
  ``params`` (differentiated) and ``start`` (not differentiated).

  Args:
    solve: ``solve(l, u, params, start) -> LbfgsbState``, the whole L-BFGS-B run.
    fun_and_grad: ``fun_and_grad(x, params) -> (f, grad_x f)`` over the flat
      ``(n,)`` variables, differentiable in ``x`` and ``params``; the
      Hessian-vector products are its forward derivative in ``x``.
    l: ``(n,)`` lower bounds (``-inf`` where absent).
    u: ``(n,)`` upper bounds (``inf`` where absent).
    params: a pytree of arrays passed to ``fun_and_grad``.
    start: a pytree of arrays passed to ``solve`` whose derivatives are
      zero: the starting point, the options, a warm state.

  Returns:
    The final :class:`~jax_lbfgsb._solver.LbfgsbState`; ``x``, ``f`` and ``g``
    carry the implicit derivatives with respect to ``l``, ``u`` and ``params``.
  """

  @jax.custom_jvp
  def solution(l, u, params, start):
    state = solve(l, u, params, start)
    return state._replace(x=project(state.x, l, u))

  @solution.defjvp
  def solution_jvp(primals, tangents):
    l, u, params, start = primals
    dl, du, dparams, _ = tangents
    state = solution(l, u, params, start)
    x, g = state.x, state.g
    # 1. Active sets; active variables follow their bound.
    at_l = ((x == l) & (g >= 0)) | (l == u)
    at_u = (x == u) & (g <= 0) & ~at_l
    free = (~(at_l | at_u)).astype(x.dtype)
    dx_active = jnp.where(at_l, dl, jnp.where(at_u, du, jnp.zeros_like(x)))
    # 2. The free block of the linearized stationarity condition g_F = 0.
    _, hvp = jax.linearize(lambda y: fun_and_grad(y, params)[1], x)
    _, (df_p, dg_p) = jax.jvp(lambda p: fun_and_grad(x, p), (params,), (dparams,))
    rhs = -free * (dg_p + hvp(dx_active))
    dx_free = lax.custom_linear_solve(
        lambda v: free * hvp(free * v) + (1 - free) * v, rhs, solve=_solve_free, symmetric=True
    )
    # 3. Total derivatives of f(x*, p) and g(x*, p); NaN unless x* is a solution
    #    (a factor, not a select, so that the rule stays linear and transposes).
    solved = jnp.isin(state.termination, jnp.asarray(_SOLVED, jnp.int32))
    scale = jnp.where(solved, 1.0, jnp.nan).astype(x.dtype)
    dx = scale * (dx_active + dx_free)
    df = scale * (df_p + jnp.vdot(g, dx, precision=_HI))
    dg = scale * (dg_p + hvp(dx))
    zero = jax.tree.map(_zero_tangent, state)
    return state, zero._replace(x=dx, f=df, g=dg, box=zero.box._replace(l=dl, u=du))

  return solution(l, u, params, start)
