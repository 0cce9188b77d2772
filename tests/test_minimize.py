"""The public face of minimize: inputs, errors, jit, vmap, dtypes, retracing, NaN."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jax_lbfgsb import Termination, minimize, problems
import rounding

DTYPES = [jnp.float32, jnp.float64]
# Meaningful ends of a float32 solve: converged, or stopped at the precision floor.
FLOAT32_ENDS = (Termination.CONVERGED_PGTOL, Termination.CONVERGED_FTOL, Termination.PRECISION_LIMIT)


def rosen(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def shifted_quadratic(x, a):
  return jnp.sum((x - a) ** 2)


X0 = np.array([-1.2, 1.0, -1.2, 1.0])


# ---------------------------------------------------------------- bounds forms


@pytest.mark.parametrize(
    "bounds",
    [
        (-1.5, 0.8),
        (np.full(4, -1.5), np.full(4, 0.8)),
        [(-1.5, 0.8)] * 4,
        scipy.optimize.Bounds(np.full(4, -1.5), np.full(4, 0.8)),
    ],
    ids=["scalars", "arrays", "pairs", "Bounds"],
)
def test_bounds_forms_agree(bounds):
  res = minimize(rosen, jnp.asarray(X0), bounds=bounds)
  ref = minimize(rosen, jnp.asarray(X0), bounds=(-1.5 * jnp.ones(4), 0.8 * jnp.ones(4)))
  np.testing.assert_array_equal(res.x, ref.x)
  assert int(res.nit) == int(ref.nit)


def test_none_in_pairs_means_unbounded():
  res = minimize(rosen, jnp.asarray(X0), bounds=[(None, None), (None, 0.5), (0.0, None), (None, None)])
  x = np.asarray(res.x)
  assert x[1] <= 0.5 and x[2] >= 0.0
  assert res.success


def test_x0_outside_box_is_projected_and_result_inside():
  x0 = jnp.array([5.0, -5.0, 0.3, 0.0])
  lower, upper = jnp.array([0.0, 0.0, 0.0, -1.0]), jnp.array([1.0, 1.0, 1.0, 1.0])
  res = minimize(rosen, x0, bounds=(lower, upper), maxiter=1)
  # The first iterate starts from the projection, as in SciPy.
  ref = minimize(rosen, jnp.clip(x0, lower, upper), bounds=(lower, upper), maxiter=1)
  np.testing.assert_array_equal(res.x, ref.x)
  assert np.all(np.asarray(res.x) >= lower) and np.all(np.asarray(res.x) <= upper)


def test_args_are_passed_and_traced():
  a = jnp.array([0.5, -0.25, 2.0])
  res = minimize(shifted_quadratic, jnp.zeros(3), args=(a,), bounds=(-1.0, 1.0))
  np.testing.assert_allclose(res.x, [0.5, -0.25, 1.0], atol=1e-8)
  assert int(res.termination) == Termination.CONVERGED_PGTOL


def test_jac_true_uses_supplied_gradient():
  vg = jax.value_and_grad(rosen)
  res = minimize(vg, jnp.asarray(X0), jac=True, bounds=(-1.5, 0.8))
  ref = minimize(rosen, jnp.asarray(X0), bounds=(-1.5, 0.8))
  np.testing.assert_array_equal(res.x, ref.x)
  assert (int(res.nit), int(res.nfev)) == (int(ref.nit), int(ref.nfev))


def test_matrix_shaped_x0_keeps_its_shape():
  res = minimize(lambda x: jnp.sum((x - 1.0) ** 2), jnp.zeros((2, 3)), bounds=(-2.0, 0.5))
  assert res.x.shape == (2, 3) and res.jac.shape == (2, 3)
  np.testing.assert_allclose(res.x, 0.5)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("wrap", ["eager", "jit"])
def test_float32_x_stays_inside_float64_bounds(wrap):
  # float64 bounds that float32 cannot hold are rounded into the box (lower up,
  # upper down), so the float32 x that ends on them is inside the caller's box.
  # float32(0.7) < 0.7 and float32(0.1) > 0.1: nearest rounding would put x outside.
  lower = np.array([0.7, -0.7, 0.3, 1 / 3])
  upper = np.array([2.0, 0.1, 2.9, 1 / 3])  # the last variable is fixed
  target = np.array([-5.0, 5.0, 1.1, 0.0])  # pushes x[0] onto its lower and x[1] onto its upper bound
  fun = lambda x: jnp.sum((x - target.astype(np.float32)) ** 2)  # noqa: E731
  solve = lambda lo, hi: minimize(fun, jnp.zeros(4, jnp.float32), bounds=(lo, hi))  # noqa: E731
  if wrap == "jit":
    res = jax.jit(solve)(jnp.asarray(lower), jnp.asarray(upper))
  else:
    res = solve(lower, upper)
  x = np.asarray(res.x).astype(np.float64)
  assert res.x.dtype == jnp.float32
  assert np.all(x[:3] >= lower[:3]) and np.all(x[:3] <= upper[:3]), x - np.clip(x, lower, upper)
  assert res.x[0] == np.nextafter(np.float32(0.7), np.float32(1))  # on its bound, rounded up
  assert res.x[1] == np.nextafter(np.float32(0.1), np.float32(0))  # on its bound, rounded down
  # No float32 lies in [1/3, 1/3]: the fixed variable takes the one just above.
  assert res.x[3] == np.float32(1 / 3) and x[3] - 1 / 3 < np.spacing(np.float32(1 / 3))


def test_lower_greater_than_upper_names_the_index():
  with pytest.raises(ValueError, match=r"lower\[2\].*upper\[2\]"):
    minimize(rosen, jnp.zeros(4), bounds=(jnp.zeros(4), jnp.array([1.0, 1.0, -1.0, 1.0])))


def test_bounds_size_mismatch():
  with pytest.raises(ValueError, match="`lower` has 3 entries but x0 has 4"):
    minimize(rosen, jnp.zeros(4), bounds=(jnp.zeros(3), 1.0))


def test_nan_bound():
  with pytest.raises(ValueError, match=r"`upper`\[1\] is NaN"):
    minimize(rosen, jnp.zeros(4), bounds=(0.0, jnp.array([1.0, jnp.nan, 1.0, 1.0])))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_x0_raises_naming_the_fix(dtype):
  with pytest.raises(TypeError, match=rf"x0 has dtype {jnp.dtype(dtype).name}; L-BFGS-B needs float32 or float64"):
    minimize(rosen, jnp.zeros(4, dtype=dtype))
  with pytest.raises(TypeError, match=r"x0 has dtype .*astype\(jnp.float32\)"):  # also under jit
    jax.jit(lambda x: minimize(rosen, x).x)(jnp.zeros(4, dtype=dtype))


def test_non_scalar_fun():
  with pytest.raises(TypeError, match="fun must return a float scalar"):
    minimize(lambda x: x**2, jnp.zeros(4))


@pytest.mark.parametrize("maxcor", [0, -1, 2.5])
def test_bad_maxcor(maxcor):
  with pytest.raises(ValueError, match="maxcor"):
    minimize(rosen, jnp.zeros(4), maxcor=maxcor)


def test_bad_maxls():
  with pytest.raises(ValueError, match="maxls must be >= 1"):
    minimize(rosen, jnp.zeros(4), maxls=0)


@pytest.mark.parametrize("name", ["ftol", "gtol", "pgtol_rel", "xtol_rel"])
def test_negative_tolerances_raise(name):
  with pytest.raises(ValueError, match=f"^{name} must be >= 0, got -1.0$"):
    minimize(rosen, jnp.zeros(4), **{name: -1.0})


@pytest.mark.parametrize("name, value, error", [
    ("maxiter", np.nan, ValueError), ("maxfun", "15", TypeError), ("maxls", True, TypeError)])
def test_limits_that_are_no_number_raise(name, value, error):
  with pytest.raises(error, match=f"{name} must be a number"):
    minimize(rosen, jnp.zeros(4), **{name: value})


def test_a_single_non_tuple_arg_is_one_argument():
  a = jnp.full(3, 0.25)  # an array: passed whole, not unpacked into three arguments
  one = minimize(shifted_quadratic, jnp.zeros(3), args=a)
  np.testing.assert_array_equal(one.x, minimize(shifted_quadratic, jnp.zeros(3), args=(a,)).x)
  np.testing.assert_allclose(one.x, 0.25, atol=1e-6)


def test_callback_raising_stop_iteration_halts():
  # As in SciPy; the host side of the callback turns it into a halt (True).
  from jax_lbfgsb._minimize import _HostCallback

  def callback(result):
    raise StopIteration

  host = _HostCallback(callback, jax.ShapeDtypeStruct((2,), jnp.float64))
  x = np.zeros(2)
  assert bool(host(True, x, 1.0, x, 1, 2)) is True
  assert bool(host(False, x, 1.0, x, 1, 2)) is False  # not a new iterate: not called


def test_unknown_option_raises_with_suggestion():
  with pytest.raises(TypeError, match=r"`max_corr` \(did you mean `maxcor`\?\)"):
    minimize(rosen, jnp.zeros(4), max_corr=5)


# The jitted solve with traced bounds, one compile per dtype for the tests that use it.
_jit_rosen = jax.jit(lambda x0, lo, hi: minimize(rosen, x0, bounds=(lo, hi)))


def test_traced_invalid_bounds_give_a_status_code():
  res = _jit_rosen(jnp.zeros(4), jnp.array([0.0, 2.0, 0.0, 0.0]), jnp.ones(4))
  assert int(res.termination) == Termination.INVALID_BOUNDS
  assert int(res.status) == 2
  assert res.message.startswith("ERROR: NO FEASIBLE SOLUTION")


# ---------------------------------------------------------------- jit, vmap, dtypes


@pytest.mark.rounding
@pytest.mark.parametrize("dtype", DTYPES)
def test_jit_matches_eager(dtype):
  x0 = jnp.asarray(X0, dtype)
  lo, hi = jnp.full(4, -1.5, dtype), jnp.full(4, 0.8, dtype)  # the same bounds, in x's dtype, for both
  res = _jit_rosen(x0, lo, hi)
  ref = minimize(rosen, x0, bounds=(lo, hi))
  np.testing.assert_array_equal(res.x, ref.x)
  assert int(res.nit) == int(ref.nit) and int(res.nfev) == int(ref.nfev)
  assert res.x.dtype == dtype and res.fun.dtype == dtype and res.jac.dtype == dtype
  assert res.nit.dtype == jnp.int32 and res.termination.dtype == jnp.int32


def test_a_gpu_program_has_only_the_main_loop_and_the_line_search():
  def whiles(fn, arg, platform):
    return jax.jit(fn).trace(arg).lower(lowering_platforms=(platform,)).as_text().count("stablehlo.while")

  solve = lambda x0: minimize(rosen, x0, bounds=(-1.5, 0.8)).x  # noqa: E731
  x0 = jnp.zeros(40)  # > SORT_AFTER: on CPU the walk has its sorted rest
  assert whiles(solve, x0, "cuda") == whiles(jax.vmap(solve), jnp.stack([x0, x0]), "cuda") == 2
  assert whiles(solve, x0, "cpu") == 4  # main loop, line search, the walk and its sorted rest


def test_message_under_jit_raises_a_clear_error():
  def solve(x0):
    res = minimize(rosen, x0)
    return res.message

  with pytest.raises(TypeError, match="message needs concrete values"):
    jax.jit(solve)(jnp.asarray(X0))


@pytest.mark.rounding
@pytest.mark.parametrize("dtype", DTYPES)
def test_vmap_lanes_equal_single_solves(dtype):
  rng = np.random.default_rng(0)
  x0s = jnp.asarray(rng.uniform(-1.5, 0.8, (5, 4)), dtype)
  shifts = jnp.asarray(rng.uniform(-0.5, 0.5, (5, 4)), dtype)

  def f(x, a):
    return rosen(x + a)

  def convex(x, a):
    return jnp.sum((x - a) ** 2 * jnp.arange(1.0, 5.0, dtype=x.dtype)) + 0.1 * jnp.sum(x**4)

  # float32 rounding can lead a lane of the shifted Rosenbrock to another local
  # minimum than its single solve; in float32 the lanes solve a convex problem.
  f = f if dtype == jnp.float64 else convex
  solve = jax.jit(jax.vmap(lambda x0, a: minimize(f, x0, args=(a,), bounds=(-1.5, 0.8))))
  batch = solve(x0s, shifts)
  assert batch.message.shape == (5,)
  for i in range(5):
    single = minimize(f, x0s[i], args=(shifts[i],), bounds=(-1.5, 0.8))
    if dtype == jnp.float64:
      # Same counts, and the same end to rounding (batched reductions round
      # differently): tolerances from the conditioning at the solution.
      assert int(batch.nit[i]) == int(single.nit) and int(batch.nfev[i]) == int(single.nfev)
      assert int(batch.termination[i]) == int(single.termination)
      free = (np.asarray(single.x) > -1.5) & (np.asarray(single.x) < 0.8)
      x_tol = rounding.solution_tolerance(f, single.x, single.nit, shifts[i], free=free)
      assert x_tol < 1e-8  # the check still means something
      np.testing.assert_allclose(batch.x[i], single.x, rtol=0, atol=x_tol)
      f_tol = rounding.value_tolerance(single.fun, single.jac, x_tol, single.nit, dtype)
      np.testing.assert_allclose(batch.fun[i], single.fun, rtol=0, atol=f_tol)
    else:
      # Batched float32 reductions round differently, so counts can move and a
      # lane can end on float32's precision floor (PRECISION_LIMIT); the lanes
      # still reach the same solution.
      assert int(batch.termination[i]) in FLOAT32_ENDS and int(single.termination) in FLOAT32_ENDS
      np.testing.assert_allclose(batch.fun[i], single.fun, rtol=1e-4, atol=1e-5)
  assert np.all(np.isfinite(np.asarray(batch.x)))


@pytest.mark.rounding
@pytest.mark.parametrize(
    "make",
    [
        lambda: problems.rosenbrock(10, lower=-1.5, upper=0.8),
        problems.helical_valley,
        lambda: problems.driver1(25),
        lambda: problems.ept(6, 6),
    ],
    ids=["rosenbrock_box", "helical_valley", "driver1", "ept"],
)
def test_float32_stays_in_box_and_terminates_meaningfully(make):
  p = make()
  lower, upper = jnp.asarray(p.lower, jnp.float32), jnp.asarray(p.upper, jnp.float32)
  res = minimize(p.fun, jnp.asarray(p.x0, jnp.float32), bounds=(lower, upper))
  x = np.asarray(res.x)
  assert x.dtype == np.float32
  assert np.all(np.isfinite(x)) and np.isfinite(float(res.fun))
  assert np.all(x >= np.asarray(lower)) and np.all(x <= np.asarray(upper))
  assert int(res.termination) in FLOAT32_ENDS
  # float32 gets close to the value of SciPy's float64 solve from the same x0.
  value_and_grad = jax.jit(jax.value_and_grad(p.fun))
  ref = scipy.optimize.minimize(
      lambda x: tuple(np.asarray(v, np.float64) for v in value_and_grad(jnp.asarray(x))), p.x0, jac=True,
      method="L-BFGS-B", bounds=scipy.optimize.Bounds(p.lower, p.upper))
  assert abs(float(res.fun) - ref.fun) <= 1e-3 * max(1.0, abs(ref.fun))


def test_no_retrace_for_new_x0_bounds_args_or_tolerances():
  traces = []

  def fun(x, a):
    traces.append(None)  # runs only while fun is being traced
    return jnp.sum((x - a) ** 2) + jnp.sum(x**4)

  minimize(fun, jnp.zeros(3), args=(jnp.ones(3),), bounds=(-1.0, 1.0), maxcor=4)
  assert traces  # the first call traced fun
  n = len(traces)
  minimize(fun, jnp.ones(3), args=(jnp.zeros(3),), bounds=(-2.0, 0.5), ftol=1e-12, gtol=1e-9,
           maxiter=7, maxfun=30, maxls=5, maxcor=4)
  minimize(fun, jnp.full(3, 0.1), args=(jnp.ones(3),), bounds=[(-1.0, 1.0)] * 3, maxcor=4)
  assert len(traces) == n  # later calls reused the compiled solve


def _compiles(call):
  """``(call(), number of XLA compilations it made)``."""
  events = []

  def listener(event, duration, **_):
    if event == "/jax/core/compile/backend_compile_duration":
      events.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    return call(), len(events)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize("dtype", DTYPES)
def test_new_closure_of_the_same_code_reuses_the_compiled_solve(dtype):
  # The SciPy habit: a fresh lambda (or partial) per call, over new arrays.
  # The solve is keyed by fun's jaxpr; the arrays it closes over are inputs.
  def loss(x, target, weight):
    return jnp.sum(weight * (x - target) ** 2) + 0.1 * jnp.sum(x**4)

  x0 = jnp.zeros(3, dtype)
  targets = [jnp.asarray(t, dtype) for t in ([0.5, -0.2, 0.1], [0.1, 0.3, -0.4], [2.0, 2.0, 2.0])]
  weight = jnp.asarray([1.0, 2.0, 3.0], dtype)
  first, n_first = _compiles(lambda: minimize(lambda x: loss(x, targets[0], weight), x0, bounds=(-1.0, 1.0)))
  assert n_first > 0
  for target in targets[1:]:
    res, n = _compiles(lambda: minimize(lambda x: loss(x, target, weight), x0, bounds=(-1.0, 1.0)))
    assert n == 0  # no compilation at all
    # ... and the solve saw this closure's arrays: the same answer as a solve with them as args.
    ref = minimize(loss, x0, args=(target, weight), bounds=(-1.0, 1.0))
    np.testing.assert_array_equal(res.x, ref.x)
    assert int(res.nit) == int(ref.nit)
  # A partial computes the same as the lambdas: it reuses their solve too.
  part, n = _compiles(lambda: minimize(functools.partial(loss, target=targets[1], weight=weight), x0,
                                       bounds=(-1.0, 1.0)))
  part2, n2 = _compiles(lambda: minimize(functools.partial(loss, target=targets[2], weight=weight), x0,
                                         bounds=(-1.0, 1.0)))
  assert n == n2 == 0
  np.testing.assert_array_equal(part.x, minimize(loss, x0, args=(targets[1], weight), bounds=(-1.0, 1.0)).x)
  assert not np.allclose(part.x, part2.x)  # each partial's arrays were used


def test_a_changed_python_value_in_the_closure_recompiles():
  # A Python number is part of fun's code (a literal in its jaxpr): a new
  # value compiles anew, and is used.
  x0 = jnp.zeros(2)
  ends = []
  for shift in (0.25, 0.5):
    res, n = _compiles(lambda: minimize(lambda x: jnp.sum((x - shift) ** 2), x0))
    assert n > 0
    ends.append(float(res.x[0]))
  np.testing.assert_allclose(ends, [0.25, 0.5], atol=1e-6)


def test_a_rebound_global_array_is_seen_by_a_new_closure():
  global _TARGET
  x0 = jnp.zeros(2)
  _TARGET = jnp.asarray([0.3, -0.3])
  first = minimize(lambda x: jnp.sum((x - _TARGET) ** 2), x0)
  _TARGET = jnp.asarray([-0.7, 0.7])
  second, n = _compiles(lambda: minimize(lambda x: jnp.sum((x - _TARGET) ** 2), x0))
  assert n == 0
  np.testing.assert_allclose(first.x, [0.3, -0.3], atol=1e-6)
  np.testing.assert_allclose(second.x, [-0.7, 0.7], atol=1e-6)


def test_python_callbacks_and_custom_rules_are_keyed_by_the_function_object():
  # The Python code of a pure_callback or a custom_jvp rule is not in the
  # jaxpr's text: closures of the same code over different Python values must
  # not share a compiled solve.
  from jax_lbfgsb._fun_key import traced_fun

  x0 = jnp.zeros(2)

  def with_callback(shift):
    def host(x):
      return np.asarray(np.sum((x - shift) ** 2), x.dtype)

    return lambda x: jax.pure_callback(host, jax.ShapeDtypeStruct((), x.dtype), x)

  f1, c1 = traced_fun(with_callback(1.0), x0, ())
  f2, c2 = traced_fun(with_callback(2.0), x0, ())
  assert f1 != f2
  assert float(f1(x0, *c1)) == 2.0 and float(f2(x0, *c2)) == 8.0

  def with_rule(scale):
    @jax.custom_jvp
    def square(x):
      return x**2

    square.defjvp(lambda primals, tangents: (primals[0] ** 2, scale * primals[0] * tangents[0]))
    return lambda x: jnp.sum(square(x))

  g1, k1 = traced_fun(with_rule(2.0), x0, ())
  g2, k2 = traced_fun(with_rule(4.0), x0, ())
  assert g1 != g2
  ones = jnp.ones(2)
  np.testing.assert_allclose(jax.grad(lambda x: g2(x, *k2))(ones), [4.0, 4.0])


# ---------------------------------------------------------------- termination


def test_maxiter_stops_with_scipy_status_1():
  res = minimize(rosen, jnp.asarray(X0), maxiter=3)
  assert int(res.nit) == 3 and int(res.status) == 1
  assert int(res.termination) == Termination.MAXITER
  assert res.message.startswith("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT")


def test_maxfun_stops_after_the_iteration():
  res = minimize(rosen, jnp.asarray(X0), maxfun=5)
  assert int(res.nfev) > 5 and int(res.status) == 1
  assert res.message.startswith("STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT")


def test_converged_at_x0():
  # The optimum is on the upper bound, where x0 already is.
  res = minimize(shifted_quadratic, jnp.ones(3), args=(jnp.full(3, 2.0),), bounds=(-1.0, 1.0))
  assert int(res.nit) == 0 and int(res.nfev) == 1
  assert int(res.termination) == Termination.CONVERGED_PGTOL


def _nan_above_half(x):
  # f is NaN for x > 0.5.
  return jnp.where(x[0] > 0.5, jnp.nan, (x[0] - 2.0) ** 2)


def test_nan_stops_at_last_finite_iterate():
  # The first line search from x0 = 0 steps into the NaN region.
  res = minimize(_nan_above_half, jnp.zeros(1))
  assert int(res.termination) == Termination.NONFINITE and int(res.status) == 2
  chex.assert_tree_all_finite((res.fun, res.x))
  assert float(res.x[0]) <= 0.5
  assert res.message == "ABNORMAL: " and res.cause.startswith("f or its gradient is NaN or inf")


@pytest.mark.parametrize("wrap, dtype", [("eager", jnp.float32), ("jit", jnp.float64)], ids=["eager-float32", "jit-float64"])
def test_nan_trial_point_shortens_the_step(wrap, dtype):
  # The first trial steps to x < 0, where log is NaN: the search halves the
  # step instead of ending the solve (SciPy reaches 2 too).
  fun = lambda x: jnp.sum(x - 2 * jnp.log(x))  # noqa: E731
  solve = lambda x0: minimize(fun, x0)  # noqa: E731
  res = (jax.jit(solve) if wrap == "jit" else solve)(jnp.full(3, 10.0, dtype))
  assert int(res.termination) in (Termination.CONVERGED_PGTOL, Termination.CONVERGED_FTOL)
  np.testing.assert_allclose(res.x, 2.0, rtol=1e-4 if dtype == jnp.float32 else 1e-6)


def test_nonfinite_when_no_finite_point_lies_along_the_direction():
  # f is finite at x0 only: every trial of the search (with B = I) is NaN.
  x0 = jnp.asarray([1.0, 2.0])
  res = minimize(lambda x: jnp.where(jnp.all(x == x0), jnp.sum(x**2), jnp.nan), x0, maxls=10)
  assert int(res.termination) == Termination.NONFINITE and int(res.nit) == 0
  assert int(res.nfev) == 1 + 10  # x0, then maxls trials, each half the step of the one before
  np.testing.assert_array_equal(res.x, x0)


def test_nan_at_x0():
  res = minimize(_nan_above_half, jnp.ones(1))  # f(x0) is NaN (the solve of the test above)
  assert int(res.termination) == Termination.NONFINITE and int(res.nit) == 0


UNSATISFIABLE = {  # (lower, upper): a NaN, a lower bound at +inf, an upper bound at -inf
    "nan": ([0.0, np.nan, 0.0], [1.0, 1.0, 1.0]),
    "lower_inf": ([0.0, np.inf, 0.0], [1.0, np.inf, 1.0]),
    "upper_minus_inf": ([0.0, 0.0, 0.0], [1.0, 1.0, -np.inf]),
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_unsatisfiable_bounds(dtype):
  # Concrete: an error naming the bound. Traced: INVALID_BOUNDS, x finite.
  x0, a = jnp.full(3, 0.5, dtype), jnp.zeros(3, dtype)
  for lower, upper in UNSATISFIABLE.values():
    with pytest.raises(ValueError, match=r"bounds: `(lower|upper)`\[(1|2)\] is"):
      minimize(shifted_quadratic, x0, args=(a,), bounds=(np.asarray(lower), np.asarray(upper)))
  lowers, uppers = (jnp.asarray([b[k] for b in UNSATISFIABLE.values()], dtype) for k in (0, 1))
  batch = jax.jit(jax.vmap(lambda lo, hi: minimize(shifted_quadratic, x0, args=(a,), bounds=(lo, hi))))(lowers, uppers)
  np.testing.assert_array_equal(batch.termination, Termination.INVALID_BOUNDS)
  np.testing.assert_array_equal(batch.nit, 0)
  assert np.all(np.isfinite(np.asarray(batch.x)))
  assert all("a bound is NaN" in m for m in batch.cause)


def test_nan_in_x0():
  # Concrete: an error naming x0. Traced: NONFINITE at once, x inside the box.
  dtype = jnp.float32
  x0 = jnp.asarray([0.5, np.nan, 0.2], dtype)
  with pytest.raises(ValueError, match=r"x0 has NaN entries \(the first at raveled index 1\)"):
    minimize(shifted_quadratic, x0, args=(jnp.zeros(3, dtype),), bounds=(0.1, 0.9))
  res = jax.jit(lambda z: minimize(shifted_quadratic, z, args=(jnp.zeros(3, dtype),), bounds=(0.1, 0.9)))(x0)
  assert int(res.termination) == Termination.NONFINITE and int(res.nit) == 0
  x = np.asarray(res.x)
  assert np.all(np.isfinite(x)) and np.all((x.astype(np.float64) >= 0.1) & (x.astype(np.float64) <= 0.9))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_gradient_inconsistent_with_f_is_named(dtype):
  # The supplied gradient is -grad f: every step along -g raises f, far above
  # rounding. SciPy: ABNORMAL. float32 used to end CONVERGED_FTOL (status 0),
  # float64 PRECISION_LIMIT ("use float64").
  def fg(x):
    return jnp.sum((x - 0.5) ** 2), -2.0 * (x - 0.5)

  x0 = jnp.zeros(3, dtype)
  # float32 eagerly without bounds, float64 under jit with bounds (one compile each).
  solve = (lambda z: minimize(fg, z, jac=True)) if dtype == jnp.float32 else jax.jit(
      lambda z: minimize(fg, z, jac=True, bounds=(-1.0, 1.0)))
  res = solve(x0)
  assert int(res.termination) == Termination.INCONSISTENT_GRADIENT
  assert int(res.status) == 2 and not bool(res.success)
  assert res.message == "ABNORMAL: " and res.cause.startswith("The gradient is probably inconsistent with f")
  assert "check_grads" in res.cause
  assert float(res.fun) <= 0.75  # never above f(x0)


def _hump(x, offset):
  # offset + (x - 2)^2 / 1e4 with a bump of height 10 over [0.3, 1.1]: the
  # first trial (x = 1) lands past the bump, where f rose by 1.9 although g'd
  # is negative at both ends; the next trial, before the bump, lowers f by
  # 3.5e-5, a few float32 ulps of f = 1000, and is accepted.
  r = (x[0] - 0.7) / 0.4
  return offset + 1e-4 * (x[0] - 2.0) ** 2 + 10.0 * jnp.maximum(0.0, 1.0 - r * r) ** 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_fall_of_a_few_ulps_after_a_hump_is_no_inconsistent_gradient(dtype):
  # The gradient is jax.grad's: the search must not call it inconsistent
  # (float32 did, at iteration 1: the fall was below 16 eps |f|), and goes on to x = 2.
  res = minimize(_hump, jnp.zeros(1, dtype), args=(jnp.asarray(1000.0, dtype),))
  assert int(res.termination) in FLOAT32_ENDS, res.termination
  np.testing.assert_allclose(res.x, [2.0], atol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_step_that_left_f_unchanged_is_the_precision_limit(dtype):
  # MGH Brown badly scaled: float32 made a step with no decrease of f at all
  # (f = 6.28e11, |g| = 1.2e11) and called it CONVERGED_FTOL (status 0).
  p = problems.brown_badly_scaled()
  res = minimize(p.fun, jnp.asarray(p.x0, dtype))
  if dtype == jnp.float64:
    assert int(res.status) == 0 and float(res.fun) < 1e-10
    return
  assert int(res.termination) == Termination.PRECISION_LIMIT and not bool(res.success)
  assert float(res.fun) > 1e10 and float(res.state.sbgnrm) > 1e10  # far from f* = 0
  assert "precision" in res.cause


def test_a_nan_barrier_is_crossed_within_the_default_maxls():
  # f is NaN for x[1] < -3.2 (log), and the minimizer lies 5e-4 inside the
  # barrier. The halvings back from the NaN region used to spend maxls:
  # ABNORMAL at iteration 0, "the gradient does not match f" (SciPy: ABNORMAL too).
  def barrier(x):
    return 0.15 * (x[0] - 790.0) ** 2 + 1.06 * (x[1] + 6.3) ** 2 - 0.0033 * jnp.log(x[1] + 3.2)

  lower, upper = jnp.array([-9.6, -3.5]), jnp.array([8.9, 7.9])
  res = minimize(barrier, jnp.array([-0.27, 1.7]), bounds=(lower, upper))
  assert int(res.status) == 0, res.termination
  np.testing.assert_allclose(res.fun, 91527.79647, rtol=1e-10)  # with maxls=200 before: 91527.796470
  np.testing.assert_allclose(res.x, [8.9, -3.1995], atol=1e-4)
  # A barrier the search cannot get past in maxls halvings names the NaN region.
  stuck = minimize(barrier, jnp.array([-0.27, 1.7]), bounds=(lower, upper), maxls=2)
  assert int(stuck.termination) == Termination.NONFINITE and "NaN" in stuck.cause


def test_fixed_variables_stay_fixed():
  lower = jnp.array([0.3, -2.0, -2.0, -2.0])
  upper = jnp.array([0.3, 2.0, 2.0, 2.0])
  res = minimize(rosen, jnp.zeros(4), bounds=(lower, upper))
  assert float(res.x[0]) == 0.3
  assert res.success


# ---------------------------------------------------------------- extra options


def test_line_search_constants_are_options():
  ref = minimize(rosen, jnp.asarray(X0))
  same = minimize(rosen, jnp.asarray(X0), ls_ftol=1e-3, ls_gtol=0.9)
  np.testing.assert_array_equal(same.x, ref.x)
  other = minimize(rosen, jnp.asarray(X0), ls_ftol=0.01, ls_gtol=0.1)  # a tighter curvature test
  assert other.success and (int(other.nit), int(other.nfev)) != (int(ref.nit), int(ref.nfev))
  np.testing.assert_allclose(other.x, np.ones(4), atol=1e-3)


@pytest.mark.parametrize("ls_ftol, ls_gtol", [(0.0, 0.9), (0.5, 0.4), (0.1, 1.0)])
def test_line_search_constants_are_validated(ls_ftol, ls_gtol):
  with pytest.raises(ValueError, match="0 < ls_ftol < ls_gtol < 1"):
    minimize(rosen, jnp.asarray(X0), ls_ftol=ls_ftol, ls_gtol=ls_gtol)


def test_relative_gradient_test():
  res = minimize(rosen, jnp.asarray(X0), gtol=0.0, ftol=0.0, pgtol_rel=1e-3)
  assert int(res.termination) == Termination.CONVERGED_PGTOL_REL and int(res.status) == 0
  pg = np.linalg.norm(np.asarray(res.jac))  # unbounded: the projected gradient is the gradient
  assert pg <= 1e-3 * (1.0 + abs(float(res.fun)))
  before = minimize(rosen, jnp.asarray(X0), gtol=0.0, ftol=0.0, pgtol_rel=1e-3, maxiter=int(res.nit) - 1)
  assert np.linalg.norm(np.asarray(before.jac)) > 1e-3 * (1.0 + abs(float(before.fun)))


def test_relative_step_test():
  solve = lambda **kw: minimize(rosen, jnp.asarray(X0), gtol=0.0, ftol=0.0, xtol_rel=1e-4, **kw)  # noqa: E731
  res = solve()
  assert int(res.termination) == Termination.CONVERGED_XTOL
  k = int(res.nit)
  # The iterates before x_k: the same solve stopped after k - 1 and k - 2 iterations (maxiter is
  # traced: the program of the tests above, no history needed).
  x = {k: np.asarray(res.x), **{j: np.asarray(solve(maxiter=j).x) for j in (k - 1, k - 2)}}
  assert np.linalg.norm(x[k] - x[k - 1]) <= 1e-4 * (np.linalg.norm(x[k]) + 1.0)
  assert np.linalg.norm(x[k - 1] - x[k - 2]) > 1e-4 * (np.linalg.norm(x[k - 1]) + 1.0)


# ---------------------------------------------------------------- the accelerator program
# Last in the file: it empties JAX's caches, so the solves compiled above stay
# shared by every test before it.


def test_the_accelerator_program_keeps_the_cpu_iterates(monkeypatch):
  """Every lax.platform_dependent at its default, as on a GPU (the loop-free Cauchy point,
  selects for conds, the formk sums recomputed), run on CPU: same counts, same x to rounding."""
  rng = np.random.default_rng(3)
  n = 300  # above INCREMENTAL_MIN_N (kept sums); the bounds cut most coordinates
  centre, weight = jnp.asarray(rng.uniform(-2.0, 2.0, n)), jnp.asarray(rng.uniform(0.5, 4.0, n))

  def coupled(x):
    return jnp.sum(weight * (x - centre) ** 2) + 0.1 * jnp.sum((x[1:] - x[:-1]) ** 2) + 0.01 * jnp.sum(x**4)

  solve = lambda: minimize(coupled, jnp.zeros(n), bounds=(-1.0, 1.0), iprint=0)  # noqa: E731  (iprint: state.info)
  cpu = solve()
  jax.clear_caches()
  monkeypatch.setattr(jax.lax, "platform_dependent", lambda *args, default, **_: default(*args))
  other = solve()
  monkeypatch.undo()
  jax.clear_caches()
  assert (int(cpu.nit), int(cpu.nfev), int(cpu.termination)) == (int(other.nit), int(other.nfev), int(other.termination))
  assert int(cpu.state.info.nintol) == int(other.state.info.nintol) > 2 * int(cpu.nit) > 10  # many breakpoints
  # Rounding: the scan's prefix sums and the recomputed sums round differently.
  x = np.asarray(cpu.x)
  x_tol = rounding.solution_tolerance(coupled, cpu.x, cpu.nit, free=(x > -1.0) & (x < 1.0))
  np.testing.assert_allclose(other.x, cpu.x, rtol=0, atol=x_tol)
