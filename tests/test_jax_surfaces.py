"""JAX-native surfaces: pytrees, warm start, history, callback, hess_inv, sharded batches."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lbfgsb import Termination, minimize

DTYPES = [jnp.float32, jnp.float64]


def rosen(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


X0 = np.resize([-1.2, 1.0], 10)


# ---------------------------------------------------------------- pytrees


def _split(x):
  return {"w": x[:4].reshape(2, 2), "b": (x[4:7], x[7:])}


def _join(p):
  return jnp.concatenate([p["w"].ravel(), p["b"][0], p["b"][1]])


@pytest.mark.rounding
@pytest.mark.parametrize("wrap, dtype", [("eager", jnp.float32), ("jit", jnp.float64)], ids=["eager-float32", "jit-float64"])
def test_pytree_solve_equals_flat_solve(wrap, dtype):
  x0 = jnp.asarray(X0, dtype)
  lower = _split(jnp.full(10, -1.5, dtype))
  upper = {"w": 0.8, "b": (jnp.full(3, 0.8, dtype), 0.8)}  # scalars broadcast per leaf

  def solve(p0):
    return minimize(lambda p: rosen(_join(p)), p0, bounds=(lower, upper))

  solve = jax.jit(solve) if wrap == "jit" else solve
  res = solve(_split(x0))
  # The same objective on the raveled vector (_join(_split(x)) is x; the solve of
  # test_history_records_the_trajectory). XLA fuses the two programs
  # differently, so they agree to rounding (float64: same counts), not bit for bit.
  flat = minimize(rosen, x0, bounds=(-1.5, 0.8))
  assert jax.tree.structure(res.x) == jax.tree.structure(_split(x0))
  assert jax.tree.structure(res.jac) == jax.tree.structure(_split(x0))
  assert _join(res.x).dtype == dtype
  if dtype == jnp.float64:
    np.testing.assert_allclose(_join(res.x), flat.x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(_join(res.jac), flat.jac, rtol=1e-6, atol=1e-9)
    assert int(res.nit) == int(flat.nit) and int(res.nfev) == int(flat.nfev)
  else:
    np.testing.assert_allclose(float(res.fun), float(flat.fun), rtol=1e-4)
    assert int(res.status) == int(flat.status)


def test_pytree_host_bounds_stay_on_the_host():
  # Host bounds (None, numbers, NumPy) for a pytree x0 are raveled with NumPy:
  # no device operation per call; a jax.Array leaf keeps them on the device.
  from jax_lbfgsb._inputs import canonicalize_bounds

  x0 = _split(jnp.zeros(10))
  l, u = canonicalize_bounds(({"w": np.full((2, 2), -1.0), "b": (-2.0, None)}, 3.0), x0, jnp.float64)
  assert isinstance(l, np.ndarray) and isinstance(u, np.ndarray)
  np.testing.assert_array_equal(l, [-2.0] * 3 + [-np.inf] * 3 + [-1.0] * 4)  # leaves b[0], b[1], w
  np.testing.assert_array_equal(u, np.full(10, 3.0))
  l, _ = canonicalize_bounds(({"w": jnp.zeros((2, 2)), "b": (0.0, 0.0)}, None), x0, jnp.float32)
  assert isinstance(l, jax.Array) and l.dtype == jnp.float32


def test_concrete_jax_bounds_are_canonicalized_on_the_host():
  # Concrete jax.Array bounds of an array x0 are checked and cast with NumPy (a
  # few eager device operations cost more than a small solve) and come back as
  # the caller's arrays where nothing changed: no transfer, placement kept.
  from jax_lbfgsb._inputs import canonicalize_bounds

  lo, hi = jnp.asarray(np.full(4, -1.0)), jnp.asarray(np.array([1.0, np.inf, 2.0, 3.0]))
  l, u = canonicalize_bounds((lo, hi), jnp.zeros(4), jnp.float64)
  assert l is lo and u is hi
  # A weakly typed array would compile another solve: it becomes a NumPy array.
  l, _ = canonicalize_bounds((jnp.full(4, -1.0), None), jnp.zeros(4), jnp.float64)
  assert isinstance(l, np.ndarray) and l.dtype == np.float64
  np.testing.assert_array_equal(l, -1.0)
  # Cast to float32 on the host, rounded inward; a box no float32 lies in is
  # fixed just above its lower bound.
  lo, hi = jnp.asarray(np.array([0.7, 0.0, 1 / 3])), jnp.asarray(np.array([1.0, 0.1, 1 / 3]))
  l, u = canonicalize_bounds((lo, hi), jnp.zeros(3, jnp.float32), jnp.float32)
  assert isinstance(l, np.ndarray) and isinstance(u, np.ndarray) and l.dtype == u.dtype == np.float32
  assert l[0] == np.nextafter(np.float32(0.7), np.float32(1)) and u[1] == np.nextafter(np.float32(0.1), np.float32(0))
  assert l[2] == u[2] == np.float32(1 / 3)
  ref = minimize(rosen, jnp.asarray(X0), bounds=(np.full(10, -1.5), np.full(10, 0.8)))
  res = minimize(rosen, jnp.asarray(X0), bounds=(jnp.asarray(np.full(10, -1.5)), jnp.asarray(np.full(10, 0.8))))
  np.testing.assert_array_equal(res.x, ref.x)


def test_pytree_bounds_structure_mismatch_names_the_leaf():
  with pytest.raises(ValueError, match=r"missing from lower: \['b'\].*not in x0: \['c'\]"):
    minimize(lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 2),
             {"a": jnp.zeros(2), "b": jnp.zeros(3)}, bounds=({"a": 0.0, "c": 1.0}, 1.0))


def test_pytree_bound_leaf_shape_mismatch():
  with pytest.raises(ValueError, match=r"`upper`\['b'\] has shape \(2,\)"):
    minimize(lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 2),
             {"a": jnp.zeros(2), "b": jnp.zeros(3)}, bounds=(0.0, {"a": 1.0, "b": jnp.ones(2)}))


def test_pytree_non_real_leaf_is_named():
  with pytest.raises(TypeError, match=r"x0\['n'\] must be real"):
    minimize(lambda p: jnp.sum(p["a"] ** 2), {"a": jnp.zeros(2), "n": jnp.zeros(2, jnp.complex64)})


# ---------------------------------------------------------------- warm start and history


@pytest.mark.rounding
@pytest.mark.parametrize("dtype", DTYPES)
def test_warm_start_continues_exactly(dtype):
  x0 = jnp.asarray(X0, dtype)
  one = minimize(rosen, x0, bounds=(-1.5, 0.8), history=60)
  first = minimize(rosen, x0, bounds=(-1.5, 0.8), maxiter=20, history=60)
  assert int(first.nit) == 20 and int(first.termination) == Termination.MAXITER
  rest = minimize(rosen, first, bounds=(-1.5, 0.8), history=60)
  # One more evaluation: a warm start evaluates f and g again at x (fun, args
  # or bounds may have changed); here nothing did, so the iterates go on.
  assert (int(rest.nit), int(rest.nfev)) == (int(one.nit), int(one.nfev) + 1)
  assert int(rest.termination) == int(one.termination)
  np.testing.assert_array_equal(rest.x, one.x)
  np.testing.assert_array_equal(rest.history.x, one.history.x)
  # hess_inv in this dtype: the lazy product equals the dense matrix's.
  v = jnp.ones(10, dtype)
  hv = rest.hess_inv.matvec(v)
  assert hv.dtype == dtype
  np.testing.assert_allclose(hv, rest.hess_inv.todense() @ v, rtol=1e-4 if dtype == jnp.float32 else 1e-10)


@pytest.mark.parametrize("wrap, dtype", [("eager", jnp.float32), ("jit", jnp.float64)], ids=["eager-float32", "jit-float64"])
def test_warm_start_with_new_bounds_or_args_solves_the_new_problem(wrap, dtype):
  # A warm start is a new solve from the old x and memory: changed bounds or
  # args must give the new problem's answer, not the old one's (issue 13).
  def h(x, a):
    return (x[0] - a) ** 2 + 10.0 * (x[1] - x[0]) ** 2

  solve = lambda x0, a, lo, hi: minimize(h, x0, args=(a,), bounds=(lo, hi))  # noqa: E731
  solve = jax.jit(solve) if wrap == "jit" else solve
  one, wide = jnp.asarray(1.0, dtype), (jnp.full(2, -5.0, dtype), jnp.full(2, 5.0, dtype))
  first = solve(jnp.zeros(2, dtype), one, *wide)
  tol = 1e-3 if dtype == jnp.float32 else 1e-6
  np.testing.assert_allclose(first.x, [1.0, 1.0], atol=tol)
  # New bounds exclude the old solution: the minimizer over [2, 3] x [-5, 5] is (2, 2).
  moved = solve(first, one, jnp.asarray([2.0, -5.0], dtype), jnp.asarray([3.0, 5.0], dtype))
  np.testing.assert_allclose(moved.x, [2.0, 2.0], atol=tol)
  np.testing.assert_allclose(moved.fun, 1.0, rtol=tol)
  np.testing.assert_allclose(moved.fun, h(moved.x, one), rtol=1e-6)  # fun is f at the returned x
  assert int(moved.nit) > int(first.nit)  # it iterated from the old x
  # New args: the minimizer moves to (5, 5).
  shifted = solve(first, jnp.asarray(5.0, dtype), *wide)
  np.testing.assert_allclose(shifted.x, [5.0, 5.0], atol=tol * 5)
  assert int(shifted.status) == 0 and float(shifted.fun) < tol


def _to_two(x):
  return jnp.sum((x - 2.0) ** 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_warm_start_into_a_box_that_keeps_x_solves_the_new_problem(dtype):
  # The old solution [1, 1] stays where it is in each new box, with the same f
  # and g: the problem changed all the same, so the solve must go on to the
  # new optimum, not return the old point labelled converged (issue 28).
  first = minimize(_to_two, jnp.zeros(2, dtype), bounds=(jnp.asarray([-1.0, 1.0], dtype), 1.0))  # x[1] fixed
  np.testing.assert_array_equal(first.x, [1.0, 1.0])
  wider = minimize(_to_two, first, bounds=(-1.0, 3.0))
  np.testing.assert_allclose(wider.x, [2.0, 2.0], atol=1e-3 if dtype == jnp.float32 else 1e-6)
  # The same under jit(vmap), one lane a box: wider, shifted, and one that
  # frees the variable the first solve fixed.
  lower = jnp.asarray([[-1.0, -1.0], [0.5, 0.5], [-1.0, -1.0]], dtype)
  upper = jnp.asarray([[3.0, 3.0], [1.5, 1.5], [1.0, 3.0]], dtype)
  batch = jax.jit(jax.vmap(lambda lo, hi: minimize(_to_two, first, bounds=(lo, hi))))(lower, upper)
  np.testing.assert_allclose(batch.x, [[2.0, 2.0], [1.5, 1.5], [1.0, 2.0]], atol=1e-3 if dtype == jnp.float32 else 1e-6)
  assert np.all(np.asarray(batch.nit) > int(first.nit)) and np.all(np.asarray(batch.status) == 0)
  # Unchanged bounds still continue the old solve: nothing to do but stop.
  same = minimize(_to_two, first, bounds=(jnp.asarray([-1.0, 1.0], dtype), 1.0))
  assert (int(same.nit), int(same.termination)) == (int(first.nit), int(first.termination))


def test_warm_start_under_jit_and_with_new_tolerances():
  solve = jax.jit(lambda r, gtol: minimize(rosen, r, gtol=gtol))
  first = minimize(rosen, jnp.asarray(X0), maxiter=10)
  rest = solve(first, 1e-8)
  assert int(rest.termination) in (Termination.CONVERGED_PGTOL, Termination.CONVERGED_FTOL)
  assert int(rest.nit) > 10


def test_warm_start_needs_the_same_history():
  first = minimize(rosen, jnp.asarray(X0), maxiter=3)
  with pytest.raises(ValueError, match="same history="):
    minimize(rosen, first, history=5)


@pytest.mark.rounding
@pytest.mark.parametrize("dtype", DTYPES)
def test_history_records_the_trajectory(dtype):
  x0 = jnp.asarray(X0, dtype)
  # history=60, as test_warm_start_continues_exactly: the same compiled solve.
  res = minimize(rosen, x0, bounds=(-1.5, 0.8), history=60)
  h = res.history
  assert h.x.shape == (60, 10) and h.f.dtype == dtype and h.nfev.dtype == jnp.int32
  # x0 projected into the box; float64 bounds are rounded inward for float32 x.
  upper = 0.8 if dtype == jnp.float64 else np.nextafter(np.float32(0.8), np.float32(0))
  np.testing.assert_array_equal(h.x[0], x0.clip(-1.5, upper))
  assert int(h.nfev[0]) == 1 and float(h.stp[0]) == 0.0
  for k in range(1, 8):  # entry k is the iterate after k iterations
    res_k = minimize(rosen, x0, bounds=(-1.5, 0.8), maxiter=k)
    np.testing.assert_array_equal(h.x[k], res_k.x)
    assert float(h.f[k]) == float(res_k.fun) and int(h.nfev[k]) == int(res_k.nfev)
  nit = int(res.nit)
  assert nit + 1 < 60  # every iterate recorded, the tail empty
  assert np.all(np.diff(np.asarray(h.f[: nit + 1])) <= 0)  # f never increases
  assert np.all(np.isnan(np.asarray(h.f[nit + 1:]))) and np.all(np.asarray(h.nfev[nit + 1:]) == -1)
  # A short solve leaves the tail empty.
  short = minimize(rosen, x0, bounds=(-1.5, 0.8), history=60, maxiter=2)
  assert np.all(np.isnan(np.asarray(short.history.f[3:]))) and np.all(np.asarray(short.history.nfev[3:]) == -1)


def test_history_under_vmap():
  """Each lane records its own iterates: entry k of a lane's history is that
  lane's x and f after k iterations (the same vmapped program, stopped by a
  traced maxiter, so equal to the bit: no rounding between paths to allow for)."""
  x0s = jnp.asarray(np.random.default_rng(0).uniform(-1.5, 0.8, (3, 10)))
  solve = jax.jit(jax.vmap(lambda x0, k: minimize(rosen, x0, bounds=(-1.5, 0.8), history=60, maxiter=k),
                           in_axes=(0, None)))
  batch = solve(x0s, 15000)
  assert batch.history.f.shape == (3, 60)
  np.testing.assert_array_equal(batch.history.x[:, 0], x0s)
  for k in range(1, 5):
    stopped = solve(x0s, k)
    np.testing.assert_array_equal(batch.history.x[:, k], stopped.x)
    np.testing.assert_array_equal(batch.history.f[:, k], stopped.fun)
    np.testing.assert_array_equal(batch.history.nfev[:, k], stopped.nfev)


# ---------------------------------------------------------------- callback


@pytest.mark.parametrize("dtype", DTYPES)
def test_callback_sees_each_iterate_and_can_halt(dtype):
  seen = []

  def callback(intermediate_result):
    seen.append((intermediate_result.nit, intermediate_result.fun, np.copy(intermediate_result.x)))
    if intermediate_result.nit >= 4:
      raise StopIteration
    return True  # ignored, as by SciPy

  res = minimize(rosen, jnp.asarray(X0, dtype), bounds=(-1.5, 0.8), callback=callback)
  assert [s[0] for s in seen] == [1, 2, 3, 4]
  assert int(res.nit) == 4 and int(res.termination) == Termination.CALLBACK_HALT
  assert int(res.status) == 99 and res.message == "`callback` raised `StopIteration`."
  np.testing.assert_array_equal(seen[-1][2], res.x)
  assert seen[-1][1] == float(res.fun)


def test_callback_receives_pytrees_and_maxiter_wins():
  seen = []

  def callback(xk):  # SciPy's legacy form: a copy of x, here a pytree of NumPy arrays
    seen.append(jax.tree.structure(xk))
    assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(xk))
    raise StopIteration

  res = minimize(lambda p: rosen(_join(p)), _split(jnp.asarray(X0)), callback=callback, maxiter=1)
  assert seen == [jax.tree.structure(_split(jnp.asarray(X0)))]
  assert int(res.termination) == Termination.MAXITER  # as in SciPy, maxiter wins over the callback


# ---------------------------------------------------------------- hess_inv


def _dense_inverse_bfgs(pairs, theta):
  """H from the BFGS inverse update applied oldest to newest, from H0 = I/theta."""
  n = pairs[0][0].size
  h = np.eye(n) / theta
  for s, y in pairs:
    rho = 1.0 / (s @ y)
    v = np.eye(n) - rho * np.outer(y, s)
    h = v.T @ h @ v + rho * np.outer(s, s)
  return h


@pytest.mark.parametrize("maxcor", [3, 10])
def test_hess_inv_is_the_chronological_lbfgs_inverse(maxcor):
  # maxcor=3 wraps the buffer many times; 10 (the default: the solve of the
  # other unbounded tests here) never does in 9 iterations.
  res = minimize(rosen, jnp.asarray(X0), maxcor=maxcor, maxiter=9)
  mem = res.state.memory
  col, head = int(mem.col), int(mem.head)
  slots = [(head + j) % maxcor for j in range(col)]
  pairs = [(np.asarray(mem.S[k]), np.asarray(mem.Y[k])) for k in slots]
  theta = pairs[-1][1] @ pairs[-1][1] / (pairs[-1][0] @ pairs[-1][1])
  np.testing.assert_allclose(float(mem.theta), theta, rtol=1e-12)
  dense = _dense_inverse_bfgs(pairs, theta)
  np.testing.assert_allclose(res.hess_inv.todense(), dense, rtol=1e-9, atol=1e-12)
  v = np.random.default_rng(0).standard_normal(10)
  np.testing.assert_allclose(res.hess_inv.matvec(jnp.asarray(v)), dense @ v, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- sharded batches


@pytest.mark.rounding
def test_batch_sharded_over_four_host_devices():
  code = textwrap.dedent("""
      import jax, jax.numpy as jnp, numpy as np
      jax.config.update("jax_enable_x64", True)
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      from jax_lbfgsb import minimize
      assert len(jax.devices()) == 4, jax.devices()
      def f(x, a):
          return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (a - x[:-1]) ** 2)
      rng = np.random.default_rng(0)
      x0 = jnp.asarray(rng.uniform(-1.5, 0.8, (8, 6)))
      a = jnp.asarray(rng.uniform(0.5, 1.0, (8,)))
      solve = jax.jit(jax.vmap(lambda x0, a: minimize(f, x0, args=(a,), bounds=(-1.5, 0.8))))
      plain = solve(x0, a)
      mesh = Mesh(np.array(jax.devices()), ("batch",))
      shard = NamedSharding(mesh, P("batch"))
      sharded = solve(jax.device_put(x0, shard), jax.device_put(a, shard))
      assert len(sharded.x.sharding.device_set) == 4, sharded.x.sharding
      np.testing.assert_array_equal(np.asarray(sharded.nit), np.asarray(plain.nit))
      np.testing.assert_array_equal(np.asarray(sharded.nfev), np.asarray(plain.nfev))
      np.testing.assert_allclose(np.asarray(sharded.x), np.asarray(plain.x), rtol=1e-12, atol=1e-12)
      print("OK")
  """)
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()  # keeps an ISA ceiling
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


@pytest.mark.rounding
def test_callback_under_vmap_is_called_once_per_lane_iteration():
  seen = []

  def callback(intermediate_result):
    r = intermediate_result
    seen.append(r.nit)
    if r.nit >= 3 and r.fun < 10.0:
      raise StopIteration

  x0s = jnp.stack([jnp.asarray(X0), jnp.asarray(X0) * 0.5])
  batch = jax.jit(jax.vmap(lambda x0: minimize(rosen, x0, callback=callback)))(x0s)
  singles = [minimize(rosen, x0s[i], callback=callback) for i in range(2)]
  for i in range(2):
    assert int(batch.nit[i]) == int(singles[i].nit)
    assert int(batch.termination[i]) == int(singles[i].termination) == Termination.CALLBACK_HALT
  # Each lane's iterations were reported once, none after the lane stopped.
  assert len(seen) == 2 * (int(batch.nit[0]) + int(batch.nit[1]))


@pytest.mark.rounding
def test_pytree_warm_start_and_hess_inv_under_vmap():
  # float64 only: float32 warm starts and hess_inv are checked in
  # test_warm_start_continues_exactly, float32 under vmap in test_minimize.py.
  dtype = jnp.float64
  # A batch of pytree problems, stopped after 5 iterations and continued:
  # each lane equals its own one-piece solve; hess_inv works per lane.
  x0s = jnp.stack([jnp.asarray(X0, dtype), jnp.asarray(X0, dtype) * 0.5])
  f = lambda p: rosen(_join(p))
  cold = jax.vmap(lambda x0, maxiter: minimize(f, _split(x0), bounds=(-1.5, 0.8), maxiter=maxiter), (0, None))
  first, whole = cold(x0s, 5), cold(x0s, 15000)  # maxiter is traced: one compile
  rest = jax.jit(jax.vmap(lambda r: minimize(f, r, bounds=(-1.5, 0.8))))(first)
  np.testing.assert_array_equal(rest.nit, whole.nit)
  np.testing.assert_array_equal(jax.vmap(_join)(rest.x), jax.vmap(_join)(whole.x))
  v = jnp.ones(10, dtype)
  hv = jax.jit(jax.vmap(lambda h: h.matvec(v)))(rest.hess_inv)
  assert hv.shape == (2, 10) and hv.dtype == dtype
  for i in range(2):
    dense = jax.tree.map(lambda a: a[i], rest.hess_inv).todense()
    np.testing.assert_allclose(hv[i], dense @ v, rtol=1e-4 if dtype == jnp.float32 else 1e-10)
