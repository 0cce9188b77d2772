"""Tests for jax_lbfgsb._cauchy.cauchy_point against a dense brute-force oracle.

The oracle follows the definition (Byrd, Lu, Nocedal, Zhu 1995, section 4):
the projected path ``z(t) = P(x - t g)`` (fixed variables stay put), the model
``q(z) = g'(z - x) + 1/2 (z - x)' B (z - x)`` with a dense ``B``, and the GCP
as the first local minimizer of ``q(z(t))``, found by walking the segments
between the sorted breakpoints (``q`` is quadratic on each). A grid along the
path cross-checks that ``q`` does not increase before the GCP.
"""

import functools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jax_lbfgsb._bounds import first_argmin  # noqa: E402
from jax_lbfgsb._cauchy import MERGE_ROWS, SORT_AFTER, cauchy_point, floored_sums  # noqa: E402
import dense_lbfgs  # noqa: E402

N, M = 7, 4
INF = np.inf

_cauchy = jax.jit(cauchy_point)  # the walk, on CPU
_scan = jax.jit(functools.partial(cauchy_point, method="scan"))
_merge = jax.jit(functools.partial(cauchy_point, method="merge"), static_argnames=("blocks",))


def some_blocks(n):
  """A block count for the merge that splits ``n`` (n itself when prime: blocks of one)."""
  return next(b for b in (4, 3, 2, n) if n % b == 0 and b < n or b == n)


# ----------------------------------------------------------------------------
# Oracles.


def memory_and_dense(npairs, seed=0, n=N):
  """A memory with ``npairs`` updates (m = 4, so 6 wraps), its dense ``B``, ``W`` padded to ``n x 2m``, and theta."""
  dense = dense_lbfgs.memory_and_dense(n, M, npairs, 100 + seed)
  w = np.zeros((n, 2 * M))
  w[:, :dense.col] = dense.w[:, :dense.col]
  w[:, M:M + dense.col] = dense.w[:, dense.col:]
  return dense.mem, dense.b, w, dense.theta


def model(z, x, g, b):
  dz = z - x
  return g @ dz + 0.5 * dz @ b @ dz


def path(t, x, g, l, u, fixed):
  return np.where(fixed, x, np.clip(x - t * g, l, u))


def gcp_oracle(x, g, l, u, fixed, b):
  """``(xcp, t_cp, breakpoints)``: first local minimizer of ``q`` along ``P(x - t g)``."""
  # Time at which each variable stops moving along x - t g (0: does not move).
  stop = np.full(x.size, INF)
  stop[fixed | (g == 0)] = 0.0
  down = ~fixed & (g > 0) & (l > -INF)
  up = ~fixed & (g < 0) & (u < INF)
  stop[down] = (x[down] - l[down]) / g[down]
  stop[up] = (x[up] - u[up]) / g[up]
  brk = np.sort(stop[(stop > 0) & (stop < INF)])
  knots = np.concatenate([[0.0], brk, [INF]])
  for j in range(len(knots) - 1):
    t0, t1 = knots[j], knots[j + 1]
    z0 = path(t0, x, g, l, u, fixed)
    dj = np.where(stop > t0, -g, 0.0)
    if not np.any(dj != 0):
      return z0, t0, brk
    f1 = (g + b @ (z0 - x)) @ dj
    f2 = dj @ b @ dj
    assert f2 > 0
    if f1 >= 0:
      return z0, t0, brk
    tstar = -f1 / f2
    if tstar < t1 - t0:
      return np.where(stop > t0, z0 + tstar * dj, z0), t0 + tstar, brk
  raise AssertionError("unreachable")


def random_problem(rng, width=(0.05, 1.0)):
  return dense_lbfgs.random_box_problem(rng, N, width)


