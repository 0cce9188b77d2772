"""Test problems for bound-constrained minimization, shared by tests, benchmarks and the CLI.

Each factory returns a :class:`Problem`: a pure ``jax.numpy`` objective ``fun(x)``
of a 1-D array (jit- and grad-able, computed in ``x.dtype``), a float64 starting
point, float64 bounds (``-inf``/``+inf`` where a side is free) and the optimal
value when one is known.

What it holds:

* ``rosenbrock``: SciPy's chained Rosenbrock (``scipy.optimize.rosen``), with
  optional box bounds; ``driver1``: the L-BFGS-B distribution's driver1 problem.
* The Moré–Garbow–Hillstrom unconstrained set (the 14 "core" functions plus
  Beale, Wood, Gulf R&D and Chebyquad), with the standard starting points and
  the published optimal values.
* The MINPACK-2 bound-constrained problems EPT (elastic-plastic torsion) and
  PJB (pressure journal bearing), vectorized over the grid so they run at
  n = 10^6, and MSA (minimal surface with Enneper boundary values),
  unconstrained as in MINPACK-2 or over TAO's plate (``plate2.c``).
* ``nnls``: a random non-negative least-squares problem.

All problems are reachable by name through :data:`PROBLEMS` and :func:`get`.

References:
  J. J. Moré, B. S. Garbow, K. E. Hillstrom, "Testing unconstrained
  optimization software", ACM Trans. Math. Softw. 7(1):17-41, 1981.

  B. M. Averick, R. G. Carter, J. J. Moré, G.-L. Xue, "The MINPACK-2 test
  problem collection", Argonne National Laboratory, Preprint MCS-P153-0692,
  1992 (EPT: routine ``deptfg``; PJB: ``dpjbfg``; MSA: ``dmsafg``, ``dmsabc``).

Example:
  >>> from jax_lbfgsb import problems
  >>> p = problems.get("rosenbrock", n=2)
  >>> p.x0
  array([-1.2,  1. ])
  >>> print(f"{float(p.fun(p.x0)):.4f}")
  24.2000
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Problem",
    "PROBLEMS",
    "get",
    "rosenbrock",
    "driver1",
    "helical_valley",
    "biggs_exp6",
    "gaussian",
    "powell_badly_scaled",
    "box_3d",
    "variably_dimensioned",
    "watson",
    "penalty_1",
    "penalty_2",
    "brown_badly_scaled",
    "brown_dennis",
    "trigonometric",
    "extended_rosenbrock",
    "extended_powell",
    "beale",
    "wood",
    "gulf",
    "chebyquad",
    "ept",
    "pjb",
    "msa",
    "nnls",
    "CORE14",
    "rosenbrock_box",
    "neuron_input",
]


class Problem(NamedTuple):
  """A minimization problem ``min fun(x)`` subject to ``lower <= x <= upper``.

  Attributes:
    name: short name, e.g. ``"ept_50x50"``.
    fun: ``fun(x) -> scalar`` for a 1-D ``x``; pure ``jax.numpy``, jit- and
      grad-able, computed in ``x.dtype``.
    x0: ``(n,)`` float64 starting point.
    lower: ``(n,)`` float64 lower bounds, ``-inf`` where unbounded.
    upper: ``(n,)`` float64 upper bounds, ``+inf`` where unbounded.
    f_opt: the known optimal value (published or a reference run), or None.
    description: one line.
  """

  name: str
  fun: Callable[[jax.Array], jax.Array]
  x0: np.ndarray
  lower: np.ndarray
  upper: np.ndarray
  f_opt: float | None
  description: str


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def _as_float(x) -> jax.Array:
  """``x`` as a jax array of a floating dtype (integers go to the default float)."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.result_type(float))
  return x


def _const(values, x: jax.Array) -> jax.Array:
  """A numpy constant cast to ``x.dtype`` (no float64 promotion of float32 inputs)."""
  return jnp.asarray(np.asarray(values, dtype=np.float64), dtype=x.dtype)


