"""report, diagnose and timed_minimize: every cause of an early stop, on real solves.

Compiles are the cost here (a few seconds per objective), so the tests share
three objectives: the bounded Rosenbrock of the README (with the CLI's history
length, so tests/test_cli.py reuses the compiled solve), ``family`` below with
its scale and offset passed as traced ``args``, and the neuron-input problem.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lbfgsb import Termination, minimize, problems
from jax_lbfgsb.report import Timing, diagnose, report, timed_minimize

BOX = problems.rosenbrock_box()
HISTORY = 1000  # jax_lbfgsb.cli._history_length(10)
ROSEN = problems.rosenbrock(2).fun


def family(x, scale, offset):
  """``scale * rosen(x) + offset``: one compile for tiny, offset, overflowing and plain f."""
  return scale * ROSEN(x) + offset


def solve_family(x0, scale=1.0, offset=0.0, dtype=jnp.float64, **kwargs):
  args = (jnp.asarray(scale, dtype), jnp.asarray(offset, dtype))
  return minimize(family, jnp.asarray(x0, dtype), args=args, **kwargs)


def solve_box(**kwargs):
  kwargs.setdefault("bounds", (BOX.lower, BOX.upper))
  return minimize(BOX.fun, jnp.asarray(BOX.x0), history=HISTORY, **kwargs)


@pytest.fixture(scope="module")
def neuron():
  """The seed story: the saturated (dead-unit) start and the active start share one compile."""
  dead, alive = problems.neuron_input(saturate=True), problems.neuron_input()
  assert dead.fun == alive.fun
  solve = lambda p: minimize(p.fun, jnp.asarray(p.x0), bounds=(p.lower, p.upper))
  return dead, solve(dead), alive, solve(alive)


def test_timed_minimize_and_report():
  result, timing = timed_minimize(BOX.fun, jnp.asarray(BOX.x0), bounds=(BOX.lower, BOX.upper), history=HISTORY)
  assert isinstance(timing, Timing)
  # No timing relations: another test may have compiled this solve already.
  assert timing.wall > 0 and timing.first_wall > 0 and timing.cpu >= 0 and timing.first_cpu >= 0
  assert timing.compile == max(timing.first_wall - timing.wall, 0.0)
  text = report(result, problem=BOX, timing=timing)
  lines = text.splitlines()
  assert lines[0] == "problem     rosenbrock_10_box: chained Rosenbrock, n=10, box bounds"
  assert lines[1] == "termination CONVERGED_FTOL (status 0, success)"
  assert f"nit         {int(result.nit)}" in lines and f"nfev        {int(result.nfev)}" in lines
  assert "message     CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH" in lines
  assert "cause       The last iteration reduced f by at most ftol" in text
  assert f"f           {float(result.fun):.12e}   (known f* = 6.00101639461" in text
  assert "compile ~" in text and "CPU" in text
  assert "1 at an upper bound, 0 fixed" in text
  x, g = np.asarray(result.x), np.asarray(result.jac)
  for i in range(10):  # every x(i) and g(i), no elision at n = 10
    row = [line for line in lines if line.split()[:1] == [str(i + 1)]]
    assert row and f"{x[i]:.10e}" in row[0] and f"{g[i]:.4e}" in row[0]
  assert "x0 was outside the bounds in 5 variables (x(2), x(4), x(6), x(8), x(10))" in text


def test_report_takes_bounds_or_problem_not_both():
  result = solve_box(maxiter=3)
  text = report(result, bounds=(BOX.lower, BOX.upper), names=[f"w{i}" for i in range(10)], max_rows=4)
  assert "termination MAXITER (status 1, no success)" in text and "problem" not in text
  assert "(6 variables not shown; max_rows=4)" in text and "w9" in text and "w4" not in text
  with pytest.raises(ValueError, match="not both"):
    report(result, problem=BOX, bounds=(0.0, 1.0))
  with pytest.raises(ValueError, match="expected 10 names"):
    report(result, problem=BOX, names=["a"])


def test_limits():
  notes = diagnose(solve_box(maxiter=3), BOX.lower, BOX.upper)
  assert len(notes) == 1 and notes[0].startswith("The solve reached maxiter after 3 iterations")
  assert "minimize(fun, result, ...) resumes" in notes[0]
  result = solve_box(maxfun=5)
  assert int(result.termination) == Termination.MAXFUN
  assert diagnose(result, -1.5, 0.8)[0].startswith(f"The solve reached maxfun after {int(result.nfev)} evaluations")


def test_every_variable_fixed():
  result = solve_box(bounds=(BOX.x0, BOX.x0))
  assert int(result.nit) == 0
  assert diagnose(result, BOX.x0, BOX.x0) == [
      "All 10 variables are fixed by their bounds (lower == upper), so there is nothing to minimize:"
      " the projected gradient is 0 by definition and x is x0 projected onto the bounds. Widen the"
      " bounds of the variables you want to optimize."
  ]


def test_free_variables_blocked_by_the_box():
  # At (1, 1.5) the gradient of Rosenbrock is (-200, 100): x(1) <= 1 and x(2) >= 1.5 block both.
  lower, upper = np.array([-np.inf, 1.5]), np.array([1.0, np.inf])
  result = solve_family([1.0, 1.5], bounds=(lower, upper))
  assert int(result.nit) == 0 and int(result.termination) == Termination.CONVERGED_PGTOL
  notes = diagnose(result, lower, upper)
  assert notes[0].startswith("The solve stopped at iteration 0") and "exactly 0" in notes[0]
  assert notes[1].startswith(  # -g, not g, points out: g > 0 at a lower bound means f falls below it
      "All 2 free variables sit at a bound with the descent direction -g pointing out of the box"
      " (1 at a lower bound with g > 0, 1 at an upper bound with g < 0; x(1), x(2))")
  assert "pixels in [0, 255]" in notes[1]
  text = report(result, bounds=(lower, upper))
  assert "2 at a bound with the descent direction -g pointing out of the box" in " ".join(text.split())


def test_zero_gradient_and_loose_gtol_at_the_start():
  notes = diagnose(solve_family([1.0, 1.0]))  # the minimizer: the gradient is exactly 0
  assert "exactly zero in all 2 free variables at x0" in notes[1]
  notes = diagnose(solve_family([-1.2, 1.0], scale=1e-12))  # |g| ~ 2e-10 < gtol at the start
  assert notes[0].startswith("The solve stopped at iteration 0")
  assert "gtol is too loose for the scale of f: |f| = 2.42e-11" in notes[1]


def test_ftol_with_tiny_or_offset_f():
  plain = solve_family([-1.2, 1.0])
  assert int(plain.termination) == Termination.CONVERGED_FTOL and diagnose(plain) == []
  tiny = solve_family([-1.2, 1.0], scale=1e-12, gtol=0.0)
  assert int(tiny.nit) == 1 and int(tiny.termination) == Termination.CONVERGED_FTOL
  [note] = diagnose(tiny)
  assert note.startswith("ftol stopped the solve although x has not settled")
  assert "|f| = 4.23e-12 is below 1" in note and "multiply it by 1e+11" in note
  offset = solve_family([-1.2, 1.0], offset=1e10)
  assert int(offset.nit) == 1 and int(offset.termination) == Termination.CONVERGED_FTOL
  [note] = diagnose(offset)
  assert "largest projected-gradient component is 12" in note and "large constant offset" in note


def quartic(x, offset):
  """``offset + sum((x - 1)^4)``: a degenerate minimum, reached linearly (no step jumps to x*)."""
  return offset + jnp.sum((x - 1.0) ** 4)


@pytest.mark.rounding
def test_float32_precision_floor():
  # The event by construction: in float32, offset 1e6 swallows any change of f
  # below ulp(1e6) / 2 = 0.03. Near the quartic's minimum each step shrinks
  # |x - 1| by a bounded factor, so f stops changing while the gradient
  # 4 (x - 1)^3 is still far above 1e-3 (|x - 1| ~ 0.2 where sum (x-1)^4 ~ 0.03).
  offset = 1e6
  result = minimize(quartic, jnp.asarray([3.0, -2.0], jnp.float32), args=(jnp.float32(offset),))
  x = np.asarray(result.x, np.float64)
  assert result.fun.dtype == jnp.float32 and float(result.fun) == offset  # f did stop changing
  assert np.sum((x - 1.0) ** 4) < 0.5 * np.spacing(np.float32(offset))  # the floor was reached
  assert np.abs(4.0 * (x - 1.0) ** 3).max() > 1e-2  # with the gradient still large
  assert int(result.termination) in (Termination.CONVERGED_FTOL, Termination.PRECISION_LIMIT)
  [note] = diagnose(result)
  assert note.startswith("f = 1000000 stopped changing at the precision of float32")
  assert "jax_enable_x64" in note
  for code in (Termination.CONVERGED_FTOL, Termination.PRECISION_LIMIT):  # the same cause, either way
    assert diagnose(result._replace(termination=jnp.asarray(code, jnp.int32))) == [note]


def test_nonfinite_names_the_iteration():
  result = solve_family([-1.2, 1.0], scale=1e300)  # the first trial step overflows
  assert int(result.termination) == Termination.NONFINITE
  [note] = diagnose(result)
  assert note.startswith("f or its gradient became NaN or inf during iteration 1 (after 0 iterations")


@pytest.mark.parametrize("code, start", [
    (Termination.ABNORMAL_LINE_SEARCH, "The line search failed in iteration 2 (after 1 iterations"),
    (Termination.ABNORMAL_NOT_DESCENT, "The line search failed in iteration 2"),
    (Termination.INCONSISTENT_GRADIENT, "In iteration 2 every trial step raised f although the gradient"),
    (Termination.CONVERGED_XTOL, "The last step was tiny while the largest projected-gradient component is still 12"),
    (Termination.CALLBACK_HALT, "Your callback raised StopIteration after iteration 1."),
])
def test_other_stops(code, start):
  offset = solve_family([-1.2, 1.0], offset=1e10)  # nit 1, projected gradient 12
  [note] = diagnose(offset._replace(termination=jnp.asarray(code, jnp.int32)))
  assert note.startswith(start)


def test_batched_result_is_refused():
  batched = jax.tree.map(lambda a: jnp.stack([a, a]), solve_family([1.0, 1.0]))
  with pytest.raises(ValueError, match="batched"):
    diagnose(batched)


def test_seed_story_dead_unit_stops_at_iteration_0(neuron):
  """784 pixels in [0, 255], the frame fixed by (0, 0), "projected gradient 0": the report says why."""
  dead, result, _, _ = neuron
  assert int(result.nit) == 0 and int(result.termination) == Termination.CONVERGED_PGTOL
  assert float(result.fun) == 0.0 and not np.any(np.asarray(result.jac))
  notes = diagnose(result, dead.lower, dead.upper, dead.x0)
  assert notes[0].endswith("is exactly 0, which already passes the gtol test.")
  assert notes[1].startswith("The gradient of f is exactly zero in all 576 free variables at x0")
  assert "saturated or dead unit" in notes[1]
  assert notes[2].startswith("208 of 784 variables are fixed by their bounds") and "not what stopped it" in notes[2]
  text = report(result, problem=dead)
  assert "(764 variables not shown; max_rows=20)" in text and "dead unit" in text
  assert "f           0.000000000000e+00   (f* unknown)" in text.splitlines()  # dead.f_opt is None


def test_seed_story_scipy_stops_the_same_way(neuron):
  scipy_optimize = pytest.importorskip("scipy.optimize")
  dead = neuron[0]
  fg = jax.jit(jax.value_and_grad(dead.fun))
  res = scipy_optimize.minimize(lambda x: tuple(map(np.asarray, fg(x))), dead.x0, jac=True,
                                method="L-BFGS-B", bounds=list(zip(dead.lower, dead.upper)))
  assert res.nit == 0 and res.success  # SciPy's message alone does not say why


def test_seed_story_active_start_makes_progress(neuron):
  _, _, alive, result = neuron
  x, x0 = np.asarray(result.x), alive.x0
  assert int(result.nit) > 0 and float(result.fun) < float(alive.fun(jnp.asarray(x0))) - 1.0
  assert np.all(x[alive.lower == alive.upper] == 0.0) and np.all((x >= 0.0) & (x <= 255.0))
  g0 = np.asarray(jax.grad(alive.fun)(jnp.asarray(x0)))
  assert np.count_nonzero(g0) == 784  # exact gradients: the unit is active at the gray start
  np.testing.assert_allclose(np.asarray(result.jac), np.asarray(jax.grad(alive.fun)(result.x)), rtol=1e-9)
  notes = diagnose(result, alive.lower, alive.upper, alive.x0)
  assert not any("iteration 0" in note for note in notes)
