"""Tests for jax_lbfgsb._dcsrch against SciPy's Python port of MINPACK-2 (``scipy.optimize._dcsrch``).

For each 1-D function ``phi`` (the Moré–Thuente 1994 test functions, ``-sin``,
a quadratic) and each setting, SciPy's ``DCSRCH`` is run with ``phi`` wrapped
to log the trial steps; ours is driven by a Python loop over ``dcsrch_step``.
The trial-step sequences must agree to 1e-12 relative, with the same final
task class (convergence or warning).

Run op by op, the kernels reproduce SciPy bit for bit. Under ``jax.jit`` the
XLA CPU backend contracts ``a * b + c`` into fused multiply-adds on machines
with FMA (``XLA_FLAGS=--xla_cpu_max_isa=AVX`` turns that off), which changes
the last bit of some interpolated steps; where the cubic step divides a
cancelled difference (``fx - fp`` of relative size 1e-11 in ``mt4`` with a
tight ``gtol``) that last bit grows to ~1e-11 relative within a few steps. Jitted runs are
compared with a tolerance derived from that amplification (``jit_tolerance``).
"""

import functools
import math

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jax_lbfgsb._dcsrch import CONVERGENCE, FG, WARNING, dcsrch_init, dcsrch_step, dcstep  # noqa: E402

scipy_dcsrch = pytest.importorskip("scipy.optimize._dcsrch")

pytestmark = pytest.mark.rounding  # every test here compares rounding-sensitive paths with SciPy


# ----------------------------------------------------------------------------
# Test functions phi(a) and phi'(a), all with phi'(0) < 0.


def mt1(beta=2.0):  # Moré–Thuente (5.1)
  return (lambda a: -a / (a * a + beta), lambda a: (a * a - beta) / (a * a + beta) ** 2)


def mt2(beta=0.004):  # (5.2)
  return (lambda a: (a + beta) ** 5 - 2.0 * (a + beta) ** 4, lambda a: 5.0 * (a + beta) ** 4 - 8.0 * (a + beta) ** 3)


def mt3(beta=0.01, ell=39):  # (5.3)
  def phi0(a):
    if a <= 1.0 - beta:
      return 1.0 - a
    if a >= 1.0 + beta:
      return a - 1.0
    return (a - 1.0) ** 2 / (2.0 * beta) + beta / 2.0

  def dphi0(a):
    if a <= 1.0 - beta:
      return -1.0
    if a >= 1.0 + beta:
      return 1.0
    return (a - 1.0) / beta

  c = 2.0 * (1.0 - beta) / (ell * math.pi)
  w = ell * math.pi / 2.0
  return (lambda a: phi0(a) + c * math.sin(w * a), lambda a: dphi0(a) + (1.0 - beta) * math.cos(w * a))


def mt456(beta1, beta2):  # (5.4), with gamma(b) = sqrt(1 + b^2) - b
  g1 = math.sqrt(1.0 + beta1 ** 2) - beta1
  g2 = math.sqrt(1.0 + beta2 ** 2) - beta2
  return (
      lambda a: g1 * math.sqrt((1.0 - a) ** 2 + beta2 ** 2) + g2 * math.sqrt(a * a + beta1 ** 2),
      lambda a: g1 * (a - 1.0) / math.sqrt((1.0 - a) ** 2 + beta2 ** 2) + g2 * a / math.sqrt(a * a + beta1 ** 2),
  )


def neg_sin():
  return (lambda a: -math.sin(a), lambda a: -math.cos(a))


def quadratic(amin=3.0):
  return (lambda a: (a - amin) ** 2, lambda a: 2.0 * (a - amin))


FUNCTIONS = {
    "mt1": mt1(),
    "mt2": mt2(),
    "mt3": mt3(),
    "mt4": mt456(0.001, 0.001),
    "mt5": mt456(0.01, 0.001),
    "mt6": mt456(0.001, 0.01),
    "neg_sin": neg_sin(),
    "quadratic": quadratic(),
}


# ----------------------------------------------------------------------------
# Drivers.


def run_scipy(phi, dphi, stp0, ftol, gtol, xtol, stpmin, stpmax):
  """SciPy's trial steps (after stp0's predecessors) and its final task class."""
  steps = []

  def logged_phi(a):
    steps.append(float(a))
    return phi(a)

  ls = scipy_dcsrch.DCSRCH(logged_phi, dphi, ftol, gtol, xtol, stpmin, stpmax)
  _, _, _, task = ls(stp0, phi0=phi(0.0), derphi0=dphi(0.0), maxiter=100)
  kind = "CONV" if task.startswith(b"CONV") else "WARN" if task.startswith(b"WARN") else task
  return steps, kind


