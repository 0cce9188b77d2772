"""Tests for jax_lbfgsb._subspace (formk, reduced_gradient, subspace_minimization) against dense algebra.

The oracle is the quadratic model ``q(z) = g'(z - x) + 1/2 (z - x)' B (z - x)``
with a dense compact L-BFGS ``B``, minimized over the variables free at the
Cauchy point (the others held at ``xcp``) by a dense solve, then the v3.0 rule
of Morales and Nocedal (2011): keep the projection of the subspace minimizer
onto the box unless it hit a bound and is not a descent direction from ``x``;
then truncate the step at the first bound (Byrd et al. 1995, eq. 5.8).
"""


import functools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jax_lbfgsb._cauchy import cauchy_point  # noqa: E402
import dense_lbfgs  # noqa: E402
from jax_lbfgsb._subspace import (  # noqa: E402
    chronological_sums, formk, init_grams, reduced_gradient, subspace_minimization, update_grams,
)

N, M = 7, 4
INF = np.inf


@jax.jit
def _subspace(x, g, l, u, xcp, c, free, mem):
  grams = init_grams(free.size, mem.S.shape[0], mem.S.dtype)
  factors, info_k = formk(mem, chronological_sums(mem, None if grams is None else update_grams(grams, mem, free), free))
  r, info_r = reduced_gradient(x, g, xcp, c, mem)
  sub = subspace_minimization(x, g, l, u, xcp, r, free, mem, factors)
  return factors, r, sub, info_k | info_r


@jax.jit
def _pipeline(x, g, l, u, fixed, mem):
  gcp = cauchy_point(x, g, l, u, fixed, mem)
  return gcp, *_subspace(x, g, l, u, gcp.xcp, gcp.c, gcp.free, mem)


# ----------------------------------------------------------------------------
# Oracles.


def memory_and_dense(npairs, seed=0):
  """Memory after ``npairs`` updates (m = 4; 6 wraps), dense ``B``, ``W`` (``n x 2col``), ``M^-1``, theta, col."""
  return tuple(dense_lbfgs.memory_and_dense(N, M, npairs, 200 + seed))


def expected_z(x, g, l, u, xcp, free, b):
  """``(z, du, branch)`` from a dense subspace solve and the v3.0 rule."""
  du = np.zeros(N)
  rhs = -(g + b @ (xcp - x))
  du[free] = np.linalg.solve(b[np.ix_(free, free)], rhs[free])
  xhat = np.where(free, np.clip(xcp + du, l, u), xcp)
  hit = free & (((l > -INF) & (xhat == l)) | ((u < INF) & (xhat == u)))
  if not hit.any():
    return xhat, du, "interior"
  if (xhat - x) @ g <= 0:
    return xhat, du, "projected"
  # Truncated step: largest alpha <= 1 with xcp + alpha du in the box; the first blocking variable lands on its bound.
  ratio = np.ones(N)
  for i in np.flatnonzero(free):
    if du[i] < 0 and l[i] > -INF:
      ratio[i] = 0.0 if l[i] - xcp[i] >= 0 else (l[i] - xcp[i]) / du[i]
    elif du[i] > 0 and u[i] < INF:
      ratio[i] = 0.0 if u[i] - xcp[i] <= 0 else (u[i] - xcp[i]) / du[i]
  alpha = min(1.0, ratio.min())
  z = xcp + alpha * du
  if alpha < 1.0:
    ibd = int(np.argmin(ratio))
    z[ibd] = u[ibd] if du[ibd] > 0 else l[ibd]
  return z, du, "truncated"


def random_problem(rng, width=(0.05, 1.0)):
  return dense_lbfgs.random_box_problem(rng, N, width)


def run_and_check(x, g, l, u, fixed, npairs):
  """Cauchy point then subspace step, checked against dense algebra; returns the oracle's branch."""
  mem = memory_and_dense(npairs)[0]
  gcp, factors, r, sub, info = _pipeline(*(jnp.asarray(a) for a in (x, g, l, u, fixed)), mem)
  assert not bool(gcp.info)
  return check(x, g, l, u, np.asarray(gcp.xcp), np.asarray(gcp.free), npairs, (factors, r, sub, info))


