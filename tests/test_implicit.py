"""Implicit differentiation of minimize: closed forms, finite differences, unrolled Newton, transforms."""

import functools

import jax
import jax.flatten_util

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jax_lbfgsb import minimize  # noqa: E402
from jax_lbfgsb._minimize import fast_compile_jit  # noqa: E402

TIGHT = dict(gtol=1e-10, ftol=1e-14)
# Compiles the solver 2.5x faster on CPU (as minimize does at top level).
_jit = functools.partial(fast_compile_jit, static_argnames=())

# ---------------------------------------------------------------- a parametric quadratic
# f(x, theta) = x'Ax / 2 - (B theta + c)'x over a box where x[0], x[3] end at
# their lower bound, x[1] at its upper bound and x[2], x[4], x[5] are free.

_rng = np.random.default_rng(0)
_M = _rng.normal(size=(6, 6))
QA = _M @ _M.T / 6.0 + np.eye(6)
QB = _rng.normal(size=(6, 2))
QC = np.array([-3.0, 3.0, 0.1, -3.0, 0.2, -0.1])
QLO = np.full(6, -0.5)
QHI = np.full(6, 0.5)
QTHETA = np.array([0.3, -0.2])


def quadratic(x, theta):
  return 0.5 * x @ (QA.astype(x.dtype) @ x) - (QB.astype(x.dtype) @ theta + QC.astype(x.dtype)) @ x


def solve_quadratic(theta, lo, hi):
  return minimize(quadratic, jnp.zeros(6, theta.dtype), bounds=(lo, hi), args=(theta,), gtol=1e-12, ftol=0.0).x


def quadratic_jacobians():
  """The closed form: active variables follow their bound, H_FF dx_F = B_F dtheta - H_FA dx_A."""
  x = np.asarray(solve_quadratic(jnp.asarray(QTHETA), jnp.asarray(QLO), jnp.asarray(QHI)))
  g = QA @ x - QB @ QTHETA - QC
  at_lo, at_hi = np.isclose(x, QLO) & (g > 1e-6), np.isclose(x, QHI) & (g < -1e-6)
  free = ~(at_lo | at_hi)
  assert at_lo.tolist() == [True, False, False, True, False, False]
  assert at_hi.tolist() == [False, True, False, False, False, False]

  def dx(dtheta, dlo, dhi):
    d = np.where(at_lo, dlo, np.where(at_hi, dhi, 0.0))
    d[free] = np.linalg.solve(QA[np.ix_(free, free)], QB[free] @ dtheta - QA[np.ix_(free, ~free)] @ d[~free])
    return d

  eye2, eye6, z2, z6 = np.eye(2), np.eye(6), np.zeros(2), np.zeros(6)
  return (
      np.stack([dx(e, z6, z6) for e in eye2], axis=1),
      np.stack([dx(z2, e, z6) for e in eye6], axis=1),
      np.stack([dx(z2, z6, e) for e in eye6], axis=1),
  )


@pytest.mark.parametrize("mode", ["jacfwd", "jacrev"])
def test_quadratic_matches_closed_form(mode):
  jac = _jit(getattr(jax, mode)(solve_quadratic, argnums=(0, 1, 2)))
  got = jac(jnp.asarray(QTHETA), jnp.asarray(QLO), jnp.asarray(QHI))
  for g, want in zip(got, quadratic_jacobians()):
    np.testing.assert_allclose(g, want, rtol=1e-8, atol=1e-10)