def _step(state, f, g, stp, ftol, gtol, xtol, stpmin, stpmax):
  return dcsrch_step(state, f, g, stp, ftol=ftol, gtol=gtol, xtol=xtol, stpmin=stpmin, stpmax=stpmax)


_jitted_step = jax.jit(_step)


def run_ours(phi, dphi, stp0, ftol, gtol, xtol, stpmin, stpmax, jit=True, nudge=False):
  """Our trial steps and final task class; with ``nudge`` each new step is moved up by one ulp."""
  tols = tuple(jnp.asarray(v, jnp.float64) for v in (ftol, gtol, xtol, stpmin, stpmax))
  step = functools.partial(_jitted_step if jit else _step, **dict(zip(("ftol", "gtol", "xtol", "stpmin", "stpmax"), tols)))
  stp = jnp.asarray(stp0, jnp.float64)
  state = dcsrch_init(jnp.asarray(phi(0.0)), jnp.asarray(dphi(0.0)), stp, stpmin, stpmax)
  steps = []
  for _ in range(100):
    a = float(stp)
    steps.append(a)
    stp, state = step(state, jnp.asarray(phi(a)), jnp.asarray(dphi(a)), stp)
    if nudge and int(state.task) == FG and stpmin < float(stp) < stpmax:  # a step on a bound is exact
      stp = jnp.nextafter(stp, jnp.inf)
    if int(state.task) != FG:
      break
    if not math.isfinite(float(stp)):
      return steps, "WARN"
  task = int(state.task)
  assert float(stp) == steps[-1]  # on exit stp is the step just evaluated
  return steps, {CONVERGENCE: "CONV", WARNING: "WARN"}.get(task, task)


def assert_same(name, stp0, ftol, gtol, xtol, stpmin, stpmax, modes=(False, True)):
  """Ours (op by op, then jitted) takes the same trial steps as SciPy and ends the same way."""
  phi, dphi = FUNCTIONS[name]
  want, want_kind = run_scipy(phi, dphi, stp0, ftol, gtol, xtol, stpmin, stpmax)
  for jit in modes:
    got, got_kind = run_ours(phi, dphi, stp0, ftol, gtol, xtol, stpmin, stpmax, jit=jit)
    assert len(got) == len(want), (jit, got, want)
    rtol = jit_tolerance(phi, dphi, stp0, ftol, gtol, xtol, stpmin, stpmax, want) if jit else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=f"jit={jit}")
    assert got_kind == want_kind, jit
  return want, want_kind


def jit_tolerance(phi, dphi, stp0, ftol, gtol, xtol, stpmin, stpmax, steps):
  """Relative tolerance on the jitted trial steps, measured by perturbation.

  FMA contraction (present or not, by instruction set) changes interpolated
  steps in their last bit, and later interpolations can amplify that bit (a
  cancelled ``fx - fp`` in mt4 with a tight gtol). The op-by-op search is run
  again with every step moved by one ulp; four times the largest relative
  change of the steps that follows (at least 1e-12) is the tolerance.
  """
  nudged, _ = run_ours(phi, dphi, stp0, ftol, gtol, xtol, stpmin, stpmax, jit=False, nudge=True)
  k = min(len(nudged), len(steps))  # a nudge may end the search a step earlier or later
  change = np.max(np.abs(np.asarray(nudged[:k]) - steps[:k]) / np.abs(steps[:k]))
  return max(1e-12, 4.0 * change)


# ----------------------------------------------------------------------------
# Tests.


@pytest.mark.parametrize("gtol", [0.9, 0.1])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_trial_steps_match_scipy(name, gtol):
  for stp0 in (1e-3, 1.0, 10.0, 1000.0):
    assert_same(name, stp0, 1e-3, gtol, 0.1, 0.0, 1e10)


@pytest.mark.parametrize(
    "name, stp0, stpmin, stpmax",
    [
        ("quadratic", 0.5, 0.0, 1.0),  # minimizer at 3 beyond stpmax = 1: STP = STPMAX
        ("quadratic", 1e-3, 0.0, 2.0),
        ("mt1", 0.1, 0.0, 0.5),  # minimizer at sqrt(2) beyond stpmax
        ("mt2", 1.0, 0.5, 2.0),  # minimizer at 1.6 - beta, inside
        ("mt2", 2.0, 1.9, 5.0),  # phi rises from stpmin: STP = STPMIN
        ("neg_sin", 1.0, 0.0, 1.2),  # minimizer at pi/2 beyond stpmax
        ("mt3", 0.3, 0.2, 3.0),
        ("mt5", 5.0, 0.0, 8.0),
    ],
)
@pytest.mark.parametrize("gtol", [0.9, 0.1])
def test_trial_steps_match_scipy_with_step_bounds(name, stp0, stpmin, stpmax, gtol):
  assert_same(name, stp0, 1e-3, gtol, 0.1, stpmin, stpmax)


