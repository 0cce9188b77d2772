"""SciPy's L-BFGS-B is the oracle: same iterates, counts and termination in float64."""

import jax.numpy as jnp
import numpy as np
import pytest
from parity_cases import CASES, scipy_run

from jax_lbfgsb import minimize

pytestmark = pytest.mark.rounding  # every test here compares rounding-sensitive paths with SciPy

# The first iterates agree to rounding: each is the same arithmetic as SciPy's
# scipy/optimize/src/lbfgsb.c (mainlb: cauchy, subsm, lnsrlb/dcsrch, matupd); 1e-10 leaves room
# for XLA's and BLAS's different summation orders (and fused multiply-adds).
ITERATE_RTOL = 1e-10
N_ITERATES = 10


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_iterates_and_termination_match_scipy(case):
  case_id, _, maxcor, exact = case
  p, ref, iterates = scipy_run(case_id)
  x0, lower, upper = jnp.asarray(p.x0), jnp.asarray(p.lower), jnp.asarray(p.upper)

  res = minimize(p.fun, x0, bounds=(lower, upper), maxcor=maxcor)
  assert res.message == ref.message, (res.message, ref.message)
  assert int(res.status) == ref.status
  np.testing.assert_allclose(float(res.fun), ref.fun, rtol=1e-8, atol=1e-12)
  if exact is not None:
    assert (int(res.nit), int(res.nfev)) == (ref.nit, ref.nfev) == exact

  # The k-th iterate: stop after k iterations (maxiter is traced: no recompile).
  for k, x_ref in enumerate(iterates[:N_ITERATES], start=1):
    res_k = minimize(p.fun, x0, bounds=(lower, upper), maxcor=maxcor, maxiter=k)
    x_k = np.asarray(res_k.x)
    scale = np.maximum(np.max(np.abs(x_ref)), 1e-300)
    assert np.max(np.abs(x_k - x_ref)) <= ITERATE_RTOL * scale, (k, x_k, x_ref)
