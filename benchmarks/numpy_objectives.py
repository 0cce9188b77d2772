"""Objectives with f and gradient written by hand in NumPy: the SciPy baseline without JAX.

Each ``*_fg(x)`` returns ``(f, g)`` computed in ``x.dtype``, the same function
as its namesake in :mod:`jax_lbfgsb.problems`; :data:`BY_PROBLEM` maps a
problem factory's name to it, and :func:`check` compares one with
``jax.value_and_grad`` of the JAX objective.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np


def rosen_fg(x, a=1.0):
  """Chained Rosenbrock ``sum 100 (x_{i+1} - x_i^2)^2 + (a - x_i)^2``."""
  xi = x[:-1]
  d = x[1:] - xi * xi
  r = a - xi
  g = np.zeros_like(x)
  g[:-1] = -400.0 * xi * d - 2.0 * r
  g[1:] += 200.0 * d
  return np.sum(100.0 * d * d + r * r), g


def extended_rosen_fg(x):
  """MGH 21: uncoupled Rosenbrock pairs."""
  xo = x[0::2]
  d = x[1::2] - xo * xo
  r = 1.0 - xo
  g = np.empty_like(x)
  g[0::2] = -400.0 * xo * d - 2.0 * r
  g[1::2] = 200.0 * d
  return np.sum(100.0 * d * d + r * r), g


def driver1_fg(x):
  """L-BFGS-B's driver1: ``(x_1 - 1)^2 + 4 sum (x_{i+1} - x_i^2)^2``."""
  d = x[1:] - x[:-1] ** 2
  g = np.zeros_like(x)
  g[0] = 2.0 * (x[0] - 1.0)
  g[:-1] -= 16.0 * x[:-1] * d
  g[1:] += 8.0 * d
  return (x[0] - 1.0) ** 2 + 4.0 * np.sum(d * d), g


def wood_fg(x):
  """MGH 14: Wood."""
  x1, x2, x3, x4 = x
  d1, d2, s, t = x2 - x1 * x1, x4 - x3 * x3, x2 + x4 - 2.0, x2 - x4
  f = 100.0 * d1**2 + (1.0 - x1) ** 2 + 90.0 * d2**2 + (1.0 - x3) ** 2 + 10.0 * s**2 + 0.1 * t**2
  g = [-400.0 * x1 * d1 - 2.0 * (1.0 - x1), 200.0 * d1 + 20.0 * s + 0.2 * t,
       -360.0 * x3 * d2 - 2.0 * (1.0 - x3), 180.0 * d2 + 20.0 * s - 0.2 * t]
  return f, np.array(g, x.dtype)


def extended_powell_fg(x):
  """MGH 22: extended Powell singular."""
  a, b = x[0::4] + 10.0 * x[1::4], x[2::4] - x[3::4]
  c, e = x[1::4] - 2.0 * x[2::4], x[0::4] - x[3::4]
  g = np.empty_like(x)
  g[0::4] = 2.0 * a + 40.0 * e**3
  g[1::4] = 20.0 * a + 4.0 * c**3
  g[2::4] = 10.0 * b - 8.0 * c**3
  g[3::4] = -10.0 * b - 40.0 * e**3
  return np.sum(a * a + 5.0 * b * b + c**4 + 10.0 * e**4), g


def brown_badly_scaled_fg(x):
  """MGH 4: Brown badly scaled."""
  a, b, c = x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2.0
  return a * a + b * b + c * c, np.array([2.0 * a + 2.0 * c * x[1], 2.0 * b + 2.0 * c * x[0]], x.dtype)


def powell_badly_scaled_fg(x):
  """MGH 3: Powell badly scaled."""
  e0, e1 = np.exp(-x[0]), np.exp(-x[1])
  f1, f2 = 1e4 * x[0] * x[1] - 1.0, e0 + e1 - 1.0001
  return f1 * f1 + f2 * f2, np.array([2e4 * f1 * x[1] - 2.0 * f2 * e0, 2e4 * f1 * x[0] - 2.0 * f2 * e1], x.dtype)


def penalty_1_fg(x):
  """MGH 23: penalty function I."""
  s = np.sum(x * x) - 0.25
  return 1e-5 * np.sum((x - 1.0) ** 2) + s * s, 2e-5 * (x - 1.0) + 4.0 * s * x


def variably_dimensioned_fg(x):
  """MGH 25: variably dimensioned."""
  j = np.arange(1, x.size + 1, dtype=x.dtype)
  s = np.sum(j * (x - 1.0))
  return np.sum((x - 1.0) ** 2) + s * s + s**4, 2.0 * (x - 1.0) + (2.0 * s + 4.0 * s**3) * j


BY_PROBLEM: dict[str, Callable] = {
    "rosenbrock": rosen_fg, "extended_rosenbrock": extended_rosen_fg, "driver1": driver1_fg,
    "wood": wood_fg, "extended_powell": extended_powell_fg, "brown_badly_scaled": brown_badly_scaled_fg,
    "powell_badly_scaled": powell_badly_scaled_fg, "penalty_1": penalty_1_fg,
    "variably_dimensioned": variably_dimensioned_fg,
}
"""The hand-written objectives by :data:`jax_lbfgsb.problems.PROBLEMS` name."""


def check(fg: Callable, fun: Callable, x: np.ndarray, *args) -> None:
  """Raises AssertionError unless ``fg`` matches ``jax.value_and_grad(fun)`` in float64 at ``x`` and near it."""
  rng = np.random.default_rng(0)
  for point in (x, x * (1.0 + 0.01 * rng.standard_normal(x.shape)) + 0.01):
    point = np.asarray(point, np.float64)
    f, g = fg(point, *args)
    f_ref, g_ref = jax.value_and_grad(fun)(point, *args)
    scale = max(float(np.max(np.abs(g_ref))), 1.0)
    assert np.isclose(f, float(f_ref), rtol=1e-12, atol=1e-300), (fg.__name__, f, float(f_ref))
    assert np.allclose(g, np.asarray(g_ref), rtol=0.0, atol=1e-10 * scale), (fg.__name__, g, g_ref)
