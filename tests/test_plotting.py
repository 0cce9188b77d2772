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
  """Records the arguments of Axes.plot, Axes.contourf and Axes.add_patch."""
  from matplotlib.axes import Axes

  calls = {"plot": [], "contourf": [], "add_patch": []}
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


def png_width(path):
  with open(path, "rb") as f:
    return int.from_bytes(f.read(20)[16:], "big")  # IHDR's first field


def test_convergence_plots_f_minus_f_opt(solved, tmp_path, drawn):
  nit = int(solved.nit)
  f = np.asarray(solved.history.f)[: nit + 1]
  eps = np.finfo(f.dtype).eps
  series = plot_convergence(solved.history, tmp_path / "c.png", f_opt=BOX.f_opt)
  assert is_png(tmp_path / "c.png") and isinstance(series, Series)
  np.testing.assert_array_equal(series.k, np.arange(nit + 1))
  gap = f - BOX.f_opt  # f* is known to 12 digits: its last gaps may round to <= 0
  np.testing.assert_array_equal(series.floored, gap <= 0)
  np.testing.assert_array_equal(series.y, np.where(gap > 0, gap, eps * BOX.f_opt))
  (k, y), *_ = drawn["plot"]
  np.testing.assert_array_equal(k, np.arange(nit + 1))
  np.testing.assert_array_equal(y, series.y)

  drawn["plot"].clear()
  best = plot_convergence(solved.history, tmp_path / "best.png")  # f_opt: the best f found
  np.testing.assert_array_equal(best.y[:-1], f[:-1] - f.min())
  # f_k - f_opt = 0 at the best point, off a log axis: drawn at the floor, with its own marker.
  assert best.floored.tolist() == [False] * nit + [True] and best.y[-1] == eps * f.min()
  [(k, y), (k_floor, y_floor, marker)] = drawn["plot"]
  assert len(k) == nit + 1 and k_floor.tolist() == [nit] and y_floor.tolist() == [best.y[-1]] and marker == "rv"


def test_gradient_norm_plots_projg(solved, tmp_path, drawn):
  series = plot_gradient_norm(solved.history, tmp_path / "g.png", dpi=50)
  assert is_png(tmp_path / "g.png") and png_width(tmp_path / "g.png") == 320 and not series.floored.any()  # 6.4 in
  projg = np.asarray(solved.history.projg)[: int(solved.nit) + 1]
  np.testing.assert_array_equal(series.y, projg)
  np.testing.assert_array_equal(drawn["plot"][0][1], projg)


def test_nothing_positive_to_plot(tmp_path):
  fixed = minimize(BOX.fun, jnp.asarray(BOX.x0), bounds=(BOX.x0, BOX.x0), history=HISTORY)
  series = plot_gradient_norm(fixed.history, tmp_path / "g.png")  # projg = 0: no warning, a note
  assert series.k.tolist() == [0] and np.isnan(series.y).all() and is_png(tmp_path / "g.png")


def test_contour_is_f_on_the_grid(solved, tmp_path, drawn):
  data = plot_contour(BOX.fun, solved.x, 0, 1, 0.5, tmp_path / "ct.png", history=solved.history, n_grid=21,
                      bounds=(BOX.lower, BOX.upper))
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
  # x(1) = 0.8 is on its upper bound: the edges x(1) = 0.8 and x(2) = 0.8 are
  # drawn, and the window is shaded but for the box (a hole in the shade).
  np.testing.assert_array_equal(data.box, [[-1.5, 0.8], [-1.5, 0.8]])
  [(shade,)] = drawn["add_patch"]
  outer, hole = shade.get_path().to_polygons()  # red-edged; the outer edges lie outside the window
  window = np.array([[data.u[0], data.v[0]], [data.u[-1], data.v[-1]]])
  assert (outer.min(0) < window[0]).all() and (outer.max(0) > window[1]).all()
  assert (hole.min(0) < window[0]).all() and hole.max(0).tolist() == [0.8, 0.8]


def flat(x):
  return jnp.sum(x) * 0.0


def test_contour_flat_function_and_errors(tmp_path, drawn):
  data = plot_contour(flat, jnp.zeros(3), 0, 2, 1.0, tmp_path / "flat.png", n_grid=5, bounds=(-2.0, None))
  assert data.z.shape == (5, 5) and not data.z.any() and len(data.path) == 0
  assert data.box.tolist() == [[-2.0, np.inf]] * 2 and not drawn["add_patch"]  # no bound in the window
  small = plot_contour(flat, jnp.zeros(3), 0, 2, 1.0, tmp_path / "small.png", n_grid=5, bounds=(-0.5, 0.5))
  np.testing.assert_array_equal(small.u, np.linspace(-1.0, 1.0, 5))  # the window stays around a smaller box
  assert len(drawn["add_patch"]) == 1
  with pytest.raises(ValueError, match="two different indices"):
    plot_contour(BOX.fun, jnp.zeros(10), 1, 1, 1.0, tmp_path / "x.png")
  with pytest.raises(ValueError, match="radius > 0"):
    plot_contour(BOX.fun, jnp.zeros(10), 0, 1, 0.0, tmp_path / "x.png")
