"""SciPy's calls run unchanged: minimize's signature and options, inputs, results, fmin_l_bfgs_b.

Each behaviour is checked side by side with SciPy's L-BFGS-B on the same call.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lbfgsb import RECORDS, Outcome, Termination, fmin_l_bfgs_b, minimize, problems
from jax_lbfgsb import _inputs, report
from jax_lbfgsb._status import codes

scipy_optimize = pytest.importorskip("scipy.optimize")

X0 = [-1.2, 1.0, -1.2, 1.0, 0.5]
BOUNDS = [(-1.5, 0.8)] * 5


def rosen(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosen_fg(x, a=1.0):
  f = jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (a - x[:-1]) ** 2)
  return f, jax.grad(lambda y: jnp.sum(100.0 * (y[1:] - y[:-1] ** 2) ** 2 + (a - y[:-1]) ** 2))(x)


def _same(ours, ref, rtol=1e-8):
  assert int(ours.nit) == ref.nit and int(ours.nfev) == ref.nfev, (ours.nit, ref.nit, ours.nfev, ref.nfev)
  assert ours.message == ref.message and int(ours.status) == ref.status and bool(ours.success) == ref.success
  np.testing.assert_allclose(np.asarray(ours.x), ref.x, rtol=rtol, atol=rtol)


# ---------------------------------------------------------------- the SciPy call


@pytest.mark.rounding
def test_scipy_call_runs_unchanged_with_options_and_legacy_callback():
  seen = {"scipy": [], "ours": []}
  results = {}
  for name, solver in (("scipy", scipy_optimize.minimize), ("ours", minimize)):
    def cb(xk, name=name):  # SciPy's legacy callback(xk): a copy of x
      seen[name].append(np.array(xk))
    results[name] = solver(rosen_fg, X0, (0.9,), "L-BFGS-B", True, None, None, BOUNDS, (), None, cb,
                           {"maxcor": 5, "ftol": 1e-12, "gtol": 1e-7, "maxls": 20, "eps": 1e-8})
  _same(results["ours"], results["scipy"])
  assert len(seen["ours"]) == len(seen["scipy"]) == results["scipy"].nit
  np.testing.assert_allclose(np.stack(seen["ours"]), np.stack(seen["scipy"]), rtol=1e-8, atol=1e-8)


@pytest.mark.rounding
def test_tol_scalar_bounds_and_a_gradient_function():
  lb = scipy_optimize.Bounds(-1.5, 0.8)  # 0-d bounds broadcast over x0
  grad = lambda x, a: rosen_fg(x, a)[1]  # noqa: E731
  value = lambda x, a: rosen_fg(x, a)[0]  # noqa: E731
  ref = scipy_optimize.minimize(value, X0, args=0.9, jac=grad, bounds=lb, tol=1e-10, method="l-bfgs-b")
  ours = minimize(value, X0, args=0.9, jac=grad, bounds=lb, tol=1e-10, method="l-bfgs-b")
  _same(ours, ref)
  # tol is the default of ftol and gtol, as in SciPy: the same as passing both.
  both = minimize(value, X0, args=0.9, jac=grad, bounds=lb, options={"ftol": 1e-10, "gtol": 1e-10})
  assert int(both.nit) == int(ours.nit) and np.array_equal(np.asarray(both.x), np.asarray(ours.x))


def test_options_are_the_keywords():
  a = minimize(rosen, jnp.asarray(X0), options={"maxcor": 3, "maxiter": 4, "finite_diff_rel_step": 1e-3})
  b = minimize(rosen, jnp.asarray(X0), maxcor=3, maxiter=4)
  assert int(a.nit) == int(b.nit) == 4 and np.array_equal(np.asarray(a.x), np.asarray(b.x))
  assert a.message == "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT" and int(a.status) == 1


@pytest.mark.parametrize("call, error, match", [
    (dict(method="BFGS"), ValueError, r"method='BFGS' is not available.*L-BFGS-B only"),
    (dict(hess=lambda x: x), ValueError, "takes no hess"),
    (dict(hessp=lambda x, p: p), ValueError, "takes no hessp"),
    (dict(constraints=[{"type": "eq", "fun": jnp.sum}]), ValueError, "bounds only, not constraints"),
    (dict(jac="exact"), ValueError, r"jac='exact' is not understood"),
    (dict(options={"maxcorr": 3}), TypeError, r"unknown option\(s\) `maxcorr` \(did you mean `maxcor`\?\)"),
    (dict(history_size=3), TypeError, r"`history_size` \(did you mean `maxcor`\?\)"),
    (dict(maxcor=4, options={"maxcor": 3}), TypeError, "maxcor both as a keyword"),
])
def test_unsupported_calls_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    minimize(rosen, jnp.asarray(X0), **call)


@pytest.mark.rounding
@pytest.mark.parametrize("options", [{"maxiter": 100.1}, {"maxiter": 2.5}, {"maxfun": 5.5}])
def test_fractional_limits_count_as_in_scipy(options):
  # SciPy's gh-23430 test passes maxiter=100.1; its counts compare with the
  # limit as given: nit >= 2.5 stops at 3 iterations, nfev > 5.5 after 6 evaluations.
  x0 = np.array([1.3, 0.7, 0.8, 1.9, 1.2])
  ref = scipy_optimize.minimize(scipy_optimize.rosen, x0, method="L-BFGS-B", jac=jax.grad(rosen), options=options)
  _same(minimize(rosen, x0, options=options), ref)
  ours = fmin_l_bfgs_b(rosen, x0, approx_grad=1, **options)[2]
  assert (ours["nit"], ours["funcalls"]) == (ref.nit, ref.nfev)


def test_fractional_limits_in_every_face_and_traced():
  from jax_lbfgsb import LBFGSB
  from jax_lbfgsb.optax import lbfgsb

  x0 = jnp.asarray(X0)
  nit = lambda maxiter: minimize(rosen, x0, maxiter=maxiter).nit  # noqa: E731
  np.testing.assert_array_equal(jax.jit(nit)(2.5), 3)
  np.testing.assert_array_equal(jax.vmap(nit)(jnp.array([2.0, 2.5, 3.0])), [2, 3, 3])
  assert int(minimize(rosen, x0, maxiter=np.inf).termination) != Termination.MAXITER
  assert int(LBFGSB(fun=rosen, maxiter=2.5).run(x0).state.iter_num) == 3

  def evaluations(maxls):  # minimize, LBFGSB and 8 optax updates; SciPy's C takes no float maxls
    opt, params = lbfgsb(maxls=maxls), x0
    state = opt.init(params)
    for _ in range(8):
      value, grad = jax.value_and_grad(rosen)(params)
      updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=rosen)
      params = params + updates
    return (int(minimize(rosen, x0, maxls=maxls).nfev), int(LBFGSB(fun=rosen, maxls=maxls).run(x0).state.num_fun_eval),
            int(state.solver.nfev))

  assert evaluations(1.5) == evaluations(2) != evaluations(1)  # counted as nls >= maxls: ceil


# ---------------------------------------------------------------- inputs


def test_lists_and_integers_become_float64():
  res = minimize(rosen, [2, 2, 2, 2, 2], bounds=(-3, 3))
  ref = scipy_optimize.minimize(rosen, [2, 2, 2, 2, 2], jac=jax.grad(rosen), method="L-BFGS-B",
                                bounds=[(-3, 3)] * 5)
  assert res.x.dtype == jnp.float64 and int(res.nit) == ref.nit
  np.testing.assert_allclose(np.asarray(res.x), ref.x, rtol=1e-8, atol=1e-8)
  with pytest.raises(TypeError, match=r"x0 must be real .*complex"):
    minimize(rosen, jnp.zeros(4, jnp.complex64))


def test_one_input_layer_for_minimize_and_optax():
  from jax_lbfgsb.optax import lbfgsb

  mixed = {"a": jnp.zeros(2, jnp.float32), "b": jnp.zeros(2, jnp.float64)}
  for call in (lambda: minimize(lambda p: jnp.sum(p["a"] ** 2), mixed), lambda: lbfgsb().init(mixed)):
    with pytest.raises(TypeError, match=r"leaves of dtypes \['float32', 'float64'\]; L-BFGS-B solves in one"):
      call()
  tree, dtype = _inputs.prepare_x0({"a": jnp.zeros(2, jnp.float32), "n": np.arange(2)})
  assert dtype == jnp.float32 and tree["n"].dtype == jnp.float32  # integers join the float leaves
  assert not jnp.full(3, 0.5).astype(jnp.float64).weak_type
  assert not _inputs.prepare_x0(jnp.asarray(0.5))[0].weak_type  # no recompile per weak type


def test_float32_without_x64_warns_once(monkeypatch):
  monkeypatch.setattr(_inputs, "_warned_x64", False)
  with jax.enable_x64(False):
    with pytest.warns(UserWarning, match="jax_enable_x64"):
      x0, dtype = _inputs.prepare_x0([1, 2, 3])
    assert dtype == jnp.float32 and x0.dtype == jnp.float32
    with warnings.catch_warnings():
      warnings.simplefilter("error")  # once per process
      assert _inputs.prepare_x0(np.ones(3))[1] == jnp.float32


def test_stop_iteration_and_intermediate_result_callbacks_as_scipy():
  calls = []

  def stop(intermediate_result):  # SciPy's gives x and fun
    calls.append(intermediate_result.fun)
    if len(calls) % 2 == 0:
      raise StopIteration
    return True  # ignored, as by SciPy

  ref = scipy_optimize.minimize(rosen_fg, X0, jac=True, method="L-BFGS-B", callback=stop)
  ours = minimize(rosen_fg, X0, jac=True, callback=stop)
  assert ref.status == 99 and ref.message == "`callback` raised `StopIteration`."
  _same(ours, ref)
  assert int(ours.termination) == Termination.CALLBACK_HALT and "StopIteration" in ours.cause


# ---------------------------------------------------------------- status records


def test_all_fixed_variables_say_so_as_scipy():
  bounds = [(0.5, 0.5)] * 5
  ref = scipy_optimize.minimize(rosen_fg, X0, jac=True, method="L-BFGS-B", bounds=bounds)
  ours = minimize(rosen_fg, X0, jac=True, bounds=bounds)
  assert ours.message == ref.message == "All independent variables were fixed by bounds."
  assert int(ours.status) == 0 and bool(ours.success) and int(ours.nit) == 0
  assert float(ours.fun) == ref.fun and np.array_equal(np.asarray(ours.x), ref.x)


def test_a_wrong_gradient_gives_scipys_message_and_our_cause():
  def bad_fg(x):  # the gradient of -f
    f, g = rosen_fg(x)
    return f, -g

  ref = scipy_optimize.minimize(bad_fg, X0, jac=True, method="L-BFGS-B")
  ours = minimize(bad_fg, X0, jac=True)
  assert ours.message == ref.message == "ABNORMAL: " and int(ours.status) == ref.status == 2
  assert "check_grads" in ours.cause and "ABNORMAL" not in ours.cause


def test_one_record_per_code():
  assert set(RECORDS) == set(Termination)
  for code, record in RECORDS.items():
    assert record.status in (0, 1, 2, 99) and record.warnflag in (0, 1, 2), code
    assert (record.status == 0) == (record.warnflag == 0), code
    assert record.message and record.task and (record.cause or code == Termination.RUNNING), code
    assert code.message == record.message and str(code) == code.name
    # The classification everything else reads (implicit derivatives, jaxopt's
    # failed_linesearch, iprint, report): consistent with SciPy's status.
    assert (record.outcome is Outcome.CONVERGED) == (record.status == 0), code
    assert (record.outcome is Outcome.LIMIT) == (record.status == 1) == bool(record.limit), code
    assert (record.outcome is Outcome.USER_HALT) == (record.status == 99), code
    assert bool(record.iprint) == (record.message == "ABNORMAL: "), code
    assert not record.diagnosis or record.diagnosis in report._DIAGNOSES, code
  assert set(codes(solved=True)) == {*codes(outcome=Outcome.CONVERGED), Termination.PRECISION_LIMIT}
  assert set(codes(outcome=Outcome.LINE_SEARCH_FAILED)) | set(codes(outcome=Outcome.NONFINITE)) == {
      code for code, record in RECORDS.items() if record.message == "ABNORMAL: "}
  # SciPy's exact texts (scipy/optimize/_lbfgsb_py.py task_messages).
  assert RECORDS[Termination.CONVERGED_FTOL].message == "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"
  assert RECORDS[Termination.MAXFUN].message == "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"


# ---------------------------------------------------------------- the result


def test_result_reads_like_scipys():
  # n = 10: above the repr's elision threshold (8), below the sorted Cauchy walk's
  # (SORT_AFTER = 32), whose larger program takes longer to compile.
  res = minimize(rosen, jnp.full(10, 0.5), bounds=(-1.5, 0.8), maxiter=3)
  ref = scipy_optimize.minimize(rosen, np.full(10, 0.5), jac=jax.grad(rosen), method="L-BFGS-B",
                                bounds=[(-1.5, 0.8)] * 10, options={"maxiter": 3})
  assert set(ref.keys()) <= set(res.keys())
  for key in ref.keys():
    assert res[key] is getattr(res, key)
  with pytest.raises(KeyError):
    res["nope"]
  text = repr(res)
  assert len(text.splitlines()) <= 16, text
  assert "message: STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT" in text and "termination: MAXITER" in text
  assert "cause: The solve ran maxiter iterations" in text and "..." in text  # x elided
  assert "<10x10 InverseHessian with dtype=float64>" in text


def test_hess_inv_is_a_linear_operator():
  res = minimize(rosen, jnp.asarray(X0), maxiter=6)
  h = res.hess_inv
  dense = np.asarray(h.todense())
  v = np.linspace(-1.0, 1.0, 5)
  vk = np.stack([v, v ** 2, -v], axis=1)
  tol = dict(rtol=1e-10, atol=1e-12)
  assert h.shape == (5, 5) and h.dtype == jnp.float64
  for out in (h(v), h @ v, h.matvec(v), h.dot(v), h.rmatvec(v), h.T @ v):
    np.testing.assert_allclose(out, dense @ v, **tol)
  assert h.matvec(v[:, None]).shape == (5, 1)
  np.testing.assert_allclose(h.matvec(v[:, None])[:, 0], dense @ v, **tol)
  np.testing.assert_allclose(h.matmat(vk), dense @ vk, **tol)
  np.testing.assert_allclose(h @ vk, dense @ vk, **tol)
  np.testing.assert_allclose(dense, dense.T, **tol)
  with pytest.raises(ValueError, match=r"shape \(5,\) or \(5, k\)"):
    h @ np.ones(4)


def _with_aux(x, a):
  return rosen(x) * a, {"norm": jnp.linalg.norm(x), "twice": 2.0 * x}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_has_aux_returns_aux_at_the_solution_under_jit_and_vmap(dtype):
  x0 = jnp.asarray(X0, dtype)
  batch = jax.jit(jax.vmap(lambda x, a: minimize(_with_aux, x, args=(a,), has_aux=True, bounds=(-1.5, 0.8))))(
      jnp.stack([x0, 0.5 * x0]), jnp.asarray([1.5, 2.0], dtype))
  assert batch.aux["norm"].dtype == dtype and bool(jnp.all(batch.success))
  np.testing.assert_allclose(batch.aux["norm"], np.linalg.norm(np.asarray(batch.x), axis=1), rtol=1e-5)
  np.testing.assert_array_equal(batch.aux["twice"], 2.0 * np.asarray(batch.x))


def test_has_aux_with_a_returned_gradient():
  def fun_fg(x, a):  # with jac=True: ((f, aux), grad)
    return jax.value_and_grad(_with_aux, has_aux=True)(x, a)

  res = minimize(fun_fg, jnp.asarray(X0), args=(1.5,), jac=True, has_aux=True, bounds=(-1.5, 0.8))
  assert bool(res.success)
  np.testing.assert_array_equal(res.aux["twice"], 2.0 * np.asarray(res.x))
  with pytest.raises(TypeError, match=r"fun must return \(f, aux\)"):
    minimize(rosen, jnp.asarray(X0), has_aux=True)


# ---------------------------------------------------------------- fmin_l_bfgs_b


@pytest.mark.rounding
@pytest.mark.parametrize("form", ["fprime", "pair", "approx_grad"])
def test_fmin_l_bfgs_b_matches_scipy(form):
  value = lambda x, a: rosen_fg(x, a)[0]  # noqa: E731
  grad = lambda x, a: rosen_fg(x, a)[1]  # noqa: E731
  kwargs = dict(args=(0.9,), bounds=BOUNDS, m=5, factr=10.0, pgtol=1e-8)
  # SciPy's approx_grad uses finite differences; ours is exact, so SciPy is
  # given the exact gradient for the comparison.
  ref = scipy_optimize.fmin_l_bfgs_b(value, X0, fprime=grad, **kwargs)
  if form == "fprime":
    ours = fmin_l_bfgs_b(value, X0, fprime=grad, **kwargs)
  elif form == "pair":
    ours = fmin_l_bfgs_b(rosen_fg, X0, **kwargs)
  else:
    ours = fmin_l_bfgs_b(value, X0, approx_grad=1, **kwargs)
  (x, f, d), (x_ref, f_ref, d_ref) = ours, ref
  assert isinstance(x, np.ndarray) and isinstance(f, float)
  assert {"grad", "task", "funcalls", "nit", "warnflag"} <= set(d)
  for key in ("task", "funcalls", "nit", "warnflag"):
    assert d[key] == d_ref[key], (key, d[key], d_ref[key])
  np.testing.assert_allclose(x, x_ref, rtol=1e-8, atol=1e-8)
  np.testing.assert_allclose(d["grad"], d_ref["grad"], rtol=1e-5, atol=1e-7)
  assert f == pytest.approx(f_ref, rel=1e-10)


def test_seed_story_change_the_import_keep_the_call():
  """784 pixels in [0, 255], the frame fixed by (0, 0): SciPy's finite differences cannot
  step inside a fixed pixel's box (0/0: a NaN gradient), so its solve ends at iteration 0;
  the same call here takes the exact gradient and maximizes the unit."""
  p = problems.neuron_input()
  bounds = list(zip(p.lower, p.upper))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # SciPy's 0/0
    x_ref, f_ref, d_ref = scipy_optimize.fmin_l_bfgs_b(p.fun, p.x0, approx_grad=1, bounds=bounds)
  assert d_ref["nit"] == 0 and d_ref["warnflag"] == 2
  x, f, d = fmin_l_bfgs_b(p.fun, p.x0, approx_grad=1, bounds=bounds)
  assert d["nit"] > 0 and d["warnflag"] == 0 and f < f_ref - 1.0
  assert np.all((x >= p.lower) & (x <= p.upper)) and np.all(x[p.lower == p.upper] == 0.0)