@pytest.mark.rounding
def test_quadratic_float32():
  args = [jnp.asarray(a, jnp.float32) for a in (QTHETA, QLO, QHI)]
  got = _jit(jax.jacrev(solve_quadratic, argnums=(0, 1, 2)))(*args)
  for g, want in zip(got, quadratic_jacobians()):
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(g, want, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- box-constrained logistic regression
# At lam = 0.04, w[0] ends at its upper bound, w[1] at its lower bound, w[2:] free.

_rng = np.random.default_rng(1)
LX = _rng.normal(size=(16, 4))
LY = (LX @ np.array([2.0, -1.5, 0.3, 0.1]) + 0.3 * _rng.normal(size=16) > 0).astype(np.float64)
LLO = np.array([-0.5, -0.5, -2.0, -2.0])
LHI = np.array([0.5, 0.5, 2.0, 2.0])
# lam is not weakly typed: lam + h and the entries of an array of lams (the tests
# below) have its type, so they reuse the solves and GRAD compiled for it.
PRIMALS = (jnp.asarray(0.04, jnp.float64), jnp.asarray(LX), jnp.asarray(LLO), jnp.asarray(LHI))


def logistic(w, lam, data):
  z = data @ w
  return jnp.mean(jnp.logaddexp(0.0, z) - LY * z) + 0.5 * lam * w @ w


def outcome(res):
  """A scalar of the solution, its value and its gradient: each gets a derivative."""
  return jnp.sin(res.x) @ jnp.array([1.0, -2.0, 0.5, 3.0]) + 0.7 * res.fun + res.jac @ jnp.array([0.3, 0.2, 0.1, 0.4])


def logistic_outcome(lam, data, lo, hi):
  return outcome(minimize(logistic, jnp.zeros(4), bounds=(lo, hi), args=(lam, data), **TIGHT))


grad_outcome = jax.grad(logistic_outcome, argnums=(0, 1, 2, 3))
GRAD = _jit(grad_outcome)


def test_logistic_has_active_bounds_and_free_variables():
  res = minimize(logistic, jnp.zeros(4), bounds=(LLO, LHI), args=PRIMALS[:2], **TIGHT)
  x = np.asarray(res.x)
  assert x[0] == LHI[0] and x[1] == LLO[1] and np.all(np.abs(x[2:]) < 1.0)
  assert np.abs(res.jac[:2]).min() > 1e-2 and np.abs(res.jac[2:]).max() <= 1e-10


def test_logistic_grad_matches_finite_differences():
  grads = GRAD(*PRIMALS)
  directions = [np.ones(()), np.random.default_rng(2).normal(size=LX.shape), np.array([1.0, 1.0, -1.0, 0.5]),
                np.array([1.0, -1.0, 1.0, 0.5])]
  h = 1e-5
  for i, (g, d) in enumerate(zip(grads, directions)):
    assert abs(float(jnp.sum(g * d))) > 1e-3
    plus = [p + h * d if j == i else p for j, p in enumerate(PRIMALS)]
    minus = [p - h * d if j == i else p for j, p in enumerate(PRIMALS)]
    fd = (logistic_outcome(*plus) - logistic_outcome(*minus)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(g * d), fd, rtol=1e-5, err_msg=f"argument {i}")


def test_logistic_jvp_agrees_with_grad():
  rng = np.random.default_rng(3)
  tangents = tuple(jnp.asarray(rng.normal(size=np.shape(p))) for p in PRIMALS)
  _, jvp = _jit(lambda t: jax.jvp(logistic_outcome, PRIMALS, t))(tangents)
  np.testing.assert_allclose(jvp, sum(jnp.sum(g * t) for g, t in zip(GRAD(*PRIMALS), tangents)), rtol=1e-10)


def test_jac_true_differentiates_the_supplied_gradient():
  def supplied(lam, data, lo, hi):
    fun = jax.value_and_grad(logistic)
    return outcome(minimize(fun, jnp.zeros(4), bounds=(lo, hi), args=(lam, data), jac=True, **TIGHT))

  for got, want in zip(_jit(jax.grad(supplied, argnums=(0, 1, 2, 3)))(*PRIMALS), GRAD(*PRIMALS)):
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_closed_over_array_gets_its_gradient():
  def closing(lam, data):
    return outcome(minimize(lambda w: logistic(w, lam, data), jnp.zeros(4), bounds=(LLO, LHI), **TIGHT))

  got, want = _jit(jax.grad(closing, argnums=(0, 1)))(*PRIMALS[:2]), GRAD(*PRIMALS)
  assert np.abs(got[1]).max() > 1e-2
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


def test_closed_over_integer_and_batched_values_under_vmap_and_jit():
  # Integers and vmapped values that fun closes over stay out of the lazily
  # traced derivative rule too.
  def closing(lam, k):
    fun = lambda w: logistic(w, lam, LX) + 0.0 * k * w[0]  # noqa: E731
    return outcome(minimize(fun, jnp.zeros(4), bounds=(LLO, LHI), **TIGHT))

  lams = jnp.array([0.02, 0.04, 0.08])
  got = _jit(jax.vmap(jax.grad(closing), in_axes=(0, 0)))(lams, jnp.array([1, 2, 3]))
  np.testing.assert_allclose(got, [GRAD(lam, *PRIMALS[1:])[0] for lam in lams], rtol=1e-9)


@pytest.mark.rounding
def test_vmap_of_grad_equals_single_grads():
  lams = jnp.array([0.02, 0.04, 0.08])
  batched = _jit(jax.vmap(grad_outcome, in_axes=(0, None, None, None)))(lams, *PRIMALS[1:])
  for i, lam in enumerate(lams):
    for b, s in zip(batched, GRAD(lam, *PRIMALS[1:])):
      np.testing.assert_allclose(b[i], s, rtol=1e-9, atol=1e-12)


def test_start_point_gets_no_derivative():
  def from_start(lam):
    return outcome(minimize(logistic, jnp.full(4, lam), bounds=(LLO, LHI), args=PRIMALS[:2], **TIGHT))

  assert float(_jit(jax.grad(from_start))(0.1)) == 0.0


# ---------------------------------------------------------------- no bounds: against unrolled Newton


@pytest.mark.rounding
def test_unbounded_matches_unrolled_newton():
  weights = jnp.array([1.0, -2.0, 0.5, 3.0])

  def newton(lam, data):
    def step(_, w):
      return w - jnp.linalg.solve(jax.hessian(logistic)(w, lam, data), jax.grad(logistic)(w, lam, data))

    return jnp.sin(jax.lax.fori_loop(0, 30, step, jnp.zeros(4))) @ weights

  def implicit(lam, data):
    return jnp.sin(minimize(logistic, jnp.zeros(4), args=(lam, data), **TIGHT).x) @ weights

  lam = jnp.asarray(0.1, jnp.float64)  # the type of PRIMALS[0]: the eager solve is the one compiled above
  # The solve stops where the gradient is below gtol, not at the minimizer:
  # it is off by the Newton step -H^-1 g there, which moves sin(x) @ weights by
  # at most |weights|_1 |H^-1 g|_inf (plus rounding).
  x = minimize(logistic, jnp.zeros(4), args=(lam, LX), **TIGHT).x
  newton_step = np.linalg.solve(jax.hessian(logistic)(x, lam, LX), jax.grad(logistic)(x, lam, LX))
  tol = 2.0 * np.abs(weights).sum() * np.abs(newton_step).max() + 64 * np.finfo(np.float64).eps
  np.testing.assert_allclose(implicit(lam, LX), newton(lam, LX), rtol=0, atol=tol)
  got = _jit(jax.grad(implicit, argnums=(0, 1)))(lam, LX)
  for g, w in zip(got, jax.grad(newton, argnums=(0, 1))(lam, LX)):
    np.testing.assert_allclose(g, w, rtol=1e-7, atol=1e-10)


# ---------------------------------------------------------------- where the assumptions fail


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_solve_that_did_not_converge_has_nan_derivatives(dtype):
  lam, data, lo, hi = (jnp.asarray(p, dtype) for p in PRIMALS)

  def stopped(lam, maxiter):
    res = minimize(logistic, jnp.zeros(4, dtype), bounds=(lo, hi), args=(lam, data), maxiter=maxiter)
    return outcome(res), res.termination

  @_jit
  def derivatives(lam, maxiter):
    (_, code), grad = jax.value_and_grad(stopped, has_aux=True)(lam, maxiter)
    _, tangent = jax.jvp(lambda t: stopped(t, maxiter)[0], (lam,), (jnp.ones((), dtype),))
    return code, grad, tangent

  code, grad, tangent = derivatives(lam, 2)  # MAXITER, far from a solution
  assert int(code) == 2 and np.isnan(float(grad)) and np.isnan(float(tangent))
  code, grad, tangent = derivatives(lam, 100)
  assert int(code) == 0 and np.isfinite(float(grad)) and float(grad) == pytest.approx(float(tangent), rel=1e-4)


# Multinomial logistic regression with one intercept per class and the l2
# penalty on the weights only: f is invariant to adding one constant to every
# intercept, so the free Hessian is singular along (0_W, 1_b). The forward
# right-hand side is orthogonal to that direction, a reverse cotangent is not.
_rng = np.random.default_rng(4)
MX = _rng.normal(size=(30, 4))
MY = np.eye(3)[_rng.integers(0, 3, 30)]


def multinomial(p, lam):
  z = MX.astype(lam.dtype) @ p["W"] + p["b"][None, :]
  return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(MY.astype(lam.dtype) * z, axis=1)) + 0.5 * lam * jnp.sum(p["W"] ** 2)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_singular_free_hessian_gives_the_minimum_norm_derivative(dtype):
  lam = jnp.asarray(0.1, dtype)
  p0 = {"W": jnp.zeros((4, 3), dtype), "b": jnp.zeros(3, dtype)}

  def intercepts(lam):
    return minimize(multinomial, p0, args=(lam,)).x["b"]

  # Reverse mode is the hard case (its right-hand side has a part in the null
  # space); forward mode is checked in float64 only, to keep one compile each.
  modes = (jax.jacrev,) if dtype == jnp.float32 else (jax.jacfwd, jax.jacrev)
  x, *got = _jit(lambda t: (minimize(multinomial, p0, args=(t,)).x, *(mode(intercepts)(t) for mode in modes)))(lam)
  # The closed form, -pinv(H) d_lam g at the solution, in float64.
  flat, unravel = jax.flatten_util.ravel_pytree(jax.tree.map(lambda a: a.astype(jnp.float64), x))
  grad = lambda v, t: jax.flatten_util.ravel_pytree(jax.grad(multinomial)(unravel(v), t))[0]  # noqa: E731
  t = jnp.asarray(0.1, jnp.float64)
  hessian = np.asarray(jax.jacfwd(grad)(flat, t))
  assert np.linalg.matrix_rank(hessian, tol=1e-8) == flat.size - 1
  want = -np.linalg.pinv(hessian, rcond=1e-10) @ np.asarray(jax.jacfwd(grad, argnums=1)(flat, t))
  tol = dict(rtol=2e-3, atol=2e-4) if dtype == jnp.float32 else dict(rtol=1e-6, atol=1e-9)
  for jac in got:
    assert jac.dtype == dtype
    np.testing.assert_allclose(jac, want[-3:], **tol)
  np.testing.assert_allclose(np.sum(want[-3:]), 0.0, atol=1e-12)  # no part along (1, 1, 1)


def test_the_free_solve_detects_failure_and_falls_back_to_least_squares():
  from jax_lbfgsb._implicit import _cg, _solve_free

  a = np.diag([4.0, 1.0, 0.0])  # singular; b has a part in its null space
  b = jnp.array([2.0, 3.0, 5.0])
  x, converged = jax.jit(lambda b: _cg(lambda v: jnp.asarray(a) @ v, b))(b)
  assert not bool(converged)
  np.testing.assert_allclose(_solve_free(lambda v: jnp.asarray(a) @ v, b), [0.5, 3.0, 0.0], rtol=1e-12)
  indefinite = np.diag([2.0, -1.0])  # CG breaks down on p'Hp < 0; the least-squares solve finds H^-1 b
  np.testing.assert_allclose(_solve_free(lambda v: jnp.asarray(indefinite) @ v, jnp.array([1.0, 1.0])),
                             [0.5, -1.0], rtol=1e-12)
  assert np.all(np.isnan(_solve_free(lambda v: jnp.nan * v, b)))  # neither converges: NaN
