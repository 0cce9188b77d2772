"""Variable scaling: the solver works on ``y = x / s`` (``x_scale``).

L-BFGS-B is not scale invariant: its first step ``1/||d||``, its Cauchy
point and its ``gtol`` test mix variables of different units. With ``s`` the
caller's scales, the solver sees ``f(s y)``, gradient ``s * g``, bounds
``l / s`` and ``u / s``; ``s = 1`` changes nothing (multiplying by 1 is exact).

:func:`auto_scale` picks ``s`` from what is known before the solve: the box
width ``u_i - l_i`` where both bounds are finite (the range a variable may
take sets its unit), else the curvature at ``x0``, ``s_i`` proportional to
``1 / sqrt(|H_ii|)`` (a unit Hessian diagonal, as a diagonal preconditioner
would make it). Each group's scales are taken relative to its geometric
mean, so only their spread matters; a variable within a factor 16 of the
typical scale keeps ``s_i = 1``. Boxes also carry units: when the typical
width (the boxed group's geometric mean) is beyond a factor 16 of 1, it
scales every boxed variable (EPT with its variables times 1e3 then stops at
its true minimum instead of a false ``gtol`` stop; the 784-pixel neuron,
boxed in [0, 255], is solved in units of 256). Curvature sets no common
factor: ``1 / sqrt(|H_ii|)`` at ``x0`` says little about where the solution
lies, and would change what ``gtol`` means on most problems. Scales are
powers of two (exact scaling: ``x = s y`` and ``l / s`` lose nothing).
Measured in ``benchmarks/RESULTS_scaling.md``: on the well-scaled benchmark
problems ``"auto"`` costs no evaluation more except on the neuron (70
evaluations instead of 17, for a better f); a factor-4 threshold cost up to 44% more evaluations
on EPT's uneven box widths, and curvature alone 3.4x more on the neuron.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["auto_scale"]

_EXACT_N = 32  # up to this n the Hessian diagonal is exact (n products); beyond, Hutchinson's estimate
_PROBES = 32  # Rademacher probes of the estimate
_KEEP = 4.0  # |log2 of the relative scale| <= this keeps s_i = 1 (a scale within a factor 16)
_MAX_EXP = 40  # scales between 2^-40 and 2^40


def hessian_diagonal(grad: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """``diag(H(x))`` from Hessian-vector products: exact for ``n <= 32`` (one per
  variable), else Hutchinson's estimate ``mean_k z_k * (H z_k)`` over 32 fixed
  Rademacher probes (exact on a diagonal Hessian; off-diagonal terms add noise)."""
  n = x.size
  if n <= _EXACT_N:
    probes = jnp.eye(n, dtype=x.dtype)
  else:
    probes = jax.random.rademacher(jax.random.key(0), (_PROBES, n), x.dtype)
  hz = jax.vmap(lambda z: jax.jvp(grad, (x,), (z,))[1])(probes)
  return jnp.mean(probes * hz, axis=0) * (n if n <= _EXACT_N else 1)


def auto_scale(grad: Callable[[jax.Array], jax.Array], x: jax.Array, l: jax.Array, u: jax.Array) -> jax.Array:
  """Scales ``s`` (powers of two, ``(n,)``) from the box widths (and their common
  factor when far from 1), else the Hessian diagonal at ``x`` (module docstring).

  Variables fixed by their bounds, or unboxed with zero or non-finite
  curvature, keep ``s_i = 1``.
  """
  d = jnp.abs(hessian_diagonal(grad, x))
  tiny = jnp.finfo(x.dtype).tiny
  width = u - l
  boxed = jnp.isfinite(width) & (width > 0)
  curved = ~boxed & jnp.isfinite(d) & (d > tiny) & (l < u)
  log_s = jnp.where(boxed, jnp.log2(jnp.where(boxed, width, 1.0)),
                    jnp.where(curved, -0.5 * jnp.log2(jnp.where(curved, d, 1.0)), 0.0))

  def center(group):  # log2 of the group's geometric mean
    return jnp.sum(jnp.where(group, log_s, 0.0)) / jnp.maximum(jnp.sum(group), 1)

  c_box, c_curved = center(boxed), center(curved)
  rel = jnp.where(boxed, log_s - c_box, jnp.where(curved, log_s - c_curved, 0.0))
  rel = jnp.where(jnp.abs(rel) > _KEEP, jnp.round(rel), 0.0)
  common = jnp.where(boxed & (jnp.abs(c_box) > _KEEP), jnp.round(c_box), 0.0)
  rel = jnp.clip(rel + common, -_MAX_EXP, _MAX_EXP)
  return jax.lax.stop_gradient(jnp.ldexp(jnp.ones_like(x), rel.astype(jnp.int32)))  # exact powers of two