def check(x, g, l, u, xcp, free, npairs, result=None):
  """Checks formk, reduced_gradient and subspace_minimization at ``(xcp, free)``; returns the oracle's branch.

  Without ``result`` the kernels run here with ``c = W'(xcp - x)`` from the dense ``W``.
  """
  mem, b, w, m_inv, theta, col = memory_and_dense(npairs)
  if result is None:
    c = np.zeros(2 * M)
    wc = w.T @ (xcp - x)
    c[:col], c[M:M + col] = wc[:col], wc[col:]
    result = _subspace(*(jnp.asarray(a) for a in (x, g, l, u, xcp, c, free)), mem)
  (u11, x12, u22), r, sub, info = result
  assert not bool(info) and not bool(sub.info)
  z = np.asarray(sub.z)

  # reduced_gradient: r = -(g + B (xcp - x)) on every variable.
  want_r = -(g + b @ (xcp - x))
  np.testing.assert_allclose(np.asarray(r), want_r, rtol=1e-10, atol=1e-11 * np.abs(want_r).max())

  # formk: U' E U = K = M^-1 - W'ZZ'W / theta on the valid block (E = diag(-I, I)).
  if free.any():
    valid = np.r_[np.arange(col), M + np.arange(col)]
    up = np.block([[np.asarray(u11), np.asarray(x12)], [np.zeros((M, M)), np.asarray(u22)]])[np.ix_(valid, valid)]
    e = np.diag(np.r_[-np.ones(col), np.ones(col)])
    wz = w[free]
    k = m_inv - wz.T @ wz / theta
    np.testing.assert_allclose(up.T @ e @ up, k, rtol=1e-10, atol=1e-10 * np.abs(k).max())

  want, du, branch = expected_z(x, g, l, u, xcp, free, b)
  assert np.all(z >= l) and np.all(z <= u)
  np.testing.assert_array_equal(z[~free], xcp[~free])
  np.testing.assert_allclose(z, want, rtol=1e-9, atol=1e-10 * (1 + np.abs(du).max()))
  assert bool(sub.iword) == (branch != "interior")
  if branch == "interior":
    # The exact minimizer of q over the free variables: zero reduced gradient there.
    grad = g + b @ (z - x)
    np.testing.assert_allclose(grad[free], 0.0, atol=1e-10 * (1 + np.abs(g).max()))
  elif branch == "projected":
    assert (z - x) @ g <= 1e-12 * np.abs(g).max()
    np.testing.assert_array_equal(z, np.where(free, np.clip(z, l, u), xcp))
  else:
    # The blocking variable is exactly on its bound; the others move along du.
    moved = free & (du != 0)
    on = moved & ((z == l) | (z == u))
    assert on.sum() >= 1
    rest = moved & ~on
    if rest.any():
      alpha = (z[rest] - xcp[rest]) / du[rest]
      np.testing.assert_allclose(alpha, alpha[0], rtol=1e-8)
      assert 0 <= alpha[0] < 1
  return branch


# ----------------------------------------------------------------------------
# Tests.


