"""The problems on which jax_lbfgsb must follow SciPy's L-BFGS-B, and SciPy's run on each.

Shared by ``tests/test_vs_scipy.py`` (assertions) and ``benchmarks/parity.py``
(the table for notes and RESULTS).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from jax_lbfgsb import problems


def _with_bounds(p, lower, upper):
  n = p.x0.size
  return p._replace(lower=np.broadcast_to(np.asarray(lower, float), (n,)).copy(),
                    upper=np.broadcast_to(np.asarray(upper, float), (n,)).copy())


def _fixed_rosenbrock():
  p = _with_bounds(problems.rosenbrock(6), -2.0, 2.0)
  p.lower[2] = p.upper[2] = 0.5  # l == u: permanently fixed
  return p


def _wood_fixed():
  p = problems.wood()
  lower, upper = np.full(4, -np.inf), np.full(4, np.inf)
  lower[1] = upper[1] = -1.0
  return p._replace(lower=lower, upper=upper)


def _at_bound_quadratic():
  # Starts with x[0], x[1] on their lower bound (gradient pointing in and out)
  # and x[4] on its upper bound.
  rng = np.random.default_rng(3)
  a = rng.standard_normal((8, 8))
  a = a @ a.T + 0.5 * np.eye(8)
  b = rng.standard_normal(8) * 3.0
  a_j, b_j = jnp.asarray(a), jnp.asarray(b)

  def fun(x):
    return 0.5 * x @ (a_j.astype(x.dtype) @ x) - b_j.astype(x.dtype) @ x

  x0 = np.array([0.0, 0.0, 0.3, -0.2, 1.0, 0.1, 0.5, -0.5])
  return problems.Problem("at_bound_quadratic", fun, x0, np.full(8, 0.0) - np.r_[0, 0, 1, 1, 1, 1, 1, 1],
                          np.full(8, 1.0), None, "quadratic starting on bounds")


# (id, problem factory, maxcor, exact (nit, nfev) required, or None)
CASES = [
    ("rosenbrock2", lambda: problems.rosenbrock(2), 10, (36, 44)),
    ("rosenbrock10_box", lambda: problems.rosenbrock(10, lower=-1.5, upper=0.8), 10, (32, 39)),
    ("driver1", lambda: problems.driver1(25), 5, (23, 28)),
    ("rosenbrock10", lambda: problems.rosenbrock(10), 10, None),
    ("helical_valley", problems.helical_valley, 10, None),
    ("beale_box", lambda: _with_bounds(problems.beale(), -2.0, 2.8), 10, None),
    ("powell_singular_box", lambda: _with_bounds(problems.extended_powell(4), 0.1, 10.0), 10, None),
    ("wood_fixed", _wood_fixed, 10, None),
    ("rosenbrock_fixed", _fixed_rosenbrock, 3, None),
    ("at_bound_quadratic", _at_bound_quadratic, 4, None),
    ("nnls", lambda: problems.nnls(20, 10, seed=1), 10, None),
    ("ept8x8", lambda: problems.ept(8, 8), 5, None),
    ("pjb8x8", lambda: problems.pjb(8, 8), 5, None),
    ("gaussian", problems.gaussian, 10, None),
]


@functools.lru_cache(maxsize=None)
def scipy_run(case_id):
  """SciPy's solve of a case: ``(problem, OptimizeResult, [x_1, x_2, ...])`` (cached)."""
  _, make, maxcor, _ = next(c for c in CASES if c[0] == case_id)
  p = make()
  value_and_grad = jax.jit(jax.value_and_grad(p.fun))

  def fg(x):
    f, g = value_and_grad(jnp.asarray(x))
    return float(f), np.asarray(g, dtype=np.float64)

  iterates = []
  bounds = list(zip(p.lower, p.upper))
  res = scipy.optimize.minimize(
      fg, p.x0, jac=True, method="L-BFGS-B", bounds=bounds, options=dict(maxcor=maxcor),
      callback=lambda intermediate_result: iterates.append(np.copy(intermediate_result.x)),
  )
  return p, res, iterates
