"""plotting: the PNGs are written, and what is drawn is the history and f on the grid."""

import jax.numpy as jnp
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from jax_lbfgsb import minimize, problems  # noqa: E402
from jax_lbfgsb.plotting import ContourData, Series, plot_contour, plot_convergence, plot_gradient_norm  # noqa: E402

BOX = problems.rosenbrock_box()
HISTORY = 1000  # as in tests/test_report.py and the CLI: one compiled solve for all three


@pytest.fixture(scope="module")
def solved():
  return minimize(BOX.fun, jnp.asarray(BOX.x0), bounds=(BOX.lower, BOX.upper), history=HISTORY)


@pytest.fixture
def drawn(monkeypatch):
  """Records the arrays handed to Axes.plot and Axes.contourf."""
  from matplotlib.axes import Axes

  calls = {"plot": [], "contourf": []}
  for name in calls:
    original = getattr(Axes, name)

    def spy(self, *args, _original=original, _name=name, **kwargs):
      calls[_name].append(args)
      return _original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, name, spy)
  return calls


def is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_convergence_plots_f_minus_f_opt(solved, tmp_path, drawn):
  nit = int(solved.nit)
  f = np.asarray(solved.history.f)[: nit + 1]
  series = plot_convergence(solved.history, tmp_path / "c.png", f_opt=BOX.f_opt)
  assert is_png(tmp_path / "c.png") and isinstance(series, Series)
  np.testing.assert_array_equal(series.k, np.arange(nit + 1))
  expected = np.where(f - BOX.f_opt > 0, f - BOX.f_opt, np.nan)
  np.testing.assert_array_equal(series.y, expected)
  [(k, y)] = drawn["plot"]
  np.testing.assert_array_equal(k, np.arange(nit + 1))
  np.testing.assert_array_equal(y, expected)

  best = plot_convergence(solved.history, tmp_path / "best.png")  # f_opt: the best f found
  np.testing.assert_array_equal(best.y[:-1], f[:-1] - f.min())
  assert np.isnan(best.y[-1])  # f_k - f_opt = 0 at the best point: off the log axis


def test_gradient_norm_plots_projg(solved, tmp_path, drawn):
  series = plot_gradient_norm(solved.history, tmp_path / "g.png")
  assert is_png(tmp_path / "g.png")
  projg = np.asarray(solved.history.projg)[: int(solved.nit) + 1]
  np.testing.assert_array_equal(series.y, projg)
  np.testing.assert_array_equal(drawn["plot"][0][1], projg)


def test_nothing_positive_to_plot(tmp_path):
  fixed = minimize(BOX.fun, jnp.asarray(BOX.x0), bounds=(BOX.x0, BOX.x0), history=HISTORY)
  series = plot_gradient_norm(fixed.history, tmp_path / "g.png")  # projg = 0: no warning, a note
  assert series.k.tolist() == [0] and np.isnan(series.y).all() and is_png(tmp_path / "g.png")


def test_contour_is_f_on_the_grid(solved, tmp_path, drawn):
  data = plot_contour(BOX.fun, solved.x, 0, 1, 0.5, tmp_path / "ct.png", history=solved.history, n_grid=21)
  assert is_png(tmp_path / "ct.png") and isinstance(data, ContourData)
  x = np.asarray(solved.x)
  np.testing.assert_allclose(data.u, x[0] + np.linspace(-0.5, 0.5, 21))
  np.testing.assert_allclose(data.v, x[1] + np.linspace(-0.5, 0.5, 21))
  for a, b in [(0, 0), (3, 17), (10, 10), (20, 5)]:
    point = x.copy()
    point[0], point[1] = data.u[b], data.v[a]
    assert data.z[a, b] == pytest.approx(float(BOX.fun(jnp.asarray(point))), rel=1e-13)
  u, v, z = drawn["contourf"][0]
  assert u is data.u and v is data.v and z is data.z
  path = np.asarray(solved.history.x)[: int(solved.nit) + 1][:, [0, 1]]
  np.testing.assert_array_equal(data.path, path)
  np.testing.assert_array_equal(drawn["plot"][0][0], path[:, 0])


def test_contour_flat_function_and_errors(tmp_path):
  data = plot_contour(lambda x: jnp.sum(x) * 0.0, jnp.zeros(3), 0, 2, 1.0, tmp_path / "flat.png", n_grid=5)
  assert data.z.shape == (5, 5) and not data.z.any() and len(data.path) == 0
  with pytest.raises(ValueError, match="two different indices"):
    plot_contour(BOX.fun, jnp.zeros(10), 1, 1, 1.0, tmp_path / "x.png")
  with pytest.raises(ValueError, match="radius > 0"):
    plot_contour(BOX.fun, jnp.zeros(10), 0, 1, 0.0, tmp_path / "x.png")
