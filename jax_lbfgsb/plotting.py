"""The classic page's plots of a solve, saved as PNG files.

* :func:`plot_convergence`: ``f_k - f*`` per iteration, half-log (values <= 0 at a floor).
* :func:`plot_gradient_norm`: the largest projected-gradient component per iteration, half-log.
* :func:`plot_contour`: ``f`` around the best point in two variables, the others
  fixed, with the iterates' path and the bounds.

The first two read a :class:`~jax_lbfgsb._solver.History` (``minimize(...,
history=K)``); entries past the last iteration (NaN) are left out. Each
function saves a PNG (at ``dpi``, default 100) and returns the arrays it plotted.

Host-side only. matplotlib (the ``plot`` extra) is imported inside the
functions and draws on a bare Agg canvas: no pyplot and no global backend
change, so it runs headless and leaves a notebook's backend alone.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_lbfgsb._inputs import canonicalize_bounds

__all__ = ["Series", "ContourData", "plot_convergence", "plot_gradient_norm", "plot_contour"]


class Series(NamedTuple):
  """A half-log curve: ``y[m]`` at iteration ``k[m]``.

  Attributes:
    k: the iterations.
    y: the plotted values; a value that is not positive (off a log axis) is
      NaN, or a floor where ``floored``.
    floored: where ``y`` is the floor instead of the value (its own marker).
  """

  k: np.ndarray
  y: np.ndarray
  floored: np.ndarray


class ContourData(NamedTuple):
  """The data of :func:`plot_contour`.

  Attributes:
    u: ``(n_grid,)`` values of ``x_i``.
    v: ``(n_grid,)`` values of ``x_j``.
    z: ``(n_grid, n_grid)`` values of ``f``: ``z[a, b]`` is ``f`` at ``x_i = u[b]``,
      ``x_j = v[a]`` and the other variables at ``x_best``.
    path: ``(m, 2)`` the recorded iterates' ``(x_i, x_j)``; empty without a history.
    box: ``(2, 2)`` the bounds ``[[l_i, u_i], [l_j, u_j]]`` (``+-inf`` where none).
  """

  u: np.ndarray
  v: np.ndarray
  z: np.ndarray
  path: np.ndarray
  box: np.ndarray


def _recorded(history) -> np.ndarray:
  """Indices of the history entries that hold an iterate."""
  return np.flatnonzero(np.asarray(history.nfev) >= 0)


def _figure():
  from matplotlib.figure import Figure

  fig = Figure(figsize=(6.4, 4.2), layout="constrained")
  return fig, fig.add_subplot()


def _half_log(ax, series: Series, ylabel: str, floor_label: str = "") -> None:
  ax.set_xlabel("iteration k")
  ax.set_ylabel(ylabel)
  ax.grid(True, which="both", alpha=0.3)
  if np.isfinite(series.y).any():
    ax.set_yscale("log")
    ax.plot(series.k, series.y, marker=".", markersize=4)
    if series.floored.any():
      ax.plot(series.k[series.floored], series.y[series.floored], "rv", markersize=7, label=floor_label)
      ax.legend(loc="upper right", fontsize="small")
  else:
    ax.text(0.5, 0.5, "no positive values to plot", ha="center", va="center", transform=ax.transAxes)


def plot_convergence(history, path: str | os.PathLike, f_opt: float | None = None, dpi: int = 100) -> Series:
  """Plots ``f_k - f_opt`` against the iteration ``k`` on a log axis and saves it as a PNG.

  Args:
    history: ``result.history`` of a solve with ``history=K``.
    path: where to write the PNG.
    f_opt: the known optimal value; default the best ``f`` recorded.
    dpi: the PNG's dots per inch.

  Returns:
    The plotted :class:`Series`: ``y = f_k - f_opt``; where that is not
    positive (the best point when ``f_opt`` is the best ``f``, or rounding
    below a known ``f*``), ``y`` is the floor ``eps * max(|f_opt|, 1)`` of
    ``f``'s dtype and ``floored`` is set, so every iterate is drawn.
  """
  k = _recorded(history)
  f = np.asarray(history.f)[k]
  reference = float(np.min(f)) if f_opt is None else float(f_opt)
  floor = float(np.finfo(f.dtype).eps) * max(abs(reference), 1.0)
  gap = f.astype(np.float64) - reference
  floored = gap <= 0
  series = Series(k, np.where(floored, floor, gap), floored)
  fig, ax = _figure()
  what = "known f*" if f_opt is not None else "best f found"
  _half_log(ax, series, f"f_k - f_opt  (f_opt = {reference:.6g}, {what})",
            f"f_k - f_opt <= 0: drawn at eps max(|f_opt|, 1) = {floor:.2g}")
  ax.set_title("Convergence of f")
  fig.savefig(path, dpi=dpi)
  return series


def plot_gradient_norm(history, path: str | os.PathLike, dpi: int = 100) -> Series:
  """Plots the largest projected-gradient component ``||proj g_k||_inf`` per iteration (log axis).

  Returns:
    The plotted :class:`Series` (NaN where the norm is 0).
  """
  k = _recorded(history)
  projg = np.asarray(history.projg, np.float64)[k]
  series = Series(k, np.where(projg > 0, projg, np.nan), np.zeros(k.shape, bool))
  fig, ax = _figure()
  _half_log(ax, series, "||proj g_k||_inf")
  ax.set_title("Projected gradient norm")
  fig.savefig(path, dpi=dpi)
  return series


@functools.partial(jax.jit, static_argnames=("fun", "i", "j", "batch"))
def _grid_values(fun: Callable, x_best: jax.Array, points: jax.Array, *, i: int, j: int, batch: int):
  """``f`` at ``x_best`` with ``(x_i, x_j)`` replaced by each row of ``points``, ``batch`` at a time."""

  def at(point):
    return fun(x_best.at[i].set(point[0]).at[j].set(point[1]))

  return jax.lax.map(at, points, batch_size=batch)


def plot_contour(
    fun: Callable[[jax.Array], Any],
    x_best: Any,
    i: int,
    j: int,
    radius: float,
    path: str | os.PathLike,
    history=None,
    n_grid: int = 60,
    bounds=None,
    dpi: int = 100,
) -> ContourData:
  """Contours of ``f`` around ``x_best`` in the variables ``i`` and ``j``, the others fixed.

  The window is ``x_best[i] +- radius`` by ``x_best[j] +- radius``, also when
  the box is smaller. Contour levels are quantiles of ``f`` on the grid, so
  steep functions still show detail near the minimum. With a ``history``, the
  recorded iterates' ``(x_i, x_j)`` are drawn as a path (the part inside the
  window shows). With ``bounds``, the box's edges inside the window are drawn
  and the infeasible part is shaded, so that a minimum on a bound shows as one.

  Args:
    fun: ``fun(x) -> scalar`` for a 1-D ``x`` (the objective given to ``minimize``).
    x_best: the center, a 1-D array (e.g. ``result.x``).
    i, j: 0-based indices of the two variables (the CLI's ``--contour`` is 1-based).
    radius: half-width of the window, > 0.
    path: where to write the PNG.
    history: ``result.history``, or None.
    n_grid: grid points per axis.
    bounds: ``(lower, upper)`` of the solve (arrays shaped like ``x_best`` or
      scalars, ``None`` or ``+-inf`` for none), or None.
    dpi: the PNG's dots per inch.

  Returns:
    The :class:`ContourData` plotted.

  Raises:
    ValueError: for ``i == j``, an index out of range, ``radius <= 0`` or ``n_grid < 2``.
  """
  x = jnp.asarray(x_best)
  n = x.size
  if x.ndim != 1 or not (0 <= i < n and 0 <= j < n) or i == j:
    raise ValueError(f"plot_contour: need two different indices in 0..{n - 1} of a 1-D x_best; got i={i}, j={j}.")
  if not radius > 0 or n_grid < 2:
    raise ValueError(f"plot_contour: need radius > 0 and n_grid >= 2; got radius={radius}, n_grid={n_grid}.")
  center = np.asarray(x, np.float64)[[i, j]]
  u = center[0] + np.linspace(-radius, radius, n_grid)
  v = center[1] + np.linspace(-radius, radius, n_grid)
  uu, vv = np.meshgrid(u, v)  # uu[a, b] = u[b], vv[a, b] = v[a]
  points = jnp.asarray(np.stack([uu.ravel(), vv.ravel()], axis=1), x.dtype)
  batch = max(1, min(n_grid * n_grid, 2**22 // n))  # at most ~4M floats of x at a time
  z = np.asarray(_grid_values(fun, x, points, i=i, j=j, batch=batch), np.float64).reshape(n_grid, n_grid)
  box = np.stack([np.asarray(b, np.float64)[[i, j]] for b in canonicalize_bounds(bounds, x, x.dtype)], axis=1)
  trail = np.zeros((0, 2))
  if history is not None:
    trail = np.asarray(history.x, np.float64)[_recorded(history)][:, [i, j]]

  fig, ax = _figure()
  finite = z[np.isfinite(z)]
  levels = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, 21))) if finite.size else np.zeros(0)
  if levels.size >= 2:
    filled = ax.contourf(u, v, z, levels=levels, cmap="viridis")
    ax.contour(u, v, z, levels=levels, colors="k", linewidths=0.4)
    fig.colorbar(filled, ax=ax, label="f (levels at quantiles)")
  else:
    ax.text(0.5, 0.9, "f is constant on this window", ha="center", transform=ax.transAxes)
  _draw_box(ax, box, u, v)
  if len(trail):
    ax.plot(trail[:, 0], trail[:, 1], "w.-", linewidth=1, markersize=4, label="iterates")
  ax.plot(*center, "r*", markersize=12, label="best point")
  ax.set_xlim(u[0], u[-1])
  ax.set_ylim(v[0], v[-1])
  ax.set_xlabel(f"x({i + 1})")
  ax.set_ylabel(f"x({j + 1})")
  ax.set_title(f"f around the best point in x({i + 1}), x({j + 1}); others fixed")
  ax.legend(loc="upper right", fontsize="small")
  fig.savefig(path, dpi=dpi)
  return ContourData(u, v, z, trail, box)


def _draw_box(ax, box: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
  """Shades the window outside ``box`` and draws the box's edges, if any edge is in the window.

  One patch: the window widened by its size (so that its own edges are out of
  view), less the box clipped to that (a hole, drawn the other way round).
  """
  window = np.array([[u[0], u[-1]], [v[0], v[-1]]])
  if np.all((box[:, 0] <= window[:, 0]) & (box[:, 1] >= window[:, 1])):
    return
  from matplotlib.patches import PathPatch
  from matplotlib.path import Path

  span = window[:, 1:] - window[:, :1]
  (a0, a1), (b0, b1) = window + span * [-1.0, 1.0]
  (c0, c1), (d0, d1) = np.clip(box, [[a0], [b0]], [[a1], [b1]])
  outer = Path([(a0, b0), (a1, b0), (a1, b1), (a0, b1), (a0, b0)], closed=True)
  hole = Path([(c0, d0), (c0, d1), (c1, d1), (c1, d0), (c0, d0)], closed=True)
  ax.add_patch(PathPatch(Path.make_compound_path(outer, hole), facecolor=(0.8, 0.8, 0.8, 0.6), edgecolor="r",
                         linewidth=1.5, label="outside the bounds"))