def test_warnings_are_exercised():
  """The settings above reach both exits: STP = STPMAX and STP = STPMIN warnings, and convergence."""
  _, kind = assert_same("quadratic", 0.5, 1e-3, 0.1, 0.1, 0.0, 1.0)
  assert kind == "WARN"
  _, kind = assert_same("mt2", 2.0, 1e-3, 0.1, 0.1, 1.9, 5.0)
  assert kind == "WARN"
  _, kind = assert_same("mt1", 1e-3, 1e-3, 0.1, 0.1, 0.0, 1e10)
  assert kind == "CONV"


@pytest.mark.parametrize("name", ["mt3", "mt4", "mt6", "neg_sin"])
def test_tight_gtol_long_search(name):
  """A tiny gtol: many bracketing steps, ending on convergence or the xtol test (op by op: bit for bit)."""
  phi, dphi = FUNCTIONS[name]
  for xtol in (0.1, 1e-10):
    for stp0 in (1e-3, 10.0):
      want, _ = assert_same(name, stp0, 1e-4, 1e-6, xtol, 0.0, 1e10, modes=(False,))
      got, _ = run_ours(phi, dphi, stp0, 1e-4, 1e-6, xtol, 0.0, 1e10, jit=False)
      assert got == want


@pytest.mark.parametrize(
    "name",
    [
        "mt3",
        "mt4",  # FMA contraction under jit; amplified by cancellation (module docstring, jit_tolerance)
        "mt6",
        "neg_sin",
    ],
)
def test_tight_gtol_long_search_jitted(name):
  for xtol in (0.1, 1e-10):
    for stp0 in (1e-3, 10.0):
      assert_same(name, stp0, 1e-4, 1e-6, xtol, 0.0, 1e10, modes=(True,))


# ----------------------------------------------------------------------------
# dcstep: each of its four cases against SciPy's, on random inputs.


def _random_dcstep_inputs(rng, case, brackt, k):
  """``k`` random argument tuples for ``dcstep`` that fall in ``case`` (1-4) and respect its assumptions."""
  out = []
  while len(out) < k:
    stx = rng.uniform(-1, 1)
    direction = rng.choice([-1.0, 1.0])
    dx = -direction * rng.uniform(0.1, 2.0)  # derivative at stx negative in the direction of the step
    fx = rng.standard_normal()
    if brackt:
      sty = stx + direction * rng.uniform(0.5, 3.0)
      stp = stx + rng.uniform(0.1, 0.9) * (sty - stx)
      fy = fx + rng.uniform(0.0, 2.0)
      dy = rng.standard_normal()
    else:
      sty, fy, dy = stx, fx, dx
      stp = stx + direction * rng.uniform(0.1, 3.0)
    if case == 1:
      fp = fx + rng.uniform(0.01, 2.0)
      dp = rng.standard_normal()
    else:
      fp = fx - rng.uniform(0.01, 2.0)
      if case == 2:
        dp = direction * rng.uniform(0.01, 2.0)  # opposite sign to dx
      elif case == 3:
        dp = -direction * rng.uniform(0.01, 0.99) * abs(dx)  # same sign, smaller
      else:
        dp = -direction * rng.uniform(1.01, 3.0) * abs(dx)  # same sign, not smaller
    if case == 4 and brackt:
      # Case 4 with a bracket takes the cubic through (stp, fp, dp) and (sty, fy, dy): keep it real.
      theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp
      if theta * theta - dy * dp < 0:
        continue
    stpmin = min(stx, stp) - rng.uniform(0.5, 5.0)
    stpmax = max(stx, stp) + rng.uniform(0.5, 5.0)
    out.append((stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax))
  return out


@pytest.mark.parametrize("brackt", [False, True])
@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_dcstep_matches_scipy(case, brackt):
  rng = np.random.default_rng(10 * case + brackt)
  inputs = _random_dcstep_inputs(rng, case, brackt, 40)
  cols = [jnp.asarray(np.array(c)) for c in zip(*inputs)]
  eager = [np.asarray(a) for a in dcstep(*cols)]
  jitted = [np.asarray(a) for a in jax.jit(dcstep)(*cols)]
  for i, args in enumerate(inputs):
    with np.errstate(invalid="ignore", over="ignore"):
      want = scipy_dcsrch.dcstep(*args)
    for j, b in enumerate(want):
      if j == 7:
        assert bool(eager[j][i]) == bool(b) == bool(jitted[j][i]), (i, args)
      else:
        assert eager[j][i] == b, f"output {j} for {args}: {eager[j][i]!r} != {b!r}"
        np.testing.assert_allclose(jitted[j][i], b, rtol=1e-13, atol=0, err_msg=f"jitted output {j} for {args}")
