"""Subspace minimization: the direct primal method (Byrd et al. 1995, section 5.1)
with the v3.0 projection rule (Morales and Nocedal 2011).

From the Cauchy point ``xcp`` the quadratic model is minimized over the
variables that are free at ``xcp`` (``Z`` selects them, ``A`` the others):

    du = (r + Z'W K^-1 W'Z r / theta) / theta,
    r = -Z'(g + theta (xcp - x) - W M c),                     (``cmprlb``)
    K = [[-D - Y'ZZ'Y/theta, L_a' - R_z'],
         [L_a - R_z,         theta S'AA'S]],                  (``formk``)

with ``K`` factored as ``L E L'``, ``E = diag(-I, I)``. Then ``xcp + du`` is
projected onto the box; if a component hit a bound and the projected point is
not a descent direction from ``x`` (``(xhat - x)'g > 0``), the step falls back
to the 1997 truncation ``xcp + alpha du`` with the largest feasible
``alpha <= 1``, the blocking variable set exactly on its bound (``subsm``).

``formk`` in the reference keeps the sums behind ``K`` (``wn1``) across
iterations, adding the variables that enter the free set, removing those that
leave and recomputing the newest pair's row; :func:`update_grams` does the
same (with a full recomputation when many variables change), and also tracks
changes made in iterations that skip the subspace step, which the reference
loses.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jax_lbfgsb._bounds import first_argmin, steps_to_bounds
from jax_lbfgsb._compact import (BmvFactors, Memory, bmv, chronological_slots, matvec, tmatvec, w_times,
                                 w_transpose_times)

__all__ = [
    "Subspace", "Grams", "CHANGES_MAX", "INCREMENTAL_MIN_N", "change_tiers", "init_grams", "update_grams",
    "mark_replaced", "chronological_sums", "formk", "reduced_gradient", "subspace_minimization",
]

_HI = lax.Precision.HIGHEST


class Subspace(NamedTuple):
  """Result of :func:`subspace_minimization`.

  Attributes:
    z: the subspace minimizer, inside the bounds.
    iword: True when a free variable of ``xcp + du`` ended on a bound (the
      reference's ``iword = 1``; the iprint table's ``bnd``).
    info: True when a factorization or triangular solve failed.
  """

  z: jax.Array
  iword: jax.Array
  info: jax.Array


def _solve(a, b, *, transpose=False):
  return lax.linalg.triangular_solve(a, b[:, None], left_side=True, lower=False, transpose_a=transpose)[:, 0]


class Grams(NamedTuple):
  """The sums behind ``K``, in buffer-slot order, kept across iterations (the reference's ``wn1``).

  Attributes:
    sums: ``(4, m, m)`` ``Y_i'ZZ'Y_j``, ``S_i'ZZ'Y_j``, ``S_i'AA'Y_j``, ``S_i'AA'S_j``
      for buffer slots ``i, j``, over the free set ``free`` (one array: one
      update writes them all).
    free: ``(n,)`` bool, the free set the sums are over.
    dirty: ``(m,)`` bool, slots whose pair was replaced since.
    valid: False until the first full computation.
  """

  sums: jax.Array
  free: jax.Array
  dirty: jax.Array
  valid: jax.Array

  yzy = property(lambda self: self.sums[0])
  szy = property(lambda self: self.sums[1])
  say = property(lambda self: self.sums[2])
  sas = property(lambda self: self.sums[3])


# Free-set changes applied incrementally: a compacted O(m^2 k) update for up
# to k changes, k one of the tiers of :func:`change_tiers` (CHANGES_MAX, eight
# times more, ..., up to n / CHANGES_FRACTION); more, or more than one
# replaced pair, and the sums are recomputed (O(m^2 n)).
CHANGES_MAX = 64
CHANGES_FRACTION = 16
# Below this many variables the O(m^2 n) recomputation is cheaper than the
# bookkeeping of the incremental update, which is then left out of the graph.
INCREMENTAL_MIN_N = 4 * CHANGES_MAX


def change_tiers(n: int, smallest: int = CHANGES_MAX, fraction: int = CHANGES_FRACTION) -> tuple[int, ...]:
  """Sizes of the incremental updates for ``n`` variables, smallest first.

  Geometric (x8) from ``smallest``, so that an update costs at most about
  eight times its number of changes, and topped by ``n // fraction``.

  >>> change_tiers(16400), change_tiers(1280), change_tiers(296, smallest=2, fraction=4)
  ((64, 512, 1025), (64, 80), (2, 16, 74))
  """
  top = n // fraction
  sizes = [smallest]
  while 16 * sizes[-1] <= top:
    sizes.append(8 * sizes[-1])
  if top > sizes[-1]:
    sizes.append(top)
  return tuple(sizes)


def init_grams(n: int, m: int, dtype) -> Grams | None:
  """Empty sums, to be computed in full at the first :func:`update_grams`.

  None below ``INCREMENTAL_MIN_N`` variables, where :func:`chronological_sums`
  computes them anew in each iteration and none are kept.
  """
  if n < INCREMENTAL_MIN_N:
    return None
  return Grams(jnp.zeros((4, m, m), dtype), jnp.zeros((n,), bool), jnp.zeros((m,), bool), jnp.zeros((), bool))


def mark_replaced(grams: Grams | None, memory: Memory, stored: jax.Array) -> Grams | None:
  """Marks the slot of the pair just stored (where ``stored``) as dirty: its row
  and column of the sums are recomputed at the next :func:`update_grams`."""
  if grams is None:
    return None
  m = memory.S.shape[0]
  newest = (memory.head + memory.col - 1) % m
  return grams._replace(dirty=grams.dirty | (stored & (jnp.arange(m) == newest)))


def _gram(p: jax.Array, q: jax.Array, w: jax.Array) -> jax.Array:
  """``P W Q'`` for ``W = diag(w)``: the rows of ``p`` and ``q`` over the entries weighted by ``w``."""
  return jnp.matmul(p * w[None, :], q.T, precision=_HI)


def _free_set_sums(S: jax.Array, Y: jax.Array, free: jax.Array) -> jax.Array:
  """``(4, m, m)`` ``Y'ZZ'Y``, ``S'ZZ'Y``, ``S'AA'Y``, ``S'AA'S`` over the free set ``free``,
  in the order of ``S``, ``Y``."""
  z = free.astype(S.dtype)
  # S'ZZ'Y as S (YZ)': with z 0 or 1 each product is that of (SZ) Y', and YZ is shared with Y'ZZ'Y.
  return jnp.stack([_gram(Y, Y, z), jnp.matmul(S, (Y * z[None, :]).T, precision=_HI), _gram(S, Y, 1.0 - z),
                    _gram(S, S, 1.0 - z)])


def chronological_sums(memory: Memory, grams: Grams | None, free: jax.Array) -> jax.Array:
  """The ``(4, m, m)`` sums behind ``K`` in chronological order, for :func:`formk`:
  ``grams`` (from :func:`update_grams`) or, without kept sums (small problems),
  the sums over the current free set computed anew, permuted from buffer-slot order."""
  slots, _ = chronological_slots(memory)
  sums = _free_set_sums(memory.S, memory.Y, free) if grams is None else grams.sums
  return sums[:, slots][:, :, slots]


def update_grams(
    grams: Grams, memory: Memory, free: jax.Array, tiers: tuple[int, ...] | None = None, devices: int = 1
) -> Grams:
  """The kept sums over the new free set, as ``formk`` updates ``wn1``: variables
  entering and leaving the free set are added and removed, and the row and
  column of a replaced pair are recomputed; else everything is recomputed.
  (Small problems keep no sums: :func:`chronological_sums`.)

  ``tiers`` (static) are the sizes of the incremental updates, by default
  :func:`change_tiers` of ``n``; tests pass small ones to cross every tier at
  a small ``n``. Over several ``devices`` (static: the count ``x`` is split
  over) the sums are always recomputed.
  """
  S, Y = memory.S, memory.Y
  m = S.shape[0]
  full = lambda *_: _free_set_sums(S, Y, free)  # noqa: E731
  result = lambda sums: Grams(sums, free, jnp.zeros((m,), bool), jnp.ones((), bool))  # noqa: E731

  # Over several devices the compaction of the changes would gather them (a
  # collective of an n-sized array); the recomputation needs none.
  if devices > 1:
    return result(full())

  sizes = change_tiers(free.size) if tiers is None else tuple(tiers)
  changed = free != grams.free
  nchanged = jnp.sum(changed, dtype=jnp.int32)

  def incremental(sums):
    # Positions of the first sizes[-1] changes, in index order, by binary
    # search on their running count (no scatter, which is slow on CPU);
    # entries past nchanged get weight 0. Each tier takes the first `size`.
    count = jnp.cumsum(changed, dtype=jnp.int32)
    rank = jnp.arange(1, sizes[-1] + 1, dtype=jnp.int32)
    idx = jnp.minimum(jnp.searchsorted(count, rank, side="left", method="scan_unrolled"), free.size - 1)
    w = jnp.where(rank <= nchanged, jnp.where(free[idx], 1.0, -1.0), 0.0).astype(S.dtype)

    def update(size):
      def product(_):
        # The changed columns' products, one per pair of Y and S: one product of
        # [Y; S] would round differently under XLA's default emitters.
        y_c, s_c, w_c = Y[:, idx[:size]], S[:, idx[:size]], w[:size]
        s_y = _gram(s_c, y_c, w_c)  # enters S'ZZ'Y, and S'AA'Y with the opposite sign
        return sums + jnp.stack([_gram(y_c, y_c, w_c), s_y, -s_y, -_gram(s_c, s_c, w_c)])

      return product

    return lax.switch(tier - 1, [update(k) for k in sizes], None)

  def replaced_pair(sums, apply):
    # The replaced pair's row and column, over the new free set: two passes,
    # Y and S each times the four masked vectors; one write of all four sums.
    k = jnp.argmax(grams.dirty)
    yk, sk = Y[k], S[k]
    masked = jnp.stack([jnp.where(free, yk, 0.0), jnp.where(free, sk, 0.0), jnp.where(free, 0.0, yk),
                        jnp.where(free, 0.0, sk)], axis=1)  # Z'y, Z's, A'y, A's
    by_y = jnp.matmul(Y, masked, precision=_HI)
    by_s = jnp.matmul(S, masked, precision=_HI)
    row = jnp.stack([by_y[:, 0], by_y[:, 1], by_y[:, 3], by_s[:, 3]])[:, None, :]
    col = jnp.stack([by_y[:, 0], by_s[:, 0], by_s[:, 2], by_s[:, 3]])[:, :, None]
    at_k = jnp.arange(m) == k
    apply = apply & grams.dirty[k]
    return jnp.where(apply & at_k[None, :], col, jnp.where(apply & at_k[:, None], row, sums))

  # Tier 1 + i: up to sizes[i] changes; branch 0: no change, 1: incremental, 2: recompute.
  tier = 1 + jnp.sum(nchanged > jnp.asarray(sizes), dtype=jnp.int32)
  usable = grams.valid & (jnp.sum(grams.dirty) <= 1)
  branch = jnp.where(usable & (tier <= len(sizes)), jnp.where(nchanged == 0, 0, 1), 2)

  def on_cpu():
    sums = lax.switch(branch, [lambda sums: sums, incremental, full], grams.sums)
    return replaced_pair(sums, branch <= 1)

  # On an accelerator the O(m^2 n) recomputation is a few matrix products, and
  # a switch a host round trip: there the sums are always recomputed.
  return result(lax.platform_dependent(cpu=on_cpu, default=full))


def formk(memory: Memory, sums: jax.Array) -> tuple[tuple[jax.Array, jax.Array, jax.Array], jax.Array]:
  """Factors ``K`` as ``L E L'`` (``formk``): returns ``(U11, X, U22)`` and ``info``.

  ``U11' U11 = D + Y'ZZ'Y/theta``, ``X = U11^-T B`` with ``B = L_a' - R_z'`` as
  the reference stores it, and ``U22' U22 = theta S'AA'S + X'X``. Blocks are
  ``(m, m)``, identity/zero past ``col``. ``sums`` are the sums over the
  current free set in chronological order (:func:`chronological_sums`).
  """
  m = memory.S.shape[0]
  theta = memory.theta
  _, valid = chronological_slots(memory)
  both = valid[:, None] & valid[None, :]
  eye = jnp.eye(m, dtype=memory.S.dtype)
  yzy, szy, say, sas = sums
  i, j = jnp.arange(m)[:, None], jnp.arange(m)[None, :]
  m11 = jnp.where(both, jnp.where(i == j, memory.SY, 0.0) + yzy / theta, eye)
  # B[j, i] = -S_i'AA'Y_j for j < i, S_i'ZZ'Y_j for j >= i.
  b12 = jnp.where(both, jnp.where(i < j, -say.T, szy.T), 0.0)
  c22 = jnp.where(both, theta * sas, eye)
  u11 = jnp.linalg.cholesky(m11).T
  x12 = lax.linalg.triangular_solve(u11, b12, left_side=True, lower=False, transpose_a=True)
  u22 = jnp.linalg.cholesky(c22 + jnp.matmul(x12.T, x12, precision=_HI)).T
  info = ~(jnp.all(jnp.isfinite(u11)) & jnp.all(jnp.isfinite(u22)))
  return (u11, x12, u22), info


def reduced_gradient(
    x: jax.Array, g: jax.Array, xcp: jax.Array, c: jax.Array, memory: Memory, factors: BmvFactors | None = None
) -> tuple[jax.Array, jax.Array]:
  """``r = -theta (xcp - x) - g + W M c`` on all variables (``cmprlb``), and ``info``.

  The caller restricts ``r`` to the free variables. ``factors``: :func:`bmv`'s, when already formed.
  """
  m = memory.S.shape[0]
  wa = bmv(memory, c, factors)
  r = -memory.theta * (xcp - x) - g + w_times(memory, wa[:m], memory.theta * wa[m:])
  return r, ~jnp.all(jnp.isfinite(wa))


def subspace_minimization(
    x: jax.Array,
    g: jax.Array,
    l: jax.Array,
    u: jax.Array,
    xcp: jax.Array,
    r: jax.Array,
    free: jax.Array,
    memory: Memory,
    factors: tuple[jax.Array, jax.Array, jax.Array],
) -> Subspace:
  """Minimizes the model over the free variables from ``xcp`` (``subsm``, v3.0 rule).

  Args:
    x, g, l, u: ``(n,)`` iterate, gradient and bounds.
    xcp: the Cauchy point.
    r: the reduced gradient from :func:`reduced_gradient` (used on ``free``).
    free: ``(n,)`` bool, variables free at ``xcp``.
    memory: the limited memory.
    factors: ``(U11, X, U22)`` from :func:`formk`.
  """
  m = memory.S.shape[0]
  theta = memory.theta
  u11, x12, u22 = factors
  has_l = l > -jnp.inf
  has_u = u < jnp.inf
  r = jnp.where(free, r, 0.0)

  # 1. Newton direction on the free variables: solve with U' E U.
  wv = w_transpose_times(memory, r)  # W'Z r
  wv1, wv2 = wv[:m], wv[m:]
  v1 = _solve(u11, wv1, transpose=True)
  v2 = _solve(u22, wv2 - tmatvec(x12, v1), transpose=True)
  v1 = -v1
  v2 = _solve(u22, v2)
  v1 = _solve(u11, v1 - matvec(x12, v2))
  info = ~(jnp.all(jnp.isfinite(v1)) & jnp.all(jnp.isfinite(v2)))
  du = (r + w_times(memory, v1 / theta, v2)) * (1.0 / theta)
  du = jnp.where(free, du, 0.0)

  # 2. Project xcp + du onto the box (free variables only).
  xhat = jnp.where(free, jnp.minimum(jnp.maximum(xcp + du, l), u), xcp)
  on_bound = free & ((has_l & (xhat == l)) | (has_u & (xhat == u)))
  iword = jnp.any(on_bound)
  ascent = jnp.vdot(xhat - x, g) > 0

  # 3. v3.0 rule: keep the projection unless it gives no descent; then
  #    truncate the step to the box (Byrd et al. 1995, eq. 5.8).
  ratio = jnp.where(free, steps_to_bounds(xcp, du, l, u), jnp.inf)
  ibd, ratio_min = first_argmin(ratio)
  alpha = jnp.minimum(1.0, ratio_min).astype(x.dtype)
  block = (jnp.arange(x.size) == ibd) & (alpha < 1.0)
  xtrunc = jnp.where(block, jnp.where(du > 0, u, l), xcp + alpha * du)
  z = jnp.where(iword & ascent, xtrunc, xhat)
  return Subspace(z=z, iword=iword, info=info)
