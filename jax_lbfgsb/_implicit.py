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
and ``dg = d_p g dp + H dx``; every other field of the state has a zero tangent.

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

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_lbfgsb._bounds import project
from jax_lbfgsb._solver import LbfgsbState

__all__ = ["differentiable_solve"]

_HI = lax.Precision.HIGHEST
_CG_MAXITER = 10_000  # cap on the 10 n conjugate-gradient iterations


def _zero_tangent(leaf: jax.Array) -> Any:
  """A zero tangent for ``leaf``: float0 for integers and booleans."""
  if jnp.issubdtype(leaf.dtype, jnp.inexact):
    return jnp.zeros_like(leaf)
  return np.zeros(leaf.shape, jax.dtypes.float0)


def _cg(matvec: Callable[[jax.Array], jax.Array], b: jax.Array) -> jax.Array:
  """Solves the symmetric positive definite ``matvec(x) = b`` to ``||r|| <= tol ||b||``."""
  tol = 1e-10 if b.dtype == jnp.float64 else 1e-5
  maxiter = min(10 * b.size, _CG_MAXITER)
  return jax.scipy.sparse.linalg.cg(matvec, b, tol=tol, atol=0.0, maxiter=maxiter)[0]


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
        lambda v: free * hvp(free * v) + (1 - free) * v, rhs, solve=_cg, symmetric=True
    )
    dx = dx_active + dx_free
    # 3. Total derivatives of f(x*, p) and g(x*, p).
    df = df_p + jnp.vdot(g, dx, precision=_HI)
    dg = dg_p + hvp(dx)
    return state, jax.tree.map(_zero_tangent, state)._replace(x=dx, f=df, g=dg)

  return solution(l, u, params, start)