def run_and_check(x, g, l, u, fixed, npairs, seed=0):
  mem, b, w, _ = memory_and_dense(npairs, seed, x.size)
  res = _cauchy(*(jnp.asarray(a) for a in (x, g, l, u, fixed)), mem)
  xcp, c, free, nseg = (np.asarray(a) for a in (res.xcp, res.c, res.free, res.nseg))
  assert not bool(res.info)
  want, t_cp, brk = gcp_oracle(x, g, l, u, fixed, b)
  scale = 1.0 + np.abs(x).max()

  # Feasible, and on the oracle's GCP.
  assert np.all(xcp >= l) and np.all(xcp <= u)
  np.testing.assert_allclose(xcp, want, rtol=1e-10, atol=1e-12 * scale)
  # Variables that cannot move (fixed, at a bound with -g pointing out, g = 0) stay exactly put.
  at_l, at_u = x <= l, x >= u
  pinned = fixed | (at_l & (g >= 0)) | (at_u & (g <= 0))  # the reference's iwhere = 3, 1, 2
  stays = pinned | (g == 0)
  np.testing.assert_array_equal(xcp[stays], x[stays])
  # Variables whose breakpoint was passed sit exactly on the bound.
  passed = ~pinned & ((want == l) | (want == u))
  np.testing.assert_array_equal(xcp[passed], want[passed])

  # On the path: xcp = P(x - t_cp g).
  np.testing.assert_allclose(xcp, path(t_cp, x, g, l, u, fixed), rtol=1e-10, atol=1e-12 * scale)
  # First local minimizer: q is non-increasing on [0, t_cp] and does not decrease just past it.
  q_cp = model(xcp, x, g, b)
  q_scale = 1.0 + abs(q_cp)
  grid = np.linspace(0.0, t_cp, 201)
  q_grid = np.array([model(path(t, x, g, l, u, fixed), x, g, b) for t in grid])
  assert np.all(np.diff(q_grid) <= 1e-12 * q_scale)
  assert np.all(q_grid >= q_cp - 1e-12 * q_scale)
  for dt in (1e-6, 1e-4, 1e-2):
    assert model(path(t_cp + dt, x, g, l, u, fixed), x, g, b) >= q_cp - 1e-12 * q_scale
  assert q_cp <= model(x, x, g, b)

  # c = W'(xcp - x), 2m chronological, zero past col.
  np.testing.assert_allclose(c, w.T @ (xcp - x), rtol=1e-10, atol=1e-12 * scale * max(1.0, np.abs(w).max()))
  # free: exactly the variables not on a bound at xcp.
  on_bound = (xcp == l) | (xcp == u)
  np.testing.assert_array_equal(free, ~on_bound)
  assert not np.any(free[pinned])
  assert np.all(free[(g == 0) & ~pinned])  # iwhere = -3 (bounded, inside) or -1 (unbounded): free
  # nseg: 1 + breakpoints passed (all of them when the GCP is past the last one).
  assert int(nseg) == 1 + int(np.sum(brk <= t_cp))

  # The loop-free scan finds the same segment, and the same point to rounding:
  # its prefix sums add the same terms in another order, each term at most
  # |d|_inf (|x| + |l|, |u| finite) or |W|_inf |p|, so 8 n eps times those.
  scan = _scan(*(jnp.asarray(a) for a in (x, g, l, u, fixed)), mem)
  assert int(scan.nseg) == int(nseg) and not bool(scan.info)
  np.testing.assert_array_equal(np.asarray(scan.free), free)
  finite = np.abs(np.concatenate([x, l[np.isfinite(l)], u[np.isfinite(u)]])).max()
  tol = 8 * x.size * np.finfo(np.float64).eps * max(1.0, np.abs(g).max()) * (1.0 + finite) * max(1.0, np.abs(w).max())
  np.testing.assert_allclose(np.asarray(scan.xcp), xcp, rtol=0, atol=tol)
  np.testing.assert_allclose(np.asarray(scan.c), c, rtol=0, atol=tol * max(1.0, np.abs(w).max()))
  # The merge (x split over devices: each block sorted on its own, runs of
  # MERGE_ROWS breakpoints) adds the same terms as the scan, run by run.
  for blocks in (1, some_blocks(x.size)):
    merge = _merge(*(jnp.asarray(a) for a in (x, g, l, u, fixed)), mem, blocks=blocks)
    assert int(merge.nseg) == int(nseg) and not bool(merge.info)
    np.testing.assert_array_equal(np.asarray(merge.free), free)
    np.testing.assert_allclose(np.asarray(merge.xcp), xcp, rtol=0, atol=tol)
    np.testing.assert_allclose(np.asarray(merge.c), c, rtol=0, atol=tol * max(1.0, np.abs(w).max()))
  return xcp, t_cp, brk


# ----------------------------------------------------------------------------
# Tests.