def _check_int(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  if value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
  return int(value)


def _free(n: int) -> tuple[np.ndarray, np.ndarray]:
  return np.full(n, -np.inf), np.full(n, np.inf)


def _unbounded(name, fun, x0, f_opt, description) -> Problem:
  x0 = np.asarray(x0, dtype=np.float64)
  lower, upper = _free(x0.size)
  return Problem(name, fun, x0, lower, upper, f_opt, description)


def _broadcast_bound(name: str, value, n: int, default: float) -> np.ndarray:
  if value is None:
    return np.full(n, default)
  arr = np.asarray(value, dtype=np.float64)
  if arr.ndim == 0:
    return np.full(n, float(arr))
  if arr.shape != (n,):
    raise ValueError(f"{name} must be a scalar or have shape ({n},), got shape {arr.shape}")
  return arr.copy()


# ----------------------------------------------------------------------------
# Rosenbrock and the L-BFGS-B driver1 problem
# ----------------------------------------------------------------------------


def _rosen(x):
  x = _as_float(x)
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


# Reference optima [C] (SciPy L-BFGS-B, ftol 1e-16, gtol 1e-12, m=20, same value from 6 starts).
_ROSEN_BOX_FOPT = {(2, -1.5, 0.8): 0.04, (10, -1.5, 0.8): 6.00101639461}


def rosenbrock(n: int = 2, lower=None, upper=None) -> Problem:
  """Chained Rosenbrock (``scipy.optimize.rosen``) from (-1.2, 1, -1.2, ...), optional box."""
  n = _check_int("n", n, 2)
  lo = _broadcast_bound("lower", lower, n, -np.inf)
  hi = _broadcast_bound("upper", upper, n, np.inf)
  if np.any(lo > hi):
    raise ValueError("lower must be <= upper")
  x0 = np.where(np.arange(n) % 2 == 0, -1.2, 1.0)
  bounded = np.any(np.isfinite(lo)) or np.any(np.isfinite(hi))
  if not bounded:
    f_opt = 0.0
  elif np.all(lo <= 1.0) and np.all(hi >= 1.0):
    f_opt = 0.0  # the unconstrained minimizer x = 1 is feasible
  elif np.all(lo == lo[0]) and np.all(hi == hi[0]):
    f_opt = _ROSEN_BOX_FOPT.get((n, float(lo[0]), float(hi[0])))
  else:
    f_opt = None
  if bounded:
    name = f"rosenbrock_{n}_box"
    desc = f"chained Rosenbrock, n={n}, box bounds"
  else:
    name = f"rosenbrock_{n}"
    desc = f"chained Rosenbrock (scipy.optimize.rosen), n={n}, unbounded"
  return Problem(name, _rosen, x0, lo, hi, f_opt, desc)


def _driver1(x):
  x = _as_float(x)
  return (x[0] - 1.0) ** 2 + 4.0 * jnp.sum((x[1:] - x[:-1] ** 2) ** 2)


def driver1(n: int = 25) -> Problem:
  """L-BFGS-B driver1: 4[(x1-1)^2/4 + sum(x_i - x_{i-1}^2)^2]; odd x_i in [1,100], even [-100,100]."""
  n = _check_int("n", n, 2)
  i = np.arange(1, n + 1)
  lower = np.where(i % 2 == 1, 1.0, -100.0)
  upper = np.full(n, 100.0)
  x0 = np.full(n, 3.0)
  # The minimizer x = 1 is feasible, so f* = 0.
  return Problem(f"driver1_{n}", _driver1, x0, lower, upper, 0.0,
                 f"L-BFGS-B distribution driver1 (chained quartic), n={n}, bounded")


# ----------------------------------------------------------------------------
# Moré-Garbow-Hillstrom (1981) functions, f = sum_i f_i(x)^2
# ----------------------------------------------------------------------------


def _helical_valley(x):
  x = _as_float(x)
  x1, x2, x3 = x[0], x[1], x[2]
  # MGH: theta = atan(x2/x1)/(2 pi) (+ 1/2 if x1 < 0), i.e. in (-1/4, 3/4).
  theta = jnp.arctan2(x2, x1) / (2.0 * math.pi)
  theta = jnp.where(theta < -0.25, theta + 1.0, theta)
  f1 = 10.0 * (x3 - 10.0 * theta)
  f2 = 10.0 * (jnp.sqrt(x1**2 + x2**2) - 1.0)
  return f1**2 + f2**2 + x3**2


def helical_valley() -> Problem:
  """MGH 7: Fletcher-Powell helical valley, n=3, x0=(-1,0,0), f*=0 at (1,0,0)."""
  return _unbounded("helical_valley", _helical_valley, [-1.0, 0.0, 0.0], 0.0,
                    "MGH 7 helical valley, n=3")


_BIGGS_T = 0.1 * np.arange(1, 14)
_BIGGS_Y = np.exp(-_BIGGS_T) - 5.0 * np.exp(-10.0 * _BIGGS_T) + 3.0 * np.exp(-4.0 * _BIGGS_T)


def _biggs_exp6(x):
  x = _as_float(x)
  t, y = _const(_BIGGS_T, x), _const(_BIGGS_Y, x)
  r = (x[2] * jnp.exp(-t * x[0]) - x[3] * jnp.exp(-t * x[1])
       + x[5] * jnp.exp(-t * x[4]) - y)
  return jnp.sum(r**2)


def biggs_exp6() -> Problem:
  """MGH 18: Biggs EXP6, n=6, m=13, x0=(1,2,1,1,1,1), f*=0 (local 5.65565e-3)."""
  return _unbounded("biggs_exp6", _biggs_exp6, [1.0, 2.0, 1.0, 1.0, 1.0, 1.0], 0.0,
                    "MGH 18 Biggs EXP6, n=6, m=13")


_GAUSS_Y = np.array([0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989,
                     0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009])
_GAUSS_T = (8.0 - np.arange(1, 16)) / 2.0


def _gaussian(x):
  x = _as_float(x)
  t, y = _const(_GAUSS_T, x), _const(_GAUSS_Y, x)
  r = x[0] * jnp.exp(-0.5 * x[1] * (t - x[2]) ** 2) - y
  return jnp.sum(r**2)


def gaussian() -> Problem:
  """MGH 9: Gaussian, n=3, m=15, x0=(0.4,1,0), f*=1.12793e-8."""
  return _unbounded("gaussian", _gaussian, [0.4, 1.0, 0.0], 1.12793e-8,
                    "MGH 9 Gaussian, n=3, m=15")


def _powell_badly_scaled(x):
  x = _as_float(x)
  f1 = 1e4 * x[0] * x[1] - 1.0
  f2 = jnp.exp(-x[0]) + jnp.exp(-x[1]) - 1.0001
  return f1**2 + f2**2


def powell_badly_scaled() -> Problem:
  """MGH 3: Powell badly scaled, n=2, x0=(0,1), f*=0."""
  return _unbounded("powell_badly_scaled", _powell_badly_scaled, [0.0, 1.0], 0.0,
                    "MGH 3 Powell badly scaled, n=2")


_BOX_T = 0.1 * np.arange(1, 11)


def _box_3d(x):
  x = _as_float(x)
  t = _const(_BOX_T, x)
  c = _const(np.exp(-_BOX_T) - np.exp(-10.0 * _BOX_T), x)
  r = jnp.exp(-t * x[0]) - jnp.exp(-t * x[1]) - x[2] * c
  return jnp.sum(r**2)


def box_3d() -> Problem:
  """MGH 12: Box three-dimensional, n=3, m=10, x0=(0,10,20), f*=0."""
  return _unbounded("box_3d", _box_3d, [0.0, 10.0, 20.0], 0.0,
                    "MGH 12 Box 3-D, n=3, m=10")


def _variably_dimensioned(x):
  x = _as_float(x)
  j = _const(np.arange(1, x.shape[0] + 1), x)
  s = jnp.sum(j * (x - 1.0))
  return jnp.sum((x - 1.0) ** 2) + s**2 + s**4


def variably_dimensioned(n: int = 10) -> Problem:
  """MGH 25: variably dimensioned, x0_j = 1 - j/n, f*=0 at x = 1."""
  n = _check_int("n", n, 1)
  x0 = 1.0 - np.arange(1, n + 1) / n
  return _unbounded(f"variably_dimensioned_{n}", _variably_dimensioned, x0, 0.0,
                    f"MGH 25 variably dimensioned, n={n}")


_WATSON_T = np.arange(1, 30) / 29.0


def _watson(x):
  x = _as_float(x)
  n = x.shape[0]
  t = _const(_WATSON_T, x)[:, None]                     # (29, 1)
  p = _const(np.arange(n), x)[None, :]                  # (1, n) powers 0..n-1
  tp = t**p                                             # (29, n): t^(j-1)
  jm1 = _const(np.arange(n), x)                         # j - 1
  # sum_{j=2..n} (j-1) x_j t^(j-2) = sum_{j=2..n} (j-1) x_j t^(j-1) / t
  s1 = jnp.sum(tp[:, 1:] * (jm1[1:] * x[1:])[None, :], axis=1) / t[:, 0]
  s2 = jnp.sum(tp * x[None, :], axis=1)
  r = s1 - s2**2 - 1.0
  return jnp.sum(r**2) + x[0] ** 2 + (x[1] - x[0] ** 2 - 1.0) ** 2


_WATSON_FOPT = {6: 2.28767e-3, 9: 1.39976e-6, 12: 4.72238e-10}


def watson(n: int = 6) -> Problem:
  """MGH 20: Watson, 2 <= n <= 31, m=31, x0=0, f*=2.28767e-3 (n=6), 1.39976e-6 (n=9)."""
  n = _check_int("n", n, 2)
  if n > 31:
    raise ValueError(f"n must be <= 31 for watson, got {n}")
  return _unbounded(f"watson_{n}", _watson, np.zeros(n), _WATSON_FOPT.get(n),
                    f"MGH 20 Watson, n={n}, m=31")


def _penalty_1(x):
  x = _as_float(x)
  return 1e-5 * jnp.sum((x - 1.0) ** 2) + (jnp.sum(x**2) - 0.25) ** 2


_PENALTY1_FOPT = {4: 2.24997e-5, 10: 7.08765e-5}


def penalty_1(n: int = 4) -> Problem:
  """MGH 23: penalty function I, m=n+1, x0_j = j, f*=2.24997e-5 (n=4), 7.08765e-5 (n=10)."""
  n = _check_int("n", n, 1)
  return _unbounded(f"penalty_1_{n}", _penalty_1, np.arange(1.0, n + 1), _PENALTY1_FOPT.get(n),
                    f"MGH 23 penalty I, n={n}")


def _penalty_2(x):
  x = _as_float(x)
  n = x.shape[0]
  a = 1e-5
  i = np.arange(2, n + 1)
  y = _const(np.exp(i / 10.0) + np.exp((i - 1) / 10.0), x)
  e = jnp.exp(x / 10.0)
  r_mid = e[1:] + e[:-1] - y                                  # i = 2..n
  r_hi = e[1:] - math.exp(-0.1)                               # i = n+1..2n-1
  w = _const(np.arange(n, 0, -1), x)                          # n - j + 1
  r_last = jnp.sum(w * x**2) - 1.0
  return (x[0] - 0.2) ** 2 + a * (jnp.sum(r_mid**2) + jnp.sum(r_hi**2)) + r_last**2


_PENALTY2_FOPT = {4: 9.37629e-6, 10: 2.93660e-4}


def penalty_2(n: int = 4) -> Problem:
  """MGH 24: penalty function II, m=2n, x0=1/2, f*=9.37629e-6 (n=4), 2.93660e-4 (n=10)."""
  n = _check_int("n", n, 1)
  return _unbounded(f"penalty_2_{n}", _penalty_2, np.full(n, 0.5), _PENALTY2_FOPT.get(n),
                    f"MGH 24 penalty II, n={n}")


def _brown_badly_scaled(x):
  x = _as_float(x)
  return (x[0] - 1e6) ** 2 + (x[1] - 2e-6) ** 2 + (x[0] * x[1] - 2.0) ** 2


def brown_badly_scaled() -> Problem:
  """MGH 4: Brown badly scaled, n=2, x0=(1,1), f*=0 at (1e6, 2e-6)."""
  return _unbounded("brown_badly_scaled", _brown_badly_scaled, [1.0, 1.0], 0.0,
                    "MGH 4 Brown badly scaled, n=2")


_BD_T = np.arange(1, 21) / 5.0


def _brown_dennis(x):
  x = _as_float(x)
  t = _const(_BD_T, x)
  a = x[0] + t * x[1] - _const(np.exp(_BD_T), x)
  b = x[2] + x[3] * _const(np.sin(_BD_T), x) - _const(np.cos(_BD_T), x)
  return jnp.sum((a**2 + b**2) ** 2)


def brown_dennis() -> Problem:
  """MGH 16: Brown and Dennis, n=4, m=20, x0=(25,5,-5,-1), f*=85822.2."""
  return _unbounded("brown_dennis", _brown_dennis, [25.0, 5.0, -5.0, -1.0], 85822.2016,
                    "MGH 16 Brown and Dennis, n=4, m=20")


def _trigonometric(x):
  x = _as_float(x)
  n = x.shape[0]
  i = _const(np.arange(1, n + 1), x)
  c = jnp.cos(x)
  r = n - jnp.sum(c) + i * (1.0 - c) - jnp.sin(x)
  return jnp.sum(r**2)


def trigonometric(n: int = 10) -> Problem:
  """MGH 26: trigonometric, m=n, x0=1/n, f*=0 (SciPy finds a local min 2.79506e-5 for n=10)."""
  n = _check_int("n", n, 1)
  return _unbounded(f"trigonometric_{n}", _trigonometric, np.full(n, 1.0 / n), 0.0,
                    f"MGH 26 trigonometric, n={n}")


def _extended_rosenbrock(x):
  x = _as_float(x)
  xo, xe = x[0::2], x[1::2]
  return jnp.sum(100.0 * (xe - xo**2) ** 2 + (1.0 - xo) ** 2)


def extended_rosenbrock(n: int = 2) -> Problem:
  """MGH 21: extended Rosenbrock, n/2 uncoupled pairs (unlike :func:`rosenbrock`), f*=0 at 1."""
  n = _check_int("n", n, 2)
  if n % 2:
    raise ValueError(f"n must be even for extended_rosenbrock, got {n}")
  x0 = np.tile([-1.2, 1.0], n // 2)
  return _unbounded(f"extended_rosenbrock_{n}", _extended_rosenbrock, x0, 0.0,
                    f"MGH 21 extended Rosenbrock (uncoupled pairs), n={n}")


def _extended_powell(x):
  x = _as_float(x)
  x1, x2, x3, x4 = x[0::4], x[1::4], x[2::4], x[3::4]
  return jnp.sum((x1 + 10.0 * x2) ** 2 + 5.0 * (x3 - x4) ** 2
                 + (x2 - 2.0 * x3) ** 4 + 10.0 * (x1 - x4) ** 4)


def extended_powell(n: int = 4) -> Problem:
  """MGH 22: extended Powell singular, n a multiple of 4, x0=(3,-1,0,1,...), f*=0 at 0."""
  n = _check_int("n", n, 4)
  if n % 4:
    raise ValueError(f"n must be a multiple of 4 for extended_powell, got {n}")
  x0 = np.tile([3.0, -1.0, 0.0, 1.0], n // 4)
  return _unbounded(f"extended_powell_{n}", _extended_powell, x0, 0.0,
                    f"MGH 22 extended Powell singular, n={n}")


def _beale(x):
  x = _as_float(x)
  x1, x2 = x[0], x[1]
  return ((1.5 - x1 * (1.0 - x2)) ** 2 + (2.25 - x1 * (1.0 - x2**2)) ** 2
          + (2.625 - x1 * (1.0 - x2**3)) ** 2)


def beale() -> Problem:
  """MGH 5: Beale, n=2, x0=(1,1), f*=0 at (3, 0.5)."""
  return _unbounded("beale", _beale, [1.0, 1.0], 0.0, "MGH 5 Beale, n=2")


def _wood(x):
  x = _as_float(x)
  x1, x2, x3, x4 = x[0], x[1], x[2], x[3]
  return (100.0 * (x2 - x1**2) ** 2 + (1.0 - x1) ** 2 + 90.0 * (x4 - x3**2) ** 2
          + (1.0 - x3) ** 2 + 10.0 * (x2 + x4 - 2.0) ** 2 + 0.1 * (x2 - x4) ** 2)


def wood() -> Problem:
  """MGH 14: Wood, n=4, x0=(-3,-1,-3,-1), f*=0 at (1,1,1,1)."""
  return _unbounded("wood", _wood, [-3.0, -1.0, -3.0, -1.0], 0.0, "MGH 14 Wood, n=4")


_GULF_T = np.arange(1, 100) / 100.0
_GULF_Y = 25.0 + (-50.0 * np.log(_GULF_T)) ** (2.0 / 3.0)


def _gulf(x):
  x = _as_float(x)
  t, y = _const(_GULF_T, x), _const(_GULF_Y, x)
  r = jnp.exp(-jnp.abs(y - x[1]) ** x[2] / x[0]) - t
  return jnp.sum(r**2)


def gulf() -> Problem:
  """MGH 11: Gulf research and development, n=3, m=99, x0=(5,2.5,0.15), f*=0 at (50,25,1.5)."""
  return _unbounded("gulf", _gulf, [5.0, 2.5, 0.15], 0.0, "MGH 11 Gulf R&D, n=3, m=99")


def _chebyquad(x):
  x = _as_float(x)
  n = x.shape[0]
  # Shifted Chebyshev polynomials on [0, 1]: T_0 = 1, T_1 = 2x - 1, T_{k+1} = 2 y T_k - T_{k-1}.
  y = 2.0 * x - 1.0
  t_prev, t_cur = jnp.ones_like(x), y
  means = [jnp.mean(t_cur)]
  for _ in range(2, n + 1):
    t_prev, t_cur = t_cur, 2.0 * y * t_cur - t_prev
    means.append(jnp.mean(t_cur))
  i = np.arange(1, n + 1)
  integral = np.zeros(n)
  even = i % 2 == 0
  integral[even] = -1.0 / (i[even].astype(np.float64) ** 2 - 1.0)
  r = jnp.stack(means) - _const(integral, x)
  return jnp.sum(r**2)


_CHEBYQUAD_FOPT = {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.0,
                   8: 3.51687e-3, 9: 0.0, 10: 6.50395e-3}


def chebyquad(n: int = 8) -> Problem:
  """MGH 35: Chebyquad, m=n, x0_j = j/(n+1), f*=3.51687e-3 (n=8), 6.50395e-3 (n=10)."""
  n = _check_int("n", n, 1)
  x0 = np.arange(1, n + 1) / (n + 1)
  return _unbounded(f"chebyquad_{n}", _chebyquad, x0, _CHEBYQUAD_FOPT.get(n),
                    f"MGH 35 Chebyquad, n={n}")


# ----------------------------------------------------------------------------
# MINPACK-2 bound-constrained problems
# ----------------------------------------------------------------------------
# Grid: interior unknowns v_ij, 1 <= i <= nx, 1 <= j <= ny, stored at k = nx(j-1) + i
# (i fastest), zero boundary.  Padded grid V has shape (nx+2, ny+2), V[i, j] = v_ij.
# Lower triangle at base (i,j), 0 <= i <= nx, 0 <= j <= ny: vertices (i,j), (i+1,j), (i,j+1).
# Upper triangle at base (i,j), 1 <= i <= nx+1, 1 <= j <= ny+1: vertices (i,j), (i-1,j), (i,j-1).


def _padded_grid(x, nx: int, ny: int):
  v = x.reshape(ny, nx).T                       # v[i-1, j-1] = x[nx(j-1) + i - 1]
  return jnp.pad(v, ((1, 1), (1, 1)))


def _triangle_terms(V, hx, hy):
  """Squared gradients and vertex values of the lower and upper triangles."""
  # Lower triangles: bases V[0:nx+1, 0:ny+1].
  v = V[:-1, :-1]
  vr = V[1:, :-1]
  vt = V[:-1, 1:]
  gl = ((vr - v) / hx) ** 2 + ((vt - v) / hy) ** 2
  sl = v + vr + vt
  # Upper triangles: bases V[1:nx+2, 1:ny+2].
  v = V[1:, 1:]
  vl = V[:-1, 1:]
  vb = V[1:, :-1]
  gu = ((v - vl) / hx) ** 2 + ((v - vb) / hy) ** 2
  su = v + vl + vb
  return gl, gu, sl, su


def _grid_size(nx, ny):
  nx = _check_int("nx", nx, 1)
  ny = _check_int("ny", ny, 1)
  return nx, ny


_EPT_FOPT = {(50, 50): -0.41808763202, (100, 100): -0.41839102666}


def ept(nx: int, ny: int, c: float = 5.0) -> Problem:
  """MINPACK-2 elastic-plastic torsion (deptfg) on an nx-by-ny grid, |v| <= distance to boundary."""
  nx, ny = _grid_size(nx, ny)
  hx = 1.0 / (nx + 1)
  hy = 1.0 / (ny + 1)
  area = 0.5 * hx * hy
  cdiv3 = float(c) / 3.0

  def fun(x):
    x = _as_float(x)
    V = _padded_grid(x, nx, ny)
    gl, gu, sl, su = _triangle_terms(V, hx, hy)
    fquad = jnp.sum(gl) + jnp.sum(gu)
    flin = -cdiv3 * (jnp.sum(sl) + jnp.sum(su))
    return area * (0.5 * fquad + flin)

  i = np.arange(1, nx + 1)
  j = np.arange(1, ny + 1)
  di = np.minimum(i, nx - i + 1) * hx
  dj = np.minimum(j, ny - j + 1) * hy
  d = np.minimum(di[None, :], dj[:, None]).reshape(-1)   # row j-1, column i-1 -> k
  f_opt = _EPT_FOPT.get((nx, ny)) if float(c) == 5.0 else None
  return Problem(f"ept_{nx}x{ny}", fun, d.copy(), -d, d.copy(), f_opt,
                 f"MINPACK-2 elastic-plastic torsion, c={c:g}, {nx}x{ny} grid, n={nx * ny}")


_PJB_FOPT = {(50, 50): -0.18048799501, (100, 100): -0.18057436966}


def pjb(nx: int, ny: int, ecc: float = 0.1, b: float = 10.0) -> Problem:
  """MINPACK-2 pressure journal bearing (dpjbfg) on an nx-by-ny grid, v >= 0."""
  nx, ny = _grid_size(nx, ny)
  ecc = float(ecc)
  b = float(b)
  hx = 2.0 * math.pi / (nx + 1)
  hy = 2.0 * b / (ny + 1)
  xi = np.arange(0, nx + 2) * hx                       # xi_i for i = 0..nx+1

  def p(t):
    return (1.0 + ecc * np.cos(t)) ** 3

  # Weights per base index i (float64 numpy, cast to x.dtype inside fun).
  wl = hx * hy * (2.0 * p(xi[: nx + 1]) + p(xi[: nx + 1] + hx)) / 6.0   # i = 0..nx
  wu = hx * hy * (2.0 * p(xi[1:]) + p(xi[1:] - hx)) / 6.0               # i = 1..nx+1
  lin = ecc * hx * hy * np.sin(xi[1 : nx + 1])                           # i = 1..nx

  def fun(x):
    x = _as_float(x)
    V = _padded_grid(x, nx, ny)
    gl, gu, _, _ = _triangle_terms(V, hx, hy)
    fquad = jnp.sum(_const(wl, x)[:, None] * gl) + jnp.sum(_const(wu, x)[:, None] * gu)
    flin = jnp.sum(_const(lin, x)[:, None] * V[1:-1, 1:-1])
    return 0.5 * fquad - flin

  x0 = np.tile(np.maximum(np.sin(xi[1 : nx + 1]), 0.0), ny)   # k = nx(j-1) + i, i fastest
  lower = np.zeros(nx * ny)
  upper = np.full(nx * ny, np.inf)
  f_opt = _PJB_FOPT.get((nx, ny)) if (ecc, b) == (0.1, 10.0) else None
  return Problem(f"pjb_{nx}x{ny}", fun, x0, lower, upper, f_opt,
                 f"MINPACK-2 pressure journal bearing, ecc={ecc:g}, b={b:g}, "
                 f"{nx}x{ny} grid, n={nx * ny}")


def _enneper(xt: np.ndarray, yt: np.ndarray) -> np.ndarray:
  """Enneper's surface u^2 - v^2 at the points (xt, yt), as MINPACK-2's dmsabc computes it.

  (u, v) solves ``xt = u + u v^2 - u^3/3``, ``yt = -v - u^2 v + v^3/3``: Newton's
  method from ``(xt, -yt)``, at most 5 steps, a point stops once the residual
  norm is <= 1e-10.
  """
  u = np.array(xt, dtype=np.float64)
  v = -np.array(yt, dtype=np.float64)
  for _ in range(5):
    nf1 = u + u * v**2 - u**3 / 3.0 - xt
    nf2 = -v - u**2 * v + v**3 / 3.0 - yt
    active = np.sqrt(nf1 * nf1 + nf2 * nf2) > 1e-10
    if not active.any():
      break
    j11 = 1.0 + v**2 - u**2
    j12 = 2.0 * u * v
    j21 = -2.0 * u * v
    j22 = -1.0 - u**2 + v**2
    det = j11 * j22 - j12 * j21
    u, v = (np.where(active, u - (j22 * nf1 - j12 * nf2) / det, u),
            np.where(active, v - (j11 * nf2 - j21 * nf1) / det, v))
  return u * u - v * v


def _msa_boundary(nx: int, ny: int) -> tuple[np.ndarray, ...]:
  """Enneper boundary values on [-.5, .5]^2: bottom, top (nx+2 each), left, right (ny+2 each).

  Each array starts at a corner: ``bottom[i]`` is the value at grid column i on
  y = -.5, ``left[j]`` at grid row j on x = -.5, and so on. The points come from
  ``linspace`` (dmsabc sums ``xt += hx``, an ulp away), so the arrays agree at
  the corners, which the padded grid stores once.
  """
  xs = np.linspace(-0.5, 0.5, nx + 2)
  ys = np.linspace(-0.5, 0.5, ny + 2)
  bottom = _enneper(xs, np.full(nx + 2, -0.5))
  top = _enneper(xs, np.full(nx + 2, 0.5))
  left = _enneper(np.full(ny + 2, -0.5), ys)
  right = _enneper(np.full(ny + 2, 0.5), ys)
  return bottom, top, left, right


# Keys: (nx, ny, None) for MINPACK-2's unconstrained MSA, (nx, ny, (bmx, bmy, height)) with a plate.
_MSA_FOPT = {
    (50, 50, None): 1.4212274960,
    (50, 50, (25, 25, 0.1)): 1.4565613444,
    (8, 6, (3, 3, 0.2)): 1.5056627852,    # TAO plate2_1.out: 1.50566
    (8, 8, (2, 5, 0.3)): 1.6011483363,    # TAO plate2_2.out: 1.60115
}


def msa(nx: int = 10, ny: int = 10, bmx: int | None = None, bmy: int | None = None,
        height: float | None = None) -> Problem:
  """MINPACK-2 minimal surface area (dmsafg, dmsabc), optionally over a plate (TAO plate2.c).

  The surface over the unit square, on an nx-by-ny interior grid, with
  Enneper's surface as boundary values; ``f = (hx hy / 2) sum sqrt(1 + dx^2 + dy^2)``
  over the lower and upper triangles, and x0 is MINPACK-2's 'XS' start (an
  average of the boundary values).

  Args:
    nx: interior grid points in the first coordinate.
    ny: interior grid points in the second coordinate.
    bmx: plate width in grid points, ``0 <= bmx <= nx``; with a plate, defaults
      to ``nx // 2``.
    bmy: plate height in grid points, ``0 <= bmy <= ny``; with a plate,
      defaults to ``ny // 2``.
    height: plate height. ``None`` (the default): no plate, MINPACK-2's
      unconstrained MSA. A number: TAO's "MSA with plate", the lower bound
      ``height`` on the 0-based interior indices
      ``(nx - bmx) // 2 <= i < nx - (nx - bmx) // 2`` and
      ``(ny - bmy) // 2 <= j < ny - (ny - bmy) // 2``, ``-inf`` elsewhere, no
      upper bound. x0 is not moved into the bounds (solvers project it).

  Raises:
    ValueError: for bad sizes, ``bmx``/``bmy`` without ``height``, or a
      non-finite ``height``.

  >>> p = msa(8, 6, bmx=3, bmy=3, height=0.2)
  >>> p.name, p.f_opt, int(np.isfinite(p.lower).sum())
  ('msa_plate_8x6', 1.5056627852, 16)
  """
  nx, ny = _grid_size(nx, ny)
  if height is None:
    if bmx is not None or bmy is not None:
      raise ValueError("bmx and bmy need a plate height; pass height=...")
    plate = None
  else:
    bmx = nx // 2 if bmx is None else _check_int("bmx", bmx, 0)
    bmy = ny // 2 if bmy is None else _check_int("bmy", bmy, 0)
    if bmx > nx:
      raise ValueError(f"bmx must be <= nx = {nx}, got {bmx}")
    if bmy > ny:
      raise ValueError(f"bmy must be <= ny = {ny}, got {bmy}")
    if isinstance(height, bool) or not math.isfinite(float(height)):
      raise ValueError(f"height must be a finite number or None, got {height!r}")
    plate = (bmx, bmy, float(height))
  hx = 1.0 / (nx + 1)
  hy = 1.0 / (ny + 1)
  area = 0.5 * hx * hy
  bottom, top, left, right = _msa_boundary(nx, ny)
  # Padded-grid boundary, zero inside: V = _padded_grid(x) + B.
  B = np.zeros((nx + 2, ny + 2))
  B[0, :] = left
  B[-1, :] = right
  B[:, 0] = bottom
  B[:, -1] = top

  def fun(x):
    x = _as_float(x)
    V = _padded_grid(x, nx, ny) + _const(B, x)
    gl, gu, _, _ = _triangle_terms(V, hx, hy)
    return area * (jnp.sum(jnp.sqrt(1.0 + gl)) + jnp.sum(jnp.sqrt(1.0 + gu)))

  alpha = np.arange(1, ny + 1)[:, None] * hy          # row j-1
  beta = np.arange(1, nx + 1)[None, :] * hx           # column i-1
  yline = alpha * top[None, 1:-1] + (1.0 - alpha) * bottom[None, 1:-1]
  xline = beta * right[1:-1, None] + (1.0 - beta) * left[1:-1, None]
  x0 = (0.5 * (yline + xline)).reshape(-1)            # k = nx(j-1) + i, i fastest
  lower = np.full(nx * ny, -np.inf)
  upper = np.full(nx * ny, np.inf)
  if plate is None:
    name = f"msa_{nx}x{ny}"
    what = "unconstrained"
  else:
    i0, j0 = (nx - bmx) // 2, (ny - bmy) // 2
    grid = lower.reshape(ny, nx)                        # view: row j-1, column i-1
    grid[j0 : ny - j0, i0 : nx - i0] = plate[2]
    name = f"msa_plate_{nx}x{ny}"
    what = f"plate bmx={bmx}, bmy={bmy}, height={plate[2]:g}"
  return Problem(name, fun, x0, lower, upper, _MSA_FOPT.get((nx, ny, plate)),
                 f"MINPACK-2 minimal surface, Enneper boundary, {what}, {nx}x{ny} grid, n={nx * ny}")


# ----------------------------------------------------------------------------
# Non-negative least squares
# ----------------------------------------------------------------------------


def nnls(m: int, n: int, seed: int = 0) -> Problem:
  """Random non-negative least squares 0.5 ||A x - b||^2, x >= 0, A (m, n) and b standard normal."""
  m = _check_int("m", m, 1)
  n = _check_int("n", n, 1)
  seed = _check_int("seed", seed, 0)
  rng = np.random.default_rng(seed)
  A = rng.standard_normal((m, n))
  b = rng.standard_normal(m)

  def fun(x):
    x = _as_float(x)
    r = _const(A, x) @ x - _const(b, x)
    return 0.5 * jnp.sum(r**2)

  return Problem(f"nnls_{m}x{n}", fun, np.zeros(n), np.zeros(n), np.full(n, np.inf), None,
                 f"random non-negative least squares, A {m}x{n}, seed {seed}")


# ----------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------

PROBLEMS: dict[str, Callable[..., Problem]] = {
    "rosenbrock": rosenbrock,
    "driver1": driver1,
    "helical_valley": helical_valley,
    "biggs_exp6": biggs_exp6,
    "gaussian": gaussian,
    "powell_badly_scaled": powell_badly_scaled,
    "box_3d": box_3d,
    "variably_dimensioned": variably_dimensioned,
    "watson": watson,
    "penalty_1": penalty_1,
    "penalty_2": penalty_2,
    "brown_badly_scaled": brown_badly_scaled,
    "brown_dennis": brown_dennis,
    "trigonometric": trigonometric,
    "extended_rosenbrock": extended_rosenbrock,
    "extended_powell": extended_powell,
    "beale": beale,
    "wood": wood,
    "gulf": gulf,
    "chebyquad": chebyquad,
    "ept": ept,
    "pjb": pjb,
    "nnls": nnls,
}
"""Problem factories by name."""


def get(name: str, **kwargs) -> Problem:
  """Build the problem ``name`` from :data:`PROBLEMS` with the factory's keyword arguments.

  Raises:
    ValueError: if ``name`` is unknown (the message lists the valid names).
  """
  try:
    factory = PROBLEMS[name]
  except KeyError:
    raise ValueError(
        f"unknown problem {name!r}; valid names: {', '.join(sorted(PROBLEMS))}"
    ) from None
  return factory(**kwargs)


# ----------------------------------------------------------------------------
# The classic page's 14 functions, a bounded Rosenbrock, a neuron-input problem
# ----------------------------------------------------------------------------

CORE14: tuple[str, ...] = (
    "helical_valley", "biggs_exp6", "gaussian", "powell_badly_scaled", "box_3d",
    "variably_dimensioned", "watson", "penalty_1", "penalty_2", "brown_badly_scaled",
    "brown_dennis", "trigonometric", "extended_rosenbrock", "extended_powell",
)
"""The 14 core MGH functions, in the order of MINPACK's unconstrained-minimization tests."""


def rosenbrock_box(n: int = 10, lower: float = -1.5, upper: float = 0.8) -> Problem:
  """Chained Rosenbrock in the box ``[lower, upper]^n`` (the README's problem; f* = 6.00101639461 for n=10).

  >>> p = rosenbrock_box()
  >>> p.name, p.f_opt
  ('rosenbrock_10_box', 6.00101639461)
  """
  return rosenbrock(n, lower=lower, upper=upper)


_SIDE = 28  # image side: 28 * 28 = 784 pixels


@functools.lru_cache(maxsize=8)
def _neuron_weights(seed: int, hidden: int, frame: int) -> tuple[np.ndarray, ...]:
  """Weights ``w1 (hidden, 784), b1 (hidden,), w2 (hidden,), b2 ()`` and the two starts.

  ``b2`` and the sign of ``w2`` put the unit's input at +d on the mid-gray start
  and at -d on the all-white start (d > 0): active on one, dead on the other.
  """
  rng = np.random.default_rng(seed)
  w1 = rng.standard_normal((hidden, _SIDE * _SIDE)) * (2.0 / _SIDE)
  b1 = 0.1 * rng.standard_normal(hidden)
  w2 = rng.standard_normal(hidden) / math.sqrt(hidden)
  rows, cols = np.divmod(np.arange(_SIDE * _SIDE), _SIDE)
  inside = ((rows >= frame) & (rows < _SIDE - frame) & (cols >= frame) & (cols < _SIDE - frame))
  gray, white = np.where(inside, 127.5, 0.0), np.where(inside, 255.0, 0.0)
  a_gray = w2 @ np.tanh(w1 @ (gray / 255.0) + b1)
  a_white = w2 @ np.tanh(w1 @ (white / 255.0) + b1)
  if a_gray < a_white:
    w2, a_gray, a_white = -w2, -a_gray, -a_white
  b2 = np.asarray(-0.5 * (a_gray + a_white))
  return w1, b1, w2, b2, inside, gray, white


@dataclasses.dataclass(frozen=True)
class _NeuronUnit:
  """``-relu(w2 . tanh(w1 x / 255 + b1) + b2)``; equal (and hashing equal) for equal settings.

  Being hashable by value, two :func:`neuron_input` problems with the same
  settings share one compiled :func:`~jax_lbfgsb.minimize`.
  """

  seed: int
  hidden: int
  frame: int

  def __call__(self, x):
    x = _as_float(x)
    w1, b1, w2, b2 = _neuron_weights(self.seed, self.hidden, self.frame)[:4]
    h = jnp.tanh(_const(w1, x) @ (x / 255.0) + _const(b1, x))
    z = _const(w2, x) @ h + _const(b2, x)
    return jnp.minimum(-z, 0.0)  # -relu(z), with +0.0 (not -0.0) where the unit is dead


def neuron_input(seed: int = 0, hidden: int = 32, frame: int = 2, saturate: bool = False) -> Problem:
  """The 28x28 image that maximizes one ReLU unit of a fixed random 784-``hidden``-1 network.

  ``f(x) = -relu(w2 . tanh(W1 x / 255 + b1) + b2)`` for pixels ``x`` in
  ``[0, 255]`` (scaled by 1/255 inside); the ``frame`` outermost rows and
  columns are fixed at 0 by ``lower == upper == 0``. The start is the mid-gray
  image, where the unit is active. With ``saturate=True`` it is the all-white
  image, where the unit's input is negative (a dead ReLU): ``f`` is flat there,
  its gradient is exactly zero, and L-BFGS-B stops at iteration 0 with
  "projected gradient 0", the classic activation-maximization surprise.

  >>> p = neuron_input(saturate=True)
  >>> p.x0.size, int((p.lower == p.upper).sum()), float(p.fun(p.x0))
  (784, 208, 0.0)
  """
  seed = _check_int("seed", seed, 0)
  hidden = _check_int("hidden", hidden, 1)
  frame = _check_int("frame", frame, 0)
  if 2 * frame >= _SIDE:
    raise ValueError(f"frame must be < {_SIDE // 2}, got {frame}")
  inside, gray, white = _neuron_weights(seed, hidden, frame)[4:]
  lower = np.zeros(_SIDE * _SIDE)
  upper = np.where(inside, 255.0, 0.0)
  start = "white (dead unit)" if saturate else "gray"
  return Problem(
      "neuron_input_saturated" if saturate else "neuron_input", _NeuronUnit(seed, hidden, frame),
      (white if saturate else gray).copy(), lower, upper, None,
      f"input maximizing a ReLU unit of a random 784-{hidden}-1 MLP, pixels in [0, 255],"
      f" {frame}-pixel frame fixed, {start} start, seed {seed}")


PROBLEMS.update(rosenbrock_box=rosenbrock_box, neuron_input=neuron_input, msa=msa)
