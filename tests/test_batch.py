"""minimize_batch: lanes drawing problems from a batch give each problem its single solve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lbfgsb import Termination, minimize, minimize_batch
from jax_lbfgsb._batch import default_lanes
import rounding

DTYPES = [jnp.float32, jnp.float64]
FLOAT32_ENDS = (Termination.CONVERGED_PGTOL, Termination.CONVERGED_FTOL, Termination.PRECISION_LIMIT)


def rosen(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _flat(p):
  return jnp.concatenate([p["w"], p["b"]])


def shifted_rosen(p, a, weight):
  return rosen(_flat(p) + a) + weight * jnp.sum(_flat(p) ** 2)


def convex(p, a, weight):
  x = _flat(p)
  return jnp.sum((x - a) ** 2 * jnp.arange(1.0, 5.0, dtype=x.dtype)) + weight * jnp.sum(x**4)


@pytest.mark.rounding
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_problem_gets_its_single_solve(dtype):
  # Seven problems through three lanes (each lane takes new problems), under
  # jit: a pytree x0, per-problem args and lower bounds, a shared upper bound
  # and a shared Python number in args.
  rng = np.random.default_rng(1)
  batch = 7
  x0 = {"w": jnp.asarray(rng.uniform(-1.5, 0.8, (batch, 2)), dtype),
        "b": jnp.asarray(rng.uniform(-1.5, 0.8, (batch, 2)), dtype)}
  shifts = jnp.asarray(rng.uniform(-0.5, 0.5, (batch, 4)), dtype)
  lower = {"w": jnp.asarray(rng.uniform(-1.5, -1.0, (batch, 2)), dtype), "b": jnp.full((batch, 2), -1.5, dtype)}
  # float32 rounding can lead the shifted Rosenbrock to another local minimum
  # than its single solve (test_minimize's vmap test): a convex f there.
  f = shifted_rosen if dtype == jnp.float64 else convex
  solve = jax.jit(lambda x0, a, lo: minimize_batch(f, x0, args=(a, 0.01), bounds=(lo, 0.8), lanes=3))
  res = solve(x0, shifts, lower)
  assert res.x["w"].shape == (batch, 2) and res.fun.shape == res.nit.shape == (batch,)
  assert res.message.shape == (batch,)
  for i in range(batch):
    take = lambda t: jax.tree.map(lambda a: a[i], t)  # noqa: E731
    single = minimize(f, take(x0), args=(shifts[i], 0.01), bounds=(take(lower), 0.8))
    if dtype == jnp.float64:
      assert (int(res.nit[i]), int(res.nfev[i]), int(res.termination[i])) == (
          int(single.nit), int(single.nfev), int(single.termination))
      x = np.asarray(_flat(single.x))
      free = (x > np.asarray(_flat(take(lower)))) & (x < 0.8)
      x_tol = rounding.solution_tolerance(lambda v: f({"w": v[:2], "b": v[2:]}, shifts[i], 0.01), x,
                                          single.nit, free=free)
      assert x_tol < 1e-8  # the check still means something
      np.testing.assert_allclose(_flat(take(res.x)), x, rtol=0, atol=x_tol)
      f_tol = rounding.value_tolerance(single.fun, _flat(single.jac), x_tol, single.nit, dtype)
      np.testing.assert_allclose(res.fun[i], single.fun, rtol=0, atol=f_tol)
    else:  # vmapped float32 reductions round differently: counts may move
      assert int(res.termination[i]) in FLOAT32_ENDS and int(single.termination) in FLOAT32_ENDS
      np.testing.assert_allclose(res.fun[i], single.fun, rtol=1e-4, atol=1e-5)
  x = np.concatenate([res.x["w"], res.x["b"]], axis=1)
  assert x.dtype == dtype and np.all(x <= 0.8) and np.all(x >= np.concatenate([lower["w"], lower["b"]], axis=1))


def _quadratic(x, c):
  return jnp.sum((x - c) ** 2) + jnp.log(c[0])  # NaN for c[0] < 0


def test_nan_problems_and_stops_at_x0_leave_the_others_alone():
  rng = np.random.default_rng(2)
  centers = rng.uniform(0.5, 2.0, (9, 3))
  x0 = rng.uniform(-1.0, 1.0, (9, 3))
  x0[[1, 4]] = np.minimum(centers[[1, 4]], 1.0)  # at their solutions (or its bound): stop at x0
  nan_rows = [2, 7]
  bad = centers.copy()
  bad[nan_rows, 0] = -1.0  # f NaN everywhere
  normal = [i for i in range(9) if i not in nan_rows]
  res = minimize_batch(_quadratic, x0, args=(bad,), bounds=(-1.0, 1.0), lanes=2)
  alone = minimize_batch(_quadratic, x0[normal], args=(centers[normal],), bounds=(-1.0, 1.0), lanes=2)
  termination, nit = np.asarray(res.termination), np.asarray(res.nit)
  np.testing.assert_array_equal(termination[nan_rows], Termination.NONFINITE)
  np.testing.assert_array_equal(nit[nan_rows], 0)
  for k in (1, 4):
    assert nit[k] == 0 and termination[k] == Termination.CONVERGED_PGTOL
  for name in ("x", "fun", "nit", "nfev", "termination"):
    np.testing.assert_array_equal(np.asarray(getattr(res, name))[normal], getattr(alone, name), err_msg=name)
  np.testing.assert_allclose(np.asarray(res.x)[normal], np.clip(centers[normal], -1.0, 1.0), atol=1e-6)


def test_empty_batch_and_batch_of_one():
  empty = minimize_batch(rosen, jnp.zeros((0, 3)), bounds=(-1.5, 0.8))
  assert empty.x.shape == (0, 3) and empty.nit.shape == (0,) and empty.termination.shape == (0,)
  x0 = jnp.asarray([[-1.2, 1.0, -1.2]])
  one = minimize_batch(rosen, x0, bounds=(-1.5, 0.8))
  single = minimize(rosen, x0[0], bounds=(-1.5, 0.8))
  assert (int(one.nit[0]), int(one.nfev[0]), int(one.termination[0])) == (
      int(single.nit), int(single.nfev), int(single.termination))
  np.testing.assert_allclose(one.x[0], single.x, rtol=0, atol=1e-12)
  # minimize's options, fractional limits as SciPy counts them (maxiter=1.5: two iterations).
  short = minimize_batch(rosen, x0, bounds=(-1.5, 0.8), maxiter=1.5)
  assert int(short.nit[0]) == 2 and int(short.termination[0]) == Termination.MAXITER


def test_history_and_aux_per_problem():
  def f(x, c):
    return jnp.sum((x - c) ** 2), jnp.max(x)

  centers = jnp.asarray([[0.5, 0.25], [2.0, -3.0], [0.1, 0.2]])
  res = minimize_batch(f, jnp.zeros((3, 2)), args=(centers,), bounds=(-1.0, 1.0), has_aux=True, history=4,
                       lanes=2)
  np.testing.assert_allclose(res.x, jnp.clip(centers, -1.0, 1.0), atol=1e-8)
  np.testing.assert_allclose(res.aux, jnp.max(res.x, axis=1))
  np.testing.assert_array_equal(res.history.x[:, 0], 0.0)  # each problem's own x0
  np.testing.assert_allclose(res.history.x[jnp.arange(3), res.nit], res.x)


def _weighted(x, c, w):
  return jnp.sum(w * (x - c) ** 2) + 0.1 * jnp.sum(x**4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_derivatives_are_those_of_vmapped_minimize(dtype):
  # Implicit derivatives per problem, as jax.vmap(minimize) gives them: with
  # respect to per-problem args, bounds and an array fun closes over, under jit.
  centers = jnp.asarray(np.random.default_rng(3).uniform(-2.0, 2.0, (5, 3)), dtype)
  lower = jnp.full((5, 3), -0.5, dtype)
  x0 = jnp.zeros((5, 3), dtype)

  def batch_loss(c, lo, w):
    r = minimize_batch(lambda x, ci: _weighted(x, ci, w), x0, args=(c,), bounds=(lo, 1.0), lanes=2)
    return jnp.sum(r.x**2) + jnp.sum(r.fun)

  def vmap_loss(c, lo, w):
    r = jax.vmap(lambda x, ci, li: minimize(lambda y, cj: _weighted(y, cj, w), x, args=(ci,), bounds=(li, 1.0)))(
        x0, c, lo)
    return jnp.sum(r.x**2) + jnp.sum(r.fun)

  w = jnp.asarray([1.0, 2.0, 3.0], dtype)
  ours = jax.jit(jax.grad(batch_loss, argnums=(0, 1, 2)))(centers, lower, w)
  theirs = jax.grad(vmap_loss, argnums=(0, 1, 2))(centers, lower, w)
  tol = 1e-3 if dtype == jnp.float32 else 1e-8
  for a, b in zip(ours, theirs):
    assert a.dtype == dtype
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
  assert np.any(np.asarray(ours[1]) != 0) and np.any(np.asarray(ours[2]) != 0)  # some bound is active


def test_bad_batches_are_refused():
  with pytest.raises(ValueError, match="every array in args has the batch axis first"):
    minimize_batch(_quadratic, jnp.zeros((4, 3)), args=(jnp.ones((3, 3)),))
  with pytest.raises(ValueError, match="every leaf of x0 needs the batch axis first"):
    minimize_batch(lambda p: jnp.sum(p["a"]) + jnp.sum(p["b"]), {"a": jnp.zeros((4, 2)), "b": jnp.zeros((3, 2))})
  with pytest.raises(TypeError, match="unknown option.*'iprint'"):
    minimize_batch(rosen, jnp.zeros((2, 3)), iprint=0)
  with pytest.raises(ValueError, match="lanes must be >= 1"):
    minimize_batch(rosen, jnp.zeros((2, 3)), lanes=0)


def test_default_lanes():
  assert default_lanes(512, "gpu") == 512 and default_lanes(512, "cpu") == 16 and default_lanes(5, "cpu") == 5
