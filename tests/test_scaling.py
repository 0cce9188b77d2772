"""x_scale: the solver works on x / s and reports in the caller's variables (issue 17)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lbfgsb import minimize
from jax_lbfgsb._scaling import auto_scale, hessian_diagonal

S = np.array([1e-3, 1e-2, 1.0, 10.0, 1e2, 1e3])  # the variables' true scales
A = np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) + 0.3  # SPD, well conditioned in z = x / S
B = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 2.0])


def quad(x, c):
  z = x / jnp.asarray(S, x.dtype)
  return 0.5 * z @ jnp.asarray(A, x.dtype) @ z - c * jnp.asarray(B, x.dtype) @ z


def _solve(dtype, **kwargs):
  x0 = jnp.zeros(6, dtype)
  return minimize(quad, x0, args=(1.0,), bounds=(-0.4 * S, 0.4 * S), history=40, **kwargs)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_unit_scale_is_bit_identical(dtype):
  plain, one, ones = _solve(dtype), _solve(dtype, x_scale=1.0), _solve(dtype, x_scale=np.ones(6))
  for res in (one, ones):
    assert res.x_scale is None  # a unit scale is no scaling: the same program
    assert int(res.nit) == int(plain.nit) and int(res.nfev) == int(plain.nfev)
    np.testing.assert_array_equal(res.x, plain.x)
    np.testing.assert_array_equal(res.jac, plain.jac)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_true_scales_converge_in_fewer_evaluations_in_the_callers_variables(dtype):
  plain, scaled = _solve(dtype), _solve(dtype, x_scale=S)
  assert int(scaled.nfev) * 3 <= int(plain.nfev) and bool(scaled.success)
  assert float(scaled.fun) <= float(plain.fun) + 1e3 * jnp.finfo(dtype).eps * abs(float(plain.fun))
  x = np.asarray(scaled.x)
  assert np.all((x >= (-0.4 * S).astype(dtype)) & (x <= (0.4 * S).astype(dtype)))
  np.testing.assert_allclose(scaled.jac, jax.grad(quad)(scaled.x, 1.0), rtol=1e-5)  # caller's gradient
  k = int(scaled.nit)
  np.testing.assert_allclose(scaled.history.x[k], x, rtol=1e-6)  # history in the caller's variables
  np.testing.assert_array_equal(scaled.x_scale, S.astype(dtype))


def test_hess_inv_is_in_the_callers_variables():
  res = _solve(jnp.float64, x_scale=S, maxiter=4)
  inner = np.asarray(res.hess_inv._replace(scale=None).todense())  # H in y = x / s
  np.testing.assert_allclose(res.hess_inv.todense(), np.diag(S) @ inner @ np.diag(S), rtol=1e-12, atol=1e-300)


def test_auto_takes_box_widths_and_curvature_relative_to_the_typical_and_a_far_common_width():
  x = jnp.zeros(6)
  grad = jax.grad(lambda x: quad(x, 1.0))
  np.testing.assert_allclose(hessian_diagonal(grad, x), np.diag(A) / S**2, rtol=1e-12)
  free = auto_scale(grad, x, jnp.full(6, -jnp.inf), jnp.full(6, jnp.inf))  # from curvature: ~S / gmean
  widths = auto_scale(grad, x, jnp.asarray(-0.4 * S), jnp.asarray(0.4 * S))  # from the box: S / gmean
  for s, log_s in ((free, np.log2(S / np.sqrt(np.diag(A)))), (widths, np.log2(0.8 * S))):
    rel = log_s - log_s.mean()  # relative to the geometric mean; within a factor 16 of it: 1
    np.testing.assert_array_equal(np.log2(np.asarray(s)), np.where(np.abs(rel) > 4, np.round(rel), 0.0))
  # Boxes whose typical width is beyond a factor 16 of 1 set the unit too: the
  # geometric mean, rounded to a power of two, times the relative scales.
  for common in (1e3, 1e-3):
    wide = auto_scale(grad, x, jnp.asarray(-0.4 * common * S), jnp.asarray(0.4 * common * S))
    log_w = np.log2(0.8 * common * S)
    rel = log_w - log_w.mean()
    want = np.round(log_w.mean()) + np.where(np.abs(rel) > 4, np.round(rel), 0.0)
    np.testing.assert_array_equal(np.log2(np.asarray(wide)), want)
    assert abs(np.round(log_w.mean())) >= 9
  res, plain = _solve(jnp.float64, x_scale="auto"), _solve(jnp.float64)
  np.testing.assert_array_equal(res.x_scale, widths)
  assert int(res.nfev) < int(plain.nfev) and float(res.fun) <= float(plain.fun) + 1e-12


@pytest.mark.rounding
def test_per_lane_scales_under_jit_and_vmap_and_warm_start():
  scales = jnp.stack([jnp.ones(6), jnp.asarray(S)])
  batch = jax.jit(jax.vmap(lambda s: minimize(quad, jnp.zeros(6), args=(1.0,), bounds=(-0.4 * S, 0.4 * S),
                                              x_scale=s, maxiter=3)))(scales)
  single = minimize(quad, jnp.zeros(6), args=(1.0,), bounds=(-0.4 * S, 0.4 * S), x_scale=S, maxiter=3)
  assert int(batch.nit[1]) == int(single.nit) and int(batch.nfev[1]) == int(single.nfev)
  np.testing.assert_allclose(batch.x[1], single.x, rtol=1e-10, atol=1e-15)
  assert np.any(np.asarray(batch.x[0]) != np.asarray(batch.x[1]))  # the lanes' scales differ, so do their steps
  # A warm start continues in the scales of the solve it continues.
  first = _solve(jnp.float64, x_scale=S, maxiter=2)
  rest = minimize(quad, first, args=(1.0,), bounds=(-0.4 * S, 0.4 * S), history=40)
  whole = _solve(jnp.float64, x_scale=S)
  assert int(rest.nit) == int(whole.nit)
  np.testing.assert_allclose(rest.x, whole.x, rtol=1e-12, atol=1e-15)
  with pytest.raises(ValueError, match="a warm start keeps the scales"):
    minimize(quad, first, args=(1.0,), x_scale=S, history=40)


def test_derivatives_through_a_scaled_solve():
  def solution(c, s):
    return minimize(quad, jnp.zeros(6), args=(c,), x_scale=s, gtol=1e-12, ftol=0.0).x

  plain = jax.jacfwd(solution)(1.0, None)
  scaled = jax.jacfwd(solution)(1.0, jnp.asarray(S))
  exact = S * np.linalg.solve(A, B)  # x* = S A^-1 B c without bounds
  np.testing.assert_allclose(plain, exact, rtol=1e-6)
  np.testing.assert_allclose(scaled, exact, rtol=1e-6)


@pytest.mark.parametrize("x_scale, match", [
    (-1.0, "x_scale must be positive and finite; entry 0"),
    (np.ones(5), r"a scale of shape \(5,\) for a leaf of x0 of shape \(6,\)"),
    ("sqrt", "x_scale must be 'auto'"),
])
def test_bad_scales_raise(x_scale, match):
  with pytest.raises(ValueError, match=match):
    minimize(quad, jnp.zeros(6), args=(1.0,), x_scale=x_scale)


def test_the_other_faces_take_x_scale(capsys):
  import json

  from jax_lbfgsb import LBFGSB, cli, fmin_l_bfgs_b

  ref = minimize(quad, jnp.zeros(6), args=(1.0,), bounds=(-0.4 * S, 0.4 * S), x_scale=S)
  x, f, d = fmin_l_bfgs_b(quad, np.zeros(6), args=(1.0,), approx_grad=1, bounds=list(zip(-0.4 * S, 0.4 * S)),
                          x_scale=S)
  assert d["nit"] == int(ref.nit)
  np.testing.assert_allclose(x, ref.x, rtol=1e-12, atol=1e-15)
  sol = LBFGSB(fun=quad, tol=1e-5, x_scale=S, maxiter=100).run(jnp.zeros(6), (-0.4 * S, 0.4 * S), 1.0)
  np.testing.assert_allclose(sol.params, ref.x, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(sol.state.result.x_scale, S)
  assert cli.main(["solve", "--expr", "sum((x(i)-i)^2, i=1..3)", "--scale", "auto", "--json"]) == 0
  assert json.loads(capsys.readouterr().out)["success"]
  with pytest.raises(SystemExit):
    cli.main(["solve", "--expr", "x(1)^2", "--scale", "-1"])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_lbfgsb_run_continues_an_opt_step_in_the_scaled_variables(dtype):
  from jax_lbfgsb import LBFGSB, OptStep

  bounds, x0 = (-0.4 * S, 0.4 * S), jnp.zeros(6, dtype)
  first = LBFGSB(fun=quad, tol=1e-10, maxiter=3, x_scale=S).run(x0, bounds, 1.0)
  continued = LBFGSB(fun=quad, tol=1e-10, maxiter=4).run(first, bounds, 1.0)
  ref = LBFGSB(fun=quad, tol=1e-10, maxiter=7, x_scale=S).run(x0, bounds, 1.0)
  assert int(continued.state.iter_num) == int(ref.state.iter_num) == 7  # one longer solve
  np.testing.assert_array_equal(continued.params, ref.params)
  np.testing.assert_array_equal(continued.state.result.x_scale, S.astype(dtype))
  # from params the caller moved: the solve restarts there (in the scaled variables), keeping the memory
  moved = first.params.at[5].set(100.0)
  again = LBFGSB(fun=quad, tol=1e-10, maxiter=1).run(OptStep(moved, first.state), bounds, 1.0)
  start = float(quad(moved, 1.0))  # f where the iteration started: the solver's previous f
  np.testing.assert_allclose(float(again.state.result.state.fold), start, rtol=64 * float(jnp.finfo(dtype).eps))
  assert float(again.state.value) < start and int(again.state.iter_num) == 4


def _quad_at_1(x):
  return quad(x, 1.0)


def test_optax_updates_are_minimizes_scaled_iterates():
  x_scale = "auto"  # the box widths: S, relative to their geometric mean; the explicit path is the same code
  import optax

  from jax_lbfgsb.optax import lbfgsb

  opt = lbfgsb(lower=-0.4 * S, upper=0.4 * S, x_scale=x_scale)
  params = jnp.zeros(6)
  state = opt.init(params)
  value_and_grad = optax.value_and_grad_from_state(_quad_at_1)
  for _ in range(4):
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=_quad_at_1)
    params = optax.apply_updates(params, updates)
  ref = _solve(jnp.float64, x_scale=x_scale, maxiter=4)  # quad(x, 1.0): the solve of test_auto_takes_...
  assert int(state.solver.nit) == 4
  np.testing.assert_array_equal(state.scale, ref.x_scale)
  np.testing.assert_allclose(params, ref.x, rtol=1e-12, atol=1e-15)
  assert np.all((np.asarray(params) >= -0.4 * S) & (np.asarray(params) <= 0.4 * S))
