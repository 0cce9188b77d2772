"""LBFGSB, the drop-in for jaxopt.LBFGSB: side by side with jaxopt 0.8.5 and SciPy, the state, update, transforms."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jax_lbfgsb import Termination
from jax_lbfgsb import LBFGSB, LbfgsbState, OptStep


def _jaxopt():
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return pytest.importorskip("jaxopt")


# ---------------------------------------------------------------- a bounded quadratic
# f(x, a, c) = x'Qx / 2 - a'x + sum(c x^2) / 2 over [-1/2, 1/2]^6: x[0], x[3] end at
# the lower bound, x[1] at the upper one, x[2], x[4], x[5] free. One objective code
# for (almost) every test: each code compiles the solve once.

_rng = np.random.default_rng(0)
_M = _rng.normal(size=(6, 6))
Q = _M @ _M.T / 6.0 + np.eye(6)
A = np.array([-3.0, 3.0, 0.1, -3.0, 0.2, -0.1])
C = np.full(6, 0.5)
LO, HI = np.full(6, -0.5), np.full(6, 0.5)
BOUNDS = (LO, HI)
X0 = np.zeros(6)
TOL = 1e-6
FREE = np.array([False, False, True, False, True, True])


def quad(x, a, c=jnp.asarray(C)):
  return 0.5 * x @ (jnp.asarray(Q, x.dtype) @ x) - a @ x + 0.5 * jnp.sum(c * x**2)


def exact_solution(a=A, c=C):
  """The closed form on the known active set: H_FF x_F = a_F - H_FA x_A."""
  h = Q + np.diag(c)
  x = np.where(FREE, 0.0, np.where(np.array([1, 0, 0, 1, 0, 0], bool), -0.5, 0.5))
  x[FREE] = np.linalg.solve(h[np.ix_(FREE, FREE)], a[FREE] - h[np.ix_(FREE, ~FREE)] @ x[~FREE])
  return x


SOLVER = LBFGSB(fun=quad, tol=TOL, maxiter=100)


def x0(dtype=jnp.float64):
  return jnp.asarray(X0, dtype)


# ---------------------------------------------------------------- against jaxopt


@pytest.mark.rounding
def test_run_matches_jaxopt():
  jaxopt = _jaxopt()
  ours = SOLVER.run(x0(), BOUNDS, jnp.asarray(A))
  ref = jaxopt.LBFGSB(fun=quad, tol=TOL, maxiter=100).run(x0(), BOUNDS, jnp.asarray(A))
  np.testing.assert_allclose(ours.params, ref.params, atol=1e-10)
  np.testing.assert_allclose(ours.params, exact_solution(), atol=1e-6)
  assert float(ours.state.error) <= TOL and float(ref.state.error) <= TOL
  # On this quadratic L-BFGS-B's unit steps are accepted by both line searches.
  assert int(ours.state.iter_num) == int(ref.state.iter_num)
  np.testing.assert_allclose(ours.state.value, ref.state.value, rtol=1e-12)
  np.testing.assert_allclose(ours.state.grad, ref.state.grad, atol=1e-9)
  assert isinstance(ours, OptStep) and isinstance(ours.state, LbfgsbState)
  assert ours.state._fields[:10] == tuple(
      f for f in ref.state._fields if f not in ("s_history", "y_history", "theta", "num_updates"))
  assert not bool(ours.state.failed_linesearch)
  assert int(ours.state.result.termination) == Termination.CONVERGED_PGTOL


def test_init_state_and_optimality_match_jaxopt():
  jaxopt = _jaxopt()
  ref_solver = jaxopt.LBFGSB(fun=quad)
  a = jnp.asarray(A)
  ours, ref = SOLVER.init_state(x0(), BOUNDS, a), ref_solver.init_state(x0(), BOUNDS, a)
  assert int(ours.iter_num) == 0 and int(ours.num_fun_eval) == 1 and int(ours.num_linesearch_iter) == 0
  np.testing.assert_allclose(ours.value, ref.value, rtol=1e-14)
  np.testing.assert_allclose(ours.grad, ref.grad, rtol=1e-14)
  np.testing.assert_allclose(ours.error, ref.error, rtol=1e-14)
  assert int(ours.result.termination) == Termination.RUNNING
  zero = LBFGSB(fun=quad, maxiter=0).run(x0() + 0.7, BOUNDS, a)  # as jaxopt: no iteration
  np.testing.assert_array_equal(zero.params, np.full(6, 0.5))  # projected into the bounds
  assert int(zero.state.iter_num) == 0
  x = jnp.asarray(np.random.default_rng(1).uniform(-0.6, 0.6, size=6))
  for bounds in (BOUNDS, (-0.5, 0.5), (None, 0.2), None):
    np.testing.assert_allclose(
        SOLVER.l2_optimality_error(x, bounds, a), ref_solver.l2_optimality_error(
            x, bounds if bounds is None or bounds[0] is not None else (-jnp.inf, bounds[1]), a), rtol=1e-14)
  np.testing.assert_allclose(SOLVER.optimality_fun(x, BOUNDS, a), ref_solver.optimality_fun(x, BOUNDS, a), rtol=1e-14)


# ---------------------------------------------------------------- against SciPy


@pytest.mark.rounding
@pytest.mark.parametrize("maxiter", [1, 3, 100])
def test_iterates_match_scipy(maxiter):
  ours = LBFGSB(fun=quad, tol=TOL, maxiter=maxiter).run(x0(), BOUNDS, jnp.asarray(A))
  fg = jax.jit(jax.value_and_grad(quad))
  ref = scipy.optimize.minimize(
      lambda x: tuple(np.asarray(v) for v in fg(jnp.asarray(x), jnp.asarray(A))), X0, jac=True,
      method="L-BFGS-B", bounds=list(zip(LO, HI)),
      options=dict(maxcor=10, ftol=0.0, gtol=TOL, maxiter=maxiter, maxls=30))
  np.testing.assert_allclose(ours.params, ref.x, rtol=1e-12, atol=1e-14)
  assert (int(ours.state.iter_num), int(ours.state.num_fun_eval)) == (ref.nit, ref.nfev)


# ---------------------------------------------------------------- update, OptStep


@pytest.mark.rounding
def test_init_state_then_updates_gives_runs_iterates():
  a = jnp.asarray(A)
  params, state = x0(), SOLVER.init_state(x0(), BOUNDS, a)
  for k in range(1, 5):
    params, state = SOLVER.update(params, state, BOUNDS, a)
    ref = LBFGSB(fun=quad, tol=TOL, maxiter=k).run(x0(), BOUNDS, a)
    np.testing.assert_allclose(params, ref.params, rtol=1e-13, atol=1e-15)
    assert int(state.iter_num) == int(ref.state.iter_num) == k
    np.testing.assert_allclose(state.value, ref.state.value, rtol=1e-14)
    assert int(state.num_linesearch_iter) == int(ref.state.num_linesearch_iter)
    # An update evaluates only in its line search: the counts of run(maxiter=k).
    assert int(state.num_fun_eval) == int(ref.state.num_fun_eval)
  # Once converged, update stays put.
  done = SOLVER.run(x0(), BOUNDS, a)
  again = SOLVER.update(done.params, done.state, BOUNDS, a)
  np.testing.assert_array_equal(again.params, done.params)
  assert int(again.state.iter_num) == int(done.state.iter_num)


@pytest.mark.rounding
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_jitted_updates_make_runs_iterates_and_evaluations(dtype):
  """k updates under jit: run(maxiter=k)'s x and num_fun_eval (both drive the passes by
  _solver.advance); params moved by the caller cost one evaluation there."""
  a = jnp.asarray(A, dtype)
  update = jax.jit(lambda p, s, a: SOLVER.update(p, s, BOUNDS, a))
  params, state = x0(dtype), jax.jit(lambda p, a: SOLVER.init_state(p, BOUNDS, a))(x0(dtype), a)
  run = jax.jit(lambda a, k: LBFGSB(fun=quad, tol=TOL, maxiter=k).run(x0(dtype), BOUNDS, a))  # k traced: one compile
  for k in range(1, 6):
    params, state = update(params, state, a)
    ref = run(a, k)
    assert params.dtype == dtype
    np.testing.assert_array_equal(params, ref.params)
    assert (int(state.iter_num), int(state.num_fun_eval)) == (int(ref.state.iter_num), int(ref.state.num_fun_eval))
  moved = update(params * 0.5, state, a)
  assert int(moved.state.num_fun_eval) == int(state.num_fun_eval) + 1 + int(moved.state.num_linesearch_iter
                                                                          - state.num_linesearch_iter)
  assert int(moved.state.iter_num) == int(state.iter_num) + 1


@pytest.mark.rounding
def test_opt_step_as_init_params_continues():
  a = jnp.asarray(A)
  first = LBFGSB(fun=quad, tol=TOL, maxiter=2).run(x0(), BOUNDS, a)
  continued = LBFGSB(fun=quad, tol=TOL, maxiter=3).run(first, BOUNDS, a)
  ref = LBFGSB(fun=quad, tol=TOL, maxiter=5).run(x0(), BOUNDS, a)
  assert int(continued.state.iter_num) == 5
  np.testing.assert_allclose(continued.params, ref.params, rtol=1e-13, atol=1e-15)
  assert int(continued.state.num_linesearch_iter) == int(ref.state.num_linesearch_iter)
  with pytest.raises(TypeError, match="not a jax_lbfgsb LbfgsbState"):
    SOLVER.run(OptStep(x0(), {"iter_num": 0}), BOUNDS, a)


# ---------------------------------------------------------------- fun's forms


def test_kwargs_reach_fun():
  a, c = jnp.asarray(A), jnp.asarray(4.0 * C)
  sol = SOLVER.run(x0(), BOUNDS, a, c=c)
  np.testing.assert_allclose(sol.params, exact_solution(c=4.0 * C), atol=1e-6)
  assert float(SOLVER.l2_optimality_error(sol.params, BOUNDS, a, c=c)) < 2 * TOL
  assert float(SOLVER.l2_optimality_error(sol.params, BOUNDS, a)) > 1e-2  # not the default c's solution


def test_has_aux_with_pytree_params():
  def fun(p, a):
    x = jnp.concatenate([p["u"], p["v"]])
    return quad(x, a), {"sum": jnp.sum(x), "x": x}

  solver = LBFGSB(fun=fun, has_aux=True, tol=TOL)
  p0 = {"u": jnp.zeros(2), "v": jnp.zeros(4)}
  bounds = ({"u": -0.5, "v": jnp.full(4, -0.5)}, 0.5)
  sol = solver.run(p0, bounds, jnp.asarray(A))
  x = np.concatenate([sol.params["u"], sol.params["v"]])
  np.testing.assert_allclose(x, exact_solution(), atol=1e-6)
  np.testing.assert_allclose(sol.state.aux["x"], x, rtol=1e-15)
  np.testing.assert_allclose(sol.state.aux["sum"], x.sum(), rtol=1e-14)
  assert set(sol.state.grad) == {"u", "v"}
  assert float(solver.l2_optimality_error(sol.params, bounds, jnp.asarray(A))) < 2 * TOL
  state = solver.init_state(p0, bounds, jnp.asarray(A))
  np.testing.assert_array_equal(state.aux["x"], np.zeros(6))


@pytest.mark.rounding
def test_value_and_grad_with_aux():
  def fun(x, a):
    value, grad = jax.value_and_grad(quad)(x, a)
    return (value, 2.0 * value), grad

  solver = LBFGSB(fun=fun, value_and_grad=True, has_aux=True, tol=TOL)
  sol = solver.run(x0(), BOUNDS, jnp.asarray(A))
  ref = SOLVER.run(x0(), BOUNDS, jnp.asarray(A))
  np.testing.assert_allclose(sol.params, ref.params, rtol=1e-13, atol=1e-15)
  np.testing.assert_allclose(sol.state.aux, 2.0 * sol.state.value, rtol=1e-15)
  assert int(sol.state.iter_num) == int(ref.state.iter_num)


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("field, value", [
    ("stepsize", 0.1), ("stepsize", lambda k: 0.1), ("linesearch", "backtracking"),
    ("linesearch", "hager-zhang"), ("linesearch_init", "max"), ("increase_factor", 2.0),
    ("max_stepsize", 10.0), ("min_stepsize", 1e-3), ("theta", 2.0), ("use_gamma", False),
])
def test_unsupported_knob_raises_naming_it(field, value):
  with pytest.raises(ValueError, match=rf"LBFGSB: {field}=.* is not supported"):
    LBFGSB(fun=quad, **{field: value})


@pytest.mark.parametrize("field, value, rule", [
    ("history_size", 0, "history_size must be >= 1, got 0"), ("history_size", 2.5, "history_size must be a Python int"),
    ("tol", -1.0, "tol must be >= 0, got -1.0"), ("maxls", 0, "maxls must be >= 1, got 0"),
    ("maxiter", float("nan"), "maxiter must be a number"),
])
def test_bad_option_values_raise_at_construction(field, value, rule):
  with pytest.raises((ValueError, TypeError), match=f"LBFGSB: {rule}"):
    LBFGSB(fun=quad, **{field: value})


def test_ignored_knobs_change_nothing():
  with pytest.warns(DeprecationWarning, match="condition"):
    solver = LBFGSB(fun=quad, tol=TOL, maxiter=100, condition="armijo", stepsize=-1.0, jit=False,
                    unroll=True, stop_if_linesearch_fails=True)
  sol = solver.run(x0(), BOUNDS, jnp.asarray(A))
  np.testing.assert_array_equal(sol.params, SOLVER.run(x0(), BOUNDS, jnp.asarray(A)).params)


def test_maxiter_history_size_and_verbose(capsys):
  sol = LBFGSB(fun=quad, maxiter=2, history_size=3, verbose=True).run(x0(), BOUNDS, jnp.asarray(A))
  assert int(sol.state.iter_num) == 2
  assert int(sol.state.result.termination) == Termination.MAXITER
  assert sol.state.result.state.memory.S.shape[0] == 3
  assert "At iterate    2" in capsys.readouterr().out


# ---------------------------------------------------------------- transforms, dtypes


@pytest.mark.rounding
def test_jit_and_vmap():
  a = jnp.asarray(A)
  eager = SOLVER.run(x0(), BOUNDS, a)
  jitted = jax.jit(lambda x, a: SOLVER.run(x, BOUNDS, a))(x0(), a)
  np.testing.assert_allclose(jitted.params, eager.params, rtol=1e-12, atol=1e-14)
  assert int(jitted.state.iter_num) == int(eager.state.iter_num)
  batch = jnp.stack([a, 0.5 * a, -a])
  params = jax.vmap(lambda a: SOLVER.run(x0(), BOUNDS, a).params)(batch)
  for i in range(3):
    np.testing.assert_allclose(params[i], exact_solution(a=np.asarray(batch[i])) if i == 0 else
                               SOLVER.run(x0(), BOUNDS, batch[i]).params, rtol=1e-10, atol=1e-6 if i == 0 else 1e-12)


def test_float32():
  a = jnp.asarray(A, jnp.float32)
  sol = LBFGSB(fun=quad, maxiter=100).run(x0(jnp.float32), BOUNDS, a)  # tol: jaxopt's 1e-3
  assert sol.params.dtype == jnp.float32 and sol.state.value.dtype == jnp.float32
  assert float(sol.state.error) <= 1e-3
  np.testing.assert_allclose(sol.params, exact_solution(), atol=2e-3)


@pytest.mark.parametrize("flags", [{}, dict(implicit_diff=False, implicit_diff_solve=lambda *a, **k: None)],
                         ids=["default", "implicit_diff=False"])
def test_grad_through_run_wrt_args_and_kwargs(flags):
  """Closed form: x_F = H_FF^{-1} (a_F - H_FA x_A), H = Q + diag(c), the active x fixed.
  jaxopt's flags for how derivatives are taken change nothing: they stay implicit."""
  w = jnp.arange(1.0, 7.0)

  def loss(a, c):
    return w @ LBFGSB(fun=quad, tol=1e-10, **flags).run(x0(), BOUNDS, a, c=c).params

  ga, gc = jax.grad(loss, argnums=(0, 1))(jnp.asarray(A), jnp.asarray(C))
  x = exact_solution()
  h = Q + np.diag(C)
  v = np.zeros(6)
  v[FREE] = np.linalg.solve(h[np.ix_(FREE, FREE)], np.asarray(w)[FREE])
  np.testing.assert_allclose(ga, v, atol=1e-8)
  np.testing.assert_allclose(gc, -v * x, atol=1e-8)


def test_a_jaxopt_users_call_runs_unchanged():
  def vg(x, a):
    return jax.value_and_grad(quad)(x, a)

  sol = LBFGSB(fun=vg, value_and_grad=True, maxiter=50, tol=1e-3, implicit_diff=False, jit=False,
               unroll=True).run(x0(), BOUNDS, jnp.asarray(A))
  ref = LBFGSB(fun=quad, maxiter=50, tol=1e-3).run(x0(), BOUNDS, jnp.asarray(A))
  np.testing.assert_array_equal(sol.params, ref.params)
  assert int(sol.state.iter_num) == int(ref.state.iter_num) and float(sol.state.error) <= 1e-3
