"""Tests for jax_lbfgsb.problems: values at x0 and at known minimizers, gradients, dtypes.

The oracles are independent plain-Python/NumPy re-implementations written from the
MGH (1981) residual definitions and the MINPACK-2 Fortran loops (TAO's plate2.c for the MSA
plate bounds), plus published values.
"""

import math

import chex
import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jax_lbfgsb import problems  # noqa: E402

# ----------------------------------------------------------------------------
# Independent oracles: sum of squared residuals, written as loops over i.
# ----------------------------------------------------------------------------


def np_rosen_chained(x):
  return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def np_extended_rosenbrock(x):
  r = []
  for i in range(len(x) // 2):
    r += [10.0 * (x[2 * i + 1] - x[2 * i] ** 2), 1.0 - x[2 * i]]
  return sum(v * v for v in r)


def np_driver1(x):
  # Fortran driver1: f = .25 (x1-1)^2 + sum (x_i - x_{i-1}^2)^2, then f = 4 f.
  f = 0.25 * (x[0] - 1.0) ** 2
  for i in range(1, len(x)):
    f += (x[i] - x[i - 1] ** 2) ** 2
  return 4.0 * f


def np_helical_valley(x):
  x1, x2, x3 = x
  theta = math.atan(x2 / x1) / (2 * math.pi) if x1 != 0 else 0.25 * math.copysign(1.0, x2)
  if x1 < 0:
    theta += 0.5
  r = [10.0 * (x3 - 10.0 * theta), 10.0 * (math.hypot(x1, x2) - 1.0), x3]
  return sum(v * v for v in r)


def np_biggs_exp6(x):
  s = 0.0
  for i in range(1, 14):
    t = 0.1 * i
    y = math.exp(-t) - 5 * math.exp(-10 * t) + 3 * math.exp(-4 * t)
    r = x[2] * math.exp(-t * x[0]) - x[3] * math.exp(-t * x[1]) + x[5] * math.exp(-t * x[4]) - y
    s += r * r
  return s


GAUSS_Y = [0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989,
           0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009]


def np_gaussian(x):
  s = 0.0
  for i in range(1, 16):
    t = (8 - i) / 2
    r = x[0] * math.exp(-x[1] * (t - x[2]) ** 2 / 2) - GAUSS_Y[i - 1]
    s += r * r
  return s


def np_powell_badly_scaled(x):
  return (1e4 * x[0] * x[1] - 1) ** 2 + (math.exp(-x[0]) + math.exp(-x[1]) - 1.0001) ** 2


def np_box_3d(x):
  s = 0.0
  for i in range(1, 11):
    t = 0.1 * i
    r = math.exp(-t * x[0]) - math.exp(-t * x[1]) - x[2] * (math.exp(-t) - math.exp(-10 * t))
    s += r * r
  return s


def np_variably_dimensioned(x):
  n = len(x)
  r = [x[j] - 1 for j in range(n)]
  s = sum((j + 1) * (x[j] - 1) for j in range(n))
  r += [s, s * s]
  return sum(v * v for v in r)


def np_watson(x):
  n = len(x)
  f = 0.0
  for i in range(1, 30):
    t = i / 29
    s1 = sum((j - 1) * x[j - 1] * t ** (j - 2) for j in range(2, n + 1))
    s2 = sum(x[j - 1] * t ** (j - 1) for j in range(1, n + 1))
    f += (s1 - s2 * s2 - 1) ** 2
  return f + x[0] ** 2 + (x[1] - x[0] ** 2 - 1) ** 2


def np_penalty_1(x):
  n = len(x)
  r = [math.sqrt(1e-5) * (x[i] - 1) for i in range(n)]
  r.append(sum(v * v for v in x) - 0.25)
  return sum(v * v for v in r)


def np_penalty_2(x):
  n = len(x)
  a = math.sqrt(1e-5)
  r = [x[0] - 0.2]
  for i in range(2, n + 1):
    y = math.exp(i / 10) + math.exp((i - 1) / 10)
    r.append(a * (math.exp(x[i - 1] / 10) + math.exp(x[i - 2] / 10) - y))
  for i in range(n + 1, 2 * n):
    r.append(a * (math.exp(x[i - n] / 10) - math.exp(-1 / 10)))
  r.append(sum((n - j + 1) * x[j - 1] ** 2 for j in range(1, n + 1)) - 1)
  return sum(v * v for v in r)


def np_brown_badly_scaled(x):
  return (x[0] - 1e6) ** 2 + (x[1] - 2e-6) ** 2 + (x[0] * x[1] - 2) ** 2


def np_brown_dennis(x):
  s = 0.0
  for i in range(1, 21):
    t = i / 5
    r = (x[0] + t * x[1] - math.exp(t)) ** 2 + (x[2] + x[3] * math.sin(t) - math.cos(t)) ** 2
    s += r * r
  return s


def np_trigonometric(x):
  n = len(x)
  sc = sum(math.cos(v) for v in x)
  return sum((n - sc + (i + 1) * (1 - math.cos(x[i])) - math.sin(x[i])) ** 2 for i in range(n))


def np_extended_powell(x):
  s = 0.0
  for k in range(0, len(x), 4):
    a, b, c, d = x[k:k + 4]
    s += (a + 10 * b) ** 2 + 5 * (c - d) ** 2 + (b - 2 * c) ** 4 + 10 * (a - d) ** 4
  return s


def np_beale(x):
  y = [1.5, 2.25, 2.625]
  return sum((y[i - 1] - x[0] * (1 - x[1] ** i)) ** 2 for i in (1, 2, 3))


def np_wood(x):
  r = [10 * (x[1] - x[0] ** 2), 1 - x[0], math.sqrt(90) * (x[3] - x[2] ** 2), 1 - x[2],
       math.sqrt(10) * (x[1] + x[3] - 2), (x[1] - x[3]) / math.sqrt(10)]
  return sum(v * v for v in r)


def np_gulf(x):
  s = 0.0
  for i in range(1, 100):
    t = i / 100
    y = 25 + (-50 * math.log(t)) ** (2 / 3)
    r = math.exp(-abs(y - x[1]) ** x[2] / x[0]) - t
    s += r * r
  return s


def np_chebyquad(x):
  n = len(x)
  s = 0.0
  for i in range(1, n + 1):
    # T_i on [0, 1] via the trigonometric definition.
    mean = sum(math.cos(i * math.acos(2 * v - 1)) for v in x) / n
    integral = -1 / (i * i - 1) if i % 2 == 0 else 0.0
    s += (mean - integral) ** 2
  return s


# (factory kwargs, oracle, published f(x0) or None, minimizer or None)
MGH_CASES = {
    "helical_valley": ({}, np_helical_valley, 2500.0, [1.0, 0.0, 0.0]),
    "biggs_exp6": ({}, np_biggs_exp6, 0.779070, [1.0, 10.0, 1.0, 5.0, 4.0, 3.0]),
    "gaussian": ({}, np_gaussian, 3.88811e-6, None),
    "powell_badly_scaled": ({}, np_powell_badly_scaled, 1.13526, None),
    "box_3d": ({}, np_box_3d, 1031.15, [1.0, 10.0, 1.0]),
    "variably_dimensioned": ({"n": 10}, np_variably_dimensioned, 2.19855e6, [1.0] * 10),
    "watson": ({"n": 6}, np_watson, 30.0, None),
    "penalty_1": ({"n": 4}, np_penalty_1, 885.06264, None),
    "penalty_2": ({"n": 4}, np_penalty_2, 2.34001, None),
    "brown_badly_scaled": ({}, np_brown_badly_scaled, 999998000003.0, [1e6, 2e-6]),
    "brown_dennis": ({}, np_brown_dennis, 7.92669e6, None),
    "trigonometric": ({"n": 10}, np_trigonometric, None, None),
    "extended_rosenbrock": ({"n": 10}, np_extended_rosenbrock, 121.0, [1.0] * 10),
    "extended_powell": ({"n": 4}, np_extended_powell, 215.0, [0.0] * 4),
    "beale": ({}, np_beale, 14.203125, [3.0, 0.5]),
    "wood": ({}, np_wood, 19192.0, [1.0] * 4),
    "gulf": ({}, np_gulf, 12.1107, [50.0, 25.0, 1.5]),
    "chebyquad": ({"n": 8}, np_chebyquad, 0.0386177, None),
}

# MGH f* values as published: Moré, Garbow, Hillstrom, "Testing unconstrained
# optimization software", ACM TOMS 7(1), 1981 (the "f = ..." given with each function).
MGH_FOPT = {
    "helical_valley": 0.0, "biggs_exp6": 0.0, "gaussian": 1.12793e-8, "powell_badly_scaled": 0.0,
    "box_3d": 0.0, "variably_dimensioned": 0.0, "watson": 2.28767e-3, "penalty_1": 2.24997e-5,
    "penalty_2": 9.37629e-6, "brown_badly_scaled": 0.0, "brown_dennis": 85822.2,
    "trigonometric": 0.0, "extended_rosenbrock": 0.0, "extended_powell": 0.0, "beale": 0.0,
    "wood": 0.0, "gulf": 0.0, "chebyquad": 3.51687e-3,
}


def f64(p, x):
  return float(p.fun(jnp.asarray(x, dtype=jnp.float64)))


@pytest.mark.parametrize("name", sorted(MGH_CASES))
def test_mgh_value_at_x0(name):
  kwargs, oracle, published, _ = MGH_CASES[name]
  p = problems.get(name, **kwargs)
  assert p.x0.dtype == np.float64 and p.x0.shape == p.lower.shape == p.upper.shape
  assert np.all(p.lower == -np.inf) and np.all(p.upper == np.inf)
  value = f64(p, p.x0)
  np.testing.assert_allclose(value, oracle(list(p.x0)), rtol=1e-12)
  if published is not None:
    np.testing.assert_allclose(value, published, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(n for n, c in MGH_CASES.items() if c[3] is not None))
def test_mgh_value_at_minimizer(name):
  kwargs, oracle, _, x_opt = MGH_CASES[name]
  p = problems.get(name, **kwargs)
  assert p.f_opt == 0.0
  assert f64(p, x_opt) == pytest.approx(0.0, abs=1e-20)
  assert oracle(x_opt) == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("name", sorted(MGH_FOPT))
def test_mgh_f_opt_matches_table(name):
  p = problems.get(name, **MGH_CASES[name][0])
  assert p.f_opt == pytest.approx(MGH_FOPT[name], rel=1e-5, abs=0.0)


def test_rosenbrock_chained_and_boxed():
  for n in (2, 3, 10):
    p = problems.rosenbrock(n)
    assert p.x0[:4].tolist() == [-1.2, 1.0, -1.2, 1.0][:n]
    np.testing.assert_allclose(f64(p, p.x0), np_rosen_chained(list(p.x0)), rtol=1e-14)
    assert f64(p, np.ones(n)) == 0.0 and p.f_opt == 0.0
  assert f64(problems.rosenbrock(2), problems.rosenbrock(2).x0) == pytest.approx(24.2, rel=1e-14)
  p = problems.rosenbrock(10, lower=-1.5, upper=0.8)
  assert np.all(p.lower == -1.5) and np.all(p.upper == 0.8)
  assert p.f_opt == pytest.approx(6.00101639461)
  assert problems.rosenbrock(2, lower=-1.5, upper=0.8).f_opt == pytest.approx(0.04)
  assert f64(problems.rosenbrock(2), [0.8, 0.64]) == pytest.approx(0.04, rel=1e-14)


def test_driver1_definition():
  p = problems.driver1(25)
  assert np.all(p.x0 == 3.0)
  assert np.all(p.lower[0::2] == 1.0) and np.all(p.lower[1::2] == -100.0)
  assert np.all(p.upper == 100.0)
  np.testing.assert_allclose(f64(p, p.x0), np_driver1(list(p.x0)), rtol=1e-14)
  x = np.linspace(-1, 2, 25)
  np.testing.assert_allclose(f64(p, x), np_driver1(list(x)), rtol=1e-14)
  assert f64(p, np.ones(25)) == 0.0


@pytest.mark.rounding
def test_driver1_scipy_counts():
  """The L-BFGS-B distribution's driver1 run (m=5): nit 23, nfev 28, f 1.0834900835e-9."""
  so = pytest.importorskip("scipy.optimize")
  p = problems.driver1(25)
  vg = jax.jit(jax.value_and_grad(p.fun))

  def fg(x):
    v, g = vg(jnp.asarray(x))
    return float(v), np.asarray(g, dtype=np.float64)

  res = so.minimize(fg, p.x0, jac=True, method="L-BFGS-B",
                    bounds=so.Bounds(p.lower, p.upper), options=dict(maxcor=5))
  assert (res.nit, res.nfev) == (23, 28)
  assert res.fun == pytest.approx(1.0834900835e-9, rel=1e-8)


# ----------------------------------------------------------------------------
# MINPACK-2: loop oracles following deptfg / dpjbfg.
# ----------------------------------------------------------------------------


def _grid_value(x, nx, ny, i, j):
  if 1 <= i <= nx and 1 <= j <= ny:
    return x[nx * (j - 1) + (i - 1)]
  return 0.0


def np_ept(x, nx, ny, c=5.0):
  hx, hy = 1 / (nx + 1), 1 / (ny + 1)
  fquad = flin = 0.0
  for j in range(0, ny + 1):
    for i in range(0, nx + 1):
      v = _grid_value(x, nx, ny, i, j)
      vr = _grid_value(x, nx, ny, i + 1, j)
      vt = _grid_value(x, nx, ny, i, j + 1)
      fquad += ((vr - v) / hx) ** 2 + ((vt - v) / hy) ** 2
      flin -= c / 3 * (v + vr + vt)
  for j in range(1, ny + 2):
    for i in range(1, nx + 2):
      v = _grid_value(x, nx, ny, i, j)
      vl = _grid_value(x, nx, ny, i - 1, j)
      vb = _grid_value(x, nx, ny, i, j - 1)
      fquad += ((v - vl) / hx) ** 2 + ((v - vb) / hy) ** 2
      flin -= c / 3 * (v + vl + vb)
  return hx * hy / 2 * (0.5 * fquad + flin)


def np_pjb(x, nx, ny, ecc=0.1, b=10.0):
  hx, hy = 2 * math.pi / (nx + 1), 2 * b / (ny + 1)

  def p(t):
    return (1 + ecc * math.cos(t)) ** 3

  fquad = flin = 0.0
  for j in range(0, ny + 1):
    for i in range(0, nx + 1):
      xi = i * hx
      w = hx * hy * (2 * p(xi) + p(xi + hx)) / 6
      v = _grid_value(x, nx, ny, i, j)
      vr = _grid_value(x, nx, ny, i + 1, j)
      vt = _grid_value(x, nx, ny, i, j + 1)
      fquad += w * (((vr - v) / hx) ** 2 + ((vt - v) / hy) ** 2)
  for j in range(1, ny + 2):
    for i in range(1, nx + 2):
      xi = i * hx
      w = hx * hy * (2 * p(xi) + p(xi - hx)) / 6
      v = _grid_value(x, nx, ny, i, j)
      vl = _grid_value(x, nx, ny, i - 1, j)
      vb = _grid_value(x, nx, ny, i, j - 1)
      fquad += w * (((v - vl) / hx) ** 2 + ((v - vb) / hy) ** 2)
  for j in range(1, ny + 1):
    for i in range(1, nx + 1):
      flin += ecc * hx * hy * math.sin(i * hx) * _grid_value(x, nx, ny, i, j)
  return 0.5 * fquad - flin


def test_ept_matches_loop_oracle():
  nx, ny = 5, 3  # nx != ny catches transposed indexing
  p = problems.ept(nx, ny)
  hx, hy = 1 / (nx + 1), 1 / (ny + 1)
  d = [min(min(i, nx - i + 1) * hx, min(j, ny - j + 1) * hy)
       for j in range(1, ny + 1) for i in range(1, nx + 1)]
  np.testing.assert_allclose(p.x0, d, rtol=1e-15)
  np.testing.assert_array_equal(p.upper, p.x0)
  np.testing.assert_array_equal(p.lower, -p.x0)
  x = np.random.default_rng(0).uniform(-0.2, 0.2, nx * ny)
  for z in (p.x0, x):
    np.testing.assert_allclose(f64(p, z), np_ept(list(z), nx, ny), rtol=1e-13)
  assert p.f_opt is None


def test_pjb_matches_loop_oracle():
  nx, ny = 5, 3
  p = problems.pjb(nx, ny)
  hx = 2 * math.pi / (nx + 1)
  x0 = [max(math.sin(i * hx), 0.0) for j in range(1, ny + 1) for i in range(1, nx + 1)]
  np.testing.assert_allclose(p.x0, x0, rtol=1e-15, atol=1e-300)
  assert np.all(p.lower == 0.0) and np.all(p.upper == np.inf)
  x = np.random.default_rng(1).uniform(0.0, 1.0, nx * ny)
  for z in (p.x0, x):
    np.testing.assert_allclose(f64(p, z), np_pjb(list(z), nx, ny), rtol=1e-13)
  assert p.f_opt is None


@pytest.mark.parametrize("factory, f0, f_opt", [
    (problems.ept, -0.33320518, -0.41808763202),
    (problems.pjb, 16.461574, -0.18048799501),
])
def test_minpack2_50x50_reference_values(factory, f0, f_opt):
  p = factory(50, 50)
  assert p.x0.shape == (2500,)
  np.testing.assert_allclose(f64(p, p.x0), f0, rtol=1e-7)
  assert p.f_opt == f_opt
  assert np.all(p.lower <= p.x0) and np.all(p.x0 <= p.upper)


def test_minpack2_100x100_f_opt_and_x0():
  assert problems.ept(100, 100).f_opt == -0.41839102666
  assert problems.pjb(100, 100).f_opt == -0.18057436966
  np.testing.assert_allclose(f64(problems.ept(100, 100), problems.ept(100, 100).x0),
                             -0.33330066, rtol=1e-7)
  np.testing.assert_allclose(f64(problems.pjb(100, 100), problems.pjb(100, 100).x0),
                             20.666460, rtol=1e-7)


# ----------------------------------------------------------------------------
# MINPACK-2 MSA (dmsafg + dmsabc) and TAO's plate (plate2.c): loop oracles.
# ----------------------------------------------------------------------------


def np_msa_boundary(nx, ny):
  """dmsabc, scalar Newton per point, with its running xt += hx / yt += hy."""
  hx, hy = 1 / (nx + 1), 1 / (ny + 1)
  out = []
  for side, (xt, yt, limit) in enumerate([(-0.5, -0.5, nx + 2), (-0.5, 0.5, nx + 2),
                                          (-0.5, -0.5, ny + 2), (0.5, -0.5, ny + 2)]):
    values = []
    for _ in range(limit):
      u, v = xt, -yt
      for _ in range(5):
        n1 = u + u * v * v - u**3 / 3 - xt
        n2 = -v - u * u * v + v**3 / 3 - yt
        if math.sqrt(n1 * n1 + n2 * n2) <= 1e-10:
          break
        a, b, c, d = 1 + v * v - u * u, 2 * u * v, -2 * u * v, -1 - u * u + v * v
        det = a * d - b * c
        u, v = u - (d * n1 - b * n2) / det, v - (a * n2 - c * n1) / det
      values.append(u * u - v * v)
      if side < 2:
        xt += hx
      else:
        yt += hy
    out.append(values)
  return out  # bottom, top, left, right


def np_msa(x, nx, ny):
  """dmsafg's function value, with its boundary lookups (1-based arrays -> 0-based lists)."""
  bottom, top, left, right = np_msa_boundary(nx, ny)
  hx, hy = 1 / (nx + 1), 1 / (ny + 1)
  f = 0.0
  for j in range(0, ny + 1):
    for i in range(0, nx + 1):
      k = nx * (j - 1) + i - 1
      if i >= 1 and j >= 1:
        v = x[k]
      else:
        v = left[j] if i == 0 else bottom[i]
      if i < nx and j > 0:
        vr = x[k + 1]
      else:
        vr = bottom[i + 1] if j == 0 else right[j]
      if i > 0 and j < ny:
        vt = x[k + nx]
      else:
        vt = top[i] if j == ny else left[j + 1]
      f += math.sqrt(1 + ((vr - v) / hx) ** 2 + ((vt - v) / hy) ** 2)
  for j in range(1, ny + 2):
    for i in range(1, nx + 2):
      k = nx * (j - 1) + i - 1
      if i <= nx and j > 1:
        vb = x[k - nx]
      else:
        vb = right[j - 1] if i == nx + 1 else bottom[i]
      if i > 1 and j <= ny:
        vl = x[k - 1]
      else:
        vl = left[j] if i == 1 else top[i - 1]
      if i <= nx and j <= ny:
        v = x[k]
      else:
        v = top[i] if j == ny + 1 else right[j]
      f += math.sqrt(1 + ((v - vl) / hx) ** 2 + ((v - vb) / hy) ** 2)
  return hx * hy / 2 * f


def np_msa_x0(nx, ny):
  bottom, top, left, right = np_msa_boundary(nx, ny)
  hx, hy = 1 / (nx + 1), 1 / (ny + 1)
  return [((j * hy) * top[i] + (1 - j * hy) * bottom[i]
           + (i * hx) * right[j] + (1 - i * hx) * left[j]) / 2
          for j in range(1, ny + 1) for i in range(1, nx + 1)]


def test_msa_matches_loop_oracle():
  nx, ny = 5, 3
  p = problems.msa(nx, ny)
  assert p.name == "msa_5x3" and p.f_opt is None
  assert np.all(p.lower == -np.inf) and np.all(p.upper == np.inf)
  np.testing.assert_allclose(p.x0, np_msa_x0(nx, ny), rtol=1e-14, atol=1e-15)
  x = p.x0 + np.random.default_rng(2).uniform(-0.3, 0.3, nx * ny)
  for z in (p.x0, x):
    np.testing.assert_allclose(f64(p, z), np_msa(list(z), nx, ny), rtol=1e-12)
  for mine, theirs in zip(problems._msa_boundary(nx, ny), np_msa_boundary(nx, ny)):
    np.testing.assert_allclose(mine, theirs, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("nx, ny, bmx, bmy, height",
                         [(8, 6, 3, 3, 0.2), (8, 8, 2, 5, 0.3), (7, 4, 0, 4, -0.1)])
def test_msa_plate_bounds_follow_tao(nx, ny, bmx, bmy, height):
  p = problems.msa(nx, ny, bmx=bmx, bmy=bmy, height=height)
  assert p.name == f"msa_plate_{nx}x{ny}"
  lower = [height if ((nx - bmx) // 2 <= i < nx - (nx - bmx) // 2
                      and (ny - bmy) // 2 <= j < ny - (ny - bmy) // 2) else -np.inf
           for j in range(ny) for i in range(nx)]   # TAO MSA_Plate: 0-based i, j; row = j mx + i
  np.testing.assert_array_equal(p.lower, lower)
  assert np.all(p.upper == np.inf)
  np.testing.assert_allclose(p.x0, np_msa_x0(nx, ny), rtol=1e-14, atol=1e-15)
  x = np.random.default_rng(3).uniform(-0.4, 0.4, nx * ny)
  np.testing.assert_allclose(f64(p, x), np_msa(list(x), nx, ny), rtol=1e-12)


def test_msa_plate_default_size_and_errors():
  p = problems.msa(10, 6, height=0.1)   # bmx, bmy = 5, 3: i in [2, 8), j in [1, 5) (odd gaps widen it)
  assert p.lower.reshape(6, 10)[1:5, 2:8].tolist() == [[0.1] * 6] * 4
  assert np.count_nonzero(p.lower == 0.1) == 6 * 4
  with pytest.raises(ValueError, match="height"):
    problems.msa(8, 8, bmx=2)
  with pytest.raises(ValueError, match=r"\bbmx\b"):
    problems.msa(8, 8, bmx=9, bmy=2, height=0.1)
  with pytest.raises(ValueError, match=r"\bbmy\b"):
    problems.msa(8, 8, bmx=2, bmy=-1, height=0.1)
  with pytest.raises(ValueError, match="height"):
    problems.msa(8, 8, height=float("nan"))


def _scipy_solve(p, **options):
  so = pytest.importorskip("scipy.optimize")
  vg = jax.jit(jax.value_and_grad(p.fun))

  def fg(x):
    v, g = vg(jnp.asarray(x))
    return float(v), np.asarray(g, dtype=np.float64)

  return so.minimize(fg, p.x0, jac=True, method="L-BFGS-B", bounds=so.Bounds(p.lower, p.upper),
                     options=dict(maxcor=5, maxiter=100000, maxfun=100000, **options))


@pytest.mark.parametrize("kwargs, f_opt", [
    (dict(nx=8, ny=6, bmx=3, bmy=3, height=0.2), 1.5056627852),   # TAO plate2_1.out: 1.50566
    (dict(nx=8, ny=8, bmx=2, bmy=5, height=0.3), 1.6011483363),   # TAO plate2_2.out: 1.60115
    (dict(nx=50, ny=50, bmx=25, bmy=25, height=0.1), 1.4565613444),
])
def test_msa_plate_scipy_reproduces_reference(kwargs, f_opt):
  p = problems.msa(**kwargs)
  assert p.f_opt == f_opt
  tight = dict(ftol=1e-15, gtol=1e-10) if kwargs["nx"] == 50 else dict(ftol=1e-14, gtol=1e-9)
  res = _scipy_solve(p, **tight)
  assert res.fun == pytest.approx(f_opt, rel=1e-9)
  assert np.all(res.x >= p.lower)
  assert np.any(res.x == p.lower)   # the plate holds the surface up


def test_msa_unconstrained_50x50_f_opt():
  assert problems.msa(50, 50).f_opt == 1.4212274960
  np.testing.assert_allclose(f64(problems.msa(50, 50), problems.msa(50, 50).x0), 1.5183084814, rtol=1e-9)


@pytest.mark.rounding
def test_msa_plate_jax_lbfgsb_matches_scipy():
  from jax_lbfgsb import minimize

  p = problems.msa(8, 6, bmx=3, bmy=3, height=0.2)
  tight = dict(ftol=1e-14, gtol=1e-9, maxcor=5)
  expected = _scipy_solve(p, ftol=1e-14, gtol=1e-9)
  res = minimize(p.fun, jnp.asarray(p.x0), bounds=(jnp.asarray(p.lower), jnp.asarray(p.upper)), **tight)
  assert float(res.fun) == pytest.approx(expected.fun, rel=1e-8)
  assert float(res.fun) == pytest.approx(1.5056627852, rel=1e-9)
  x = np.asarray(res.x)
  assert np.all(x >= p.lower) and np.all(x <= p.upper)


def test_nnls():
  p = problems.nnls(30, 20, seed=3)
  rng = np.random.default_rng(3)
  A = rng.standard_normal((30, 20))
  b = rng.standard_normal(30)
  x = np.abs(rng.standard_normal(20))
  np.testing.assert_allclose(f64(p, x), 0.5 * np.sum((A @ x - b) ** 2), rtol=1e-12)
  assert np.all(p.lower == 0.0) and np.all(p.upper == np.inf) and p.f_opt is None
  assert f64(p, p.x0) == pytest.approx(0.5 * np.sum(b**2))


# ----------------------------------------------------------------------------
# Gradients, dtypes, registry.
# ----------------------------------------------------------------------------

GRAD_CASES = [
    ("rosenbrock", {"n": 5}),
    ("helical_valley", {}),
    ("gulf", {}),
    ("watson", {"n": 6}),
    ("chebyquad", {"n": 8}),
    ("penalty_2", {"n": 4}),
    ("ept", {"nx": 4, "ny": 3}),
    ("pjb", {"nx": 4, "ny": 3}),
    ("msa", {"nx": 4, "ny": 3}),
    ("msa", {"nx": 4, "ny": 3, "bmx": 2, "bmy": 1, "height": 0.1}),
]


@pytest.mark.parametrize("name, kwargs", GRAD_CASES)
def test_grad_matches_central_differences(name, kwargs):
  p = problems.get(name, **kwargs)
  rng = np.random.default_rng(0)
  x = p.x0 + 0.05 * rng.standard_normal(p.x0.size)
  if name == "gulf":
    x = p.x0 * (1 + 0.05 * rng.uniform(size=3))
  g = np.asarray(jax.jit(jax.grad(p.fun))(jnp.asarray(x)))
  step = 1e-6 * np.maximum(1.0, np.abs(x))
  E = np.diag(step)
  f_batch = jax.jit(jax.vmap(p.fun))
  f_plus = np.asarray(f_batch(jnp.asarray(x + E)))
  f_minus = np.asarray(f_batch(jnp.asarray(x - E)))
  fd = (f_plus - f_minus) / (2 * step)
  np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(fd).max()))


SMALL_KWARGS = {"ept": {"nx": 3, "ny": 2}, "pjb": {"nx": 3, "ny": 2}, "nnls": {"m": 4, "n": 3},
                "msa": {"nx": 3, "ny": 2, "height": 0.1}}


@pytest.mark.parametrize("name", sorted(problems.PROBLEMS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtype_follows_input(name, dtype):
  p = problems.get(name, **SMALL_KWARGS.get(name, {}))
  x = jnp.asarray(p.x0, dtype=dtype)
  value, grad = jax.jit(jax.value_and_grad(p.fun))(x)
  assert value.dtype == dtype and value.shape == ()
  assert grad.dtype == dtype and grad.shape == x.shape
  chex.assert_tree_all_finite((value, grad))
  assert p.x0.dtype == p.lower.dtype == p.upper.dtype == np.float64
  assert isinstance(p.name, str) and isinstance(p.description, str)


def test_get_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="rosenbrock"):
    problems.get("no_such_problem")


@pytest.mark.parametrize("call, argname", [
    (lambda: problems.rosenbrock(1), "n"),
    (lambda: problems.extended_powell(6), "n"),
    (lambda: problems.extended_rosenbrock(3), "n"),
    (lambda: problems.watson(40), "n"),
    (lambda: problems.ept(0, 5), "nx"),
    (lambda: problems.pjb(5, -1), "ny"),
    (lambda: problems.nnls(4, 2.5), "n"),
    (lambda: problems.rosenbrock(3, lower=[0.0, 0.0]), "lower"),
])
def test_invalid_sizes_raise(call, argname):
  with pytest.raises(ValueError, match=rf"\b{argname}\b"):
    call()