@pytest.mark.parametrize("npairs", [0, 2, 6])
def test_all_kinds_of_variables(npairs):
  """Every status at once: unbounded, one-sided, boxed, fixed, at l/u pointing out and in."""
  x = np.array([0.3, 0.0, 1.0, 0.2, -0.5, 0.5, 0.1])
  g = np.array([0.8, 1.5, -0.7, -1.2, -0.4, 0.9, -0.6])
  l = np.array([-INF, 0.0, -INF, -1.0, -0.5, 0.5, -0.3])
  u = np.array([INF, 2.0, 1.0, 0.6, INF, 0.5, 0.4])
  # 0: unbounded; 1: at l, -g points out (pinned); 2: at u, -g points out (pinned);
  # 3: boxed, moves up; 4: at l, -g points in (moves, no upper bound);
  # 5: fixed (l == u); 6: boxed, moves up toward u.
  fixed = l == u
  xcp, _, _ = run_and_check(x, g, l, u, fixed, npairs)
  assert xcp[1] == 0.0 and xcp[2] == 1.0 and xcp[5] == 0.5 and xcp[4] > -0.5


@pytest.mark.parametrize("npairs", [0, 2, 6])
def test_all_bounded_passes_every_breakpoint(npairs):
  """Tight box: the path ends at a vertex; the GCP is the last breakpoint or before."""
  x = np.linspace(-0.3, 0.3, N)
  g = np.array([3.0, -2.0, 4.0, -5.0, 2.5, -3.5, 6.0])
  l, u = x - 0.01, x + 0.01
  xcp, t_cp, brk = run_and_check(x, g, l, u, l == u, npairs)
  assert t_cp == brk[-1]
  np.testing.assert_array_equal(xcp, np.clip(x - 1e3 * g, l, u))


@pytest.mark.parametrize("npairs", [0, 3])
def test_unconstrained_is_steepest_descent_minimizer(npairs):
  rng = np.random.default_rng(5)
  x, g = rng.standard_normal(N), rng.standard_normal(N)
  l, u = np.full(N, -INF), np.full(N, INF)
  _, b, _, _ = memory_and_dense(npairs)
  xcp, t_cp, _ = run_and_check(x, g, l, u, l == u, npairs)
  np.testing.assert_allclose(t_cp, (g @ g) / (g @ b @ g), rtol=1e-12)


@pytest.mark.parametrize("npairs", [0, 2])
def test_zero_gradient_components(npairs):
  """g_i = 0: inside a box (iwhere = -3) or unbounded, the variable stays and is free; at a bound it is not free."""
  x = np.array([0.3, 0.0, 1.0, 0.2, -0.5, 0.5, 0.1])
  g = np.array([0.0, 0.0, 0.0, -1.2, 0.4, 0.9, -0.6])
  l = np.array([-1.0, -INF, 1.0, -1.0, -1.3, 0.0, -0.3])
  u = np.array([1.0, INF, 2.0, 0.6, INF, 1.0, 0.4])
  xcp, _, _ = run_and_check(x, g, l, u, l == u, npairs)
  mem, _, _, _ = memory_and_dense(npairs)
  free = np.asarray(_cauchy(*(jnp.asarray(a) for a in (x, g, l, u, l == u)), mem).free)
  assert free[0] and free[1] and not free[2]
  np.testing.assert_array_equal(xcp[:3], x[:3])


def test_no_moving_variable_returns_x():
  """Every variable fixed or pinned: xcp = x, c = 0, nothing free."""
  x = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.2, 0.3])
  g = np.array([1.0, -1.0, 2.0, 0.5, -0.5, 3.0, -3.0])
  l = np.array([0.0, 0.0, 0.5, 0.0, -INF, 0.2, 0.3])
  u = np.array([1.0, 1.0, 0.5, INF, 1.0, 0.2, 0.3])
  mem, _, _, _ = memory_and_dense(2)
  res = _cauchy(*(jnp.asarray(a) for a in (x, g, l, u, l == u)), mem)
  np.testing.assert_array_equal(np.asarray(res.xcp), x)
  np.testing.assert_array_equal(np.asarray(res.c), 0.0)
  assert not np.any(np.asarray(res.free))
  assert not bool(res.info)


@pytest.mark.parametrize("npairs", [0, 2, 4, 6])
def test_random_boxes(npairs):
  """20 random seeds per memory: oracle agreement and q(xcp) <= q(x)."""
  for seed in range(20):
    rng = np.random.default_rng(seed)
    x, g, l, u, fixed = random_problem(rng)
    run_and_check(x, g, l, u, fixed, npairs)


@pytest.mark.parametrize("npairs", [2, 4, 6])
def test_gcp_at_an_interior_breakpoint(npairs):
  """Cases where the first local minimizer is a breakpoint before the last one (f1 >= 0 right after it)."""
  _, b, _, _ = memory_and_dense(npairs)
  checked = 0
  for seed in range(300):
    x, g, l, u, fixed = random_problem(np.random.default_rng(seed))
    _, t_cp, brk = gcp_oracle(x, g, l, u, fixed, b)
    if t_cp in brk and t_cp < brk[-1]:
      run_and_check(x, g, l, u, fixed, npairs)
      checked += 1
      if checked == 6:
        break
  assert checked >= 1