@pytest.mark.parametrize("npairs", [1, 3, 6])
def test_large_box_is_exact_subspace_minimizer(npairs):
  """Wide bounds (plus a fixed and a pinned variable): z minimizes q over the free variables exactly."""
  rng = np.random.default_rng(npairs)
  x = rng.uniform(-1, 1, N)
  g = rng.standard_normal(N)
  l, u = x - 1e3, x + 1e3
  l[1] = u[1] = x[1]  # fixed
  l[3] = x[3]  # at l, -g points out: pinned
  g[3] = abs(g[3]) + 0.1
  u[5] = np.inf  # one-sided
  l[6], u[6] = -np.inf, np.inf  # unbounded
  mem, b, _, _, _, _ = memory_and_dense(npairs)
  gcp, _, _, sub, _ = _pipeline(*(jnp.asarray(a) for a in (x, g, l, u, l == u)), mem)
  free = np.asarray(gcp.free)
  np.testing.assert_array_equal(free, [True, False, True, False, True, True, True])
  assert run_and_check(x, g, l, u, l == u, npairs) == "interior"
  # Same minimizer from a direct solve from x over the free variables.
  z = np.asarray(sub.z)
  want = x.copy()
  want[free] = x[free] - np.linalg.solve(b[np.ix_(free, free)], g[free])
  np.testing.assert_allclose(z, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("npairs", [1, 3, 6])
def test_random_boxes_from_cauchy_point(npairs):
  """Random boxes, from the Cauchy point: each case agrees with the dense oracle."""
  seen = {"interior": 0, "projected": 0, "truncated": 0}
  for seed in range(60):
    rng = np.random.default_rng(seed)
    x, g, l, u, fixed = random_problem(rng, width=(0.05, 1.0) if seed % 2 else (0.5, 3.0))
    seen[run_and_check(x, g, l, u, fixed, npairs)] += 1
  # From a true Cauchy point the truncation branch is rare (it never occurs here); see the next test.
  assert seen["interior"] > 0 and seen["projected"] > 0, seen


@pytest.mark.parametrize("npairs", [1, 3, 6])
def test_projection_rule_with_arbitrary_start(npairs):
  """The v3.0 rule on its own: ``xcp`` anywhere in the box (not a Cauchy point), ``free`` the variables
  strictly inside. Truncation (projection not a descent direction) is rare from a true Cauchy point, so
  this is where the truncated branch is exercised.
  """
  seen = {"interior": 0, "projected": 0, "truncated": 0}
  for seed in range(40):
    rng = np.random.default_rng(1000 + seed)
    x, g, l, u, _ = random_problem(rng)
    lo, hi = np.maximum(l, x - 2.0), np.minimum(u, x + 2.0)
    xcp = rng.uniform(lo, hi)
    pin = rng.uniform(size=N) < 0.25
    xcp = np.where(pin & (l > -INF), l, xcp)
    free = (xcp > l) & (xcp < u)
    if not free.any():
      continue
    seen[check(x, g, l, u, xcp, free, npairs)] += 1
  assert all(v > 0 for v in seen.values()), seen


@pytest.mark.parametrize("n, tiers", [
    (296, dict(smallest=2, fraction=4)),  # (2, 16, 74): three tiers and the recomputation at a small n
    (1280, {}),  # the solver's own tiers, (64, 80)
])
def test_update_grams_incremental_equals_full_recomputation(n, tiers):
  # A memory that wraps (m = 4), free sets that change by none, a few or many
  # variables at a time (the no-change branch, each incremental tier, and the
  # full recomputation past the last), and new pairs in between. The oracle is
  # the m x n sums themselves (no n x n matrix): large n (e.g. the tiers
  # (64, 512, 1025) of n = 16400) runs the same branches as small n with small
  # tiers; change_tiers' doctest checks the large-n tiers.
  from jax_lbfgsb._subspace import INCREMENTAL_MIN_N, change_tiers

  assert n >= INCREMENTAL_MIN_N
  sizes_k = change_tiers(n, **tiers)
  assert len(sizes_k) >= 2
  update = jax.jit(functools.partial(update_grams, tiers=sizes_k))
  # Change counts: none, 1 (first tier), one past each tier (the next one),
  # exactly the last tier, and past it (the recomputation).
  sizes = (0, 1, *(k + 1 for k in sizes_k[:-1]), sizes_k[-1], sizes_k[-1] + 5)
  rng = np.random.default_rng(5)
  mem = dense_lbfgs.memory_and_dense(n, M, 6, 300).mem
  grams = init_grams(n, M, jnp.float64)
  free = rng.uniform(size=n) < 0.6
  for step in range(2 * len(sizes) + 2):
    if step in (len(sizes), len(sizes) + 2):  # a new pair replaces the oldest slot (no change, then a few)
      s, y = rng.standard_normal(n), rng.standard_normal(n)
      s = s * np.sign(s @ y)
      mem, _ = dense_lbfgs.update(mem, jnp.asarray(s), jnp.asarray(y), jnp.asarray(s @ y), jnp.asarray(s @ s))
      newest = (int(mem.head) + int(mem.col) - 1) % M
      grams = grams._replace(dirty=grams.dirty.at[newest].set(True))
    size = sizes[step % len(sizes)]
    flips = rng.choice(n, size=size, replace=False)
    free = free.copy()
    free[flips] = ~free[flips]
    grams = update(grams, mem, jnp.asarray(free))
    z = free.astype(float)
    y_buf, s_buf = np.asarray(mem.Y), np.asarray(mem.S)
    # Sums of n products of O(1) terms, added in another order: rounding is a few
    # eps * n * max|term| at most (here ~1e-13), far below any wrong-sum error.
    tol = 64 * np.finfo(np.float64).eps * n * max(np.abs(y_buf).max(), np.abs(s_buf).max()) ** 2
    np.testing.assert_allclose(grams.yzy, (y_buf * z) @ y_buf.T, rtol=0, atol=tol)
    np.testing.assert_allclose(grams.szy, (s_buf * z) @ y_buf.T, rtol=0, atol=tol)
    np.testing.assert_allclose(grams.say, (s_buf * (1 - z)) @ y_buf.T, rtol=0, atol=tol)
    np.testing.assert_allclose(grams.sas, (s_buf * (1 - z)) @ s_buf.T, rtol=0, atol=tol)


@pytest.mark.parametrize("kept", [False, True], ids=["recomputed", "kept"])
def test_chronological_sums(kept):
  # formk's sums in chronological order: computed over the pairs in that order
  # (small problems keep none), or the kept sums (buffer-slot order) permuted.
  # A wrapped memory (head > 0), so the two orders differ.
  from jax_lbfgsb._subspace import INCREMENTAL_MIN_N

  n = INCREMENTAL_MIN_N if kept else N
  mem = dense_lbfgs.memory_and_dense(n, M, 6, 11).mem
  assert int(mem.head) > 0 and int(mem.col) == M
  free = np.random.default_rng(3).uniform(size=n) < 0.6
  grams = update_grams(init_grams(n, M, jnp.float64), mem, jnp.asarray(free)) if kept else None
  sums = jax.jit(chronological_sums)(mem, grams, jnp.asarray(free))
  slots = (int(mem.head) + np.arange(M)) % M
  y, s, z = np.asarray(mem.Y)[slots], np.asarray(mem.S)[slots], free.astype(float)
  tol = 64 * np.finfo(np.float64).eps * n * max(np.abs(y).max(), np.abs(s).max()) ** 2
  for got, want in zip(sums, ((y * z) @ y.T, (s * z) @ y.T, (s * (1 - z)) @ y.T, (s * (1 - z)) @ s.T)):
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