@pytest.mark.parametrize("npairs", [0, 3])
@pytest.mark.parametrize("tight", [True, False])
def test_walk_past_the_argmin_phase(npairs, tight):
  """More than SORT_AFTER breakpoints: the walk goes on over the sorted rest (and the
  merge over several runs of MERGE_ROWS)."""
  n = 3 * SORT_AFTER
  rng = np.random.default_rng(11)
  x, g = rng.uniform(-1.0, 1.0, n), rng.standard_normal(n)
  # Breakpoint of variable i at t_i = r_i: all passed (tight), or ~60% before
  # t = 1, where the model's minimizer lies on the path when B = I (npairs 0).
  r = rng.uniform(1e-3, 2e-3, n) if tight else rng.uniform(0.0, 1.6, n)
  l, u = x - r * np.abs(g), x + r * np.abs(g)
  xcp, t_cp, brk = run_and_check(x, g, l, u, l == u, npairs)
  if npairs == 0:
    assert np.sum(brk <= t_cp) > max(SORT_AFTER, MERGE_ROWS)


@pytest.mark.parametrize("npairs", [0, 3])
def test_walk_of_every_breakpoint_without_the_sorted_part(npairs):
  """n = SORT_AFTER: the argmin phase can pass every breakpoint; the sort is not in the graph."""
  n = SORT_AFTER
  rng = np.random.default_rng(12)
  x, g = rng.uniform(-1.0, 1.0, n), rng.standard_normal(n)
  r = rng.uniform(1e-3, 2e-3, n)  # every breakpoint before the model's minimizer
  l, u = x - r * np.abs(g), x + r * np.abs(g)
  _, t_cp, brk = run_and_check(x, g, l, u, l == u, npairs)
  if npairs == 0:
    assert np.sum(brk <= t_cp) == n
  mem, _, _, _ = memory_and_dense(npairs, 0, n)
  walk = functools.partial(cauchy_point, method="walk")
  assert " sort[" not in str(jax.make_jaxpr(walk)(x, g, l, u, l == u, mem))
  assert " sort[" in str(jax.make_jaxpr(walk)(*(np.tile(a, 2) for a in (x, g, l, u, l == u)),
                                            memory_and_dense(npairs, 0, 2 * n)[0]))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_floored_sums_match_the_sequential_recurrence(dtype):
  rng = np.random.default_rng(7)
  deltas = np.asarray(rng.standard_normal(37), dtype)  # crosses the floor several times
  f0, floor = dtype(1.5), dtype(0.25)
  want, f = [], f0
  for delta in deltas:
    f = max(floor, f + delta)
    want.append(f)
  got = jax.jit(floored_sums)(f0, jnp.asarray(deltas), floor)
  assert got.dtype == dtype and np.sum(np.asarray(want) == floor) >= 3
  np.testing.assert_allclose(got, want, rtol=0, atol=8 * 37 * np.finfo(dtype).eps * np.abs(deltas).sum())


def test_the_platform_picks_the_walk_on_cpu_and_the_scan_elsewhere():
  x = np.linspace(-1.0, 1.0, 40)
  args = (x, np.ones(40), x - 0.5, x + 0.5, np.zeros(40, bool), memory_and_dense(2, 0, 40)[0])
  lowered = {p: jax.jit(cauchy_point).trace(*args).lower(lowering_platforms=(p,)).as_text() for p in ("cpu", "cuda")}
  assert lowered["cpu"].count("stablehlo.while") == 2  # the argmin walk and the sorted rest
  assert lowered["cuda"].count("stablehlo.while") == 0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_first_argmin(dtype):
  rng = np.random.default_rng(3)
  f = jax.jit(first_argmin)
  for values in (rng.standard_normal(50), np.round(rng.standard_normal(50)), np.full(7, np.inf),
                 np.array([2.0, 1.0, 1.0, 3.0])):
    values = np.asarray(values, dtype)
    i, low = f(jnp.asarray(values))
    assert int(i) == int(np.argmin(values)) and low == values.min()
  batch = np.asarray(rng.integers(0, 3, (4, 9)), dtype)  # ties in every row
  i, low = jax.vmap(first_argmin)(jnp.asarray(batch))
  np.testing.assert_array_equal(np.asarray(i), np.argmin(batch, axis=1))
  np.testing.assert_array_equal(np.asarray(low), batch.min(axis=1))

