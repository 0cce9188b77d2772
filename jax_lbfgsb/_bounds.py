"""Bounds: canonical form, projection, projected gradient, largest feasible step.

The reference encodes each variable's bounds as ``nbd`` (0 free, 1 lower only,
2 both, 3 upper only). Here the bounds are two arrays ``l, u`` with ``-inf`` /
``+inf`` where a bound is absent, and ``nbd`` becomes the masks
``has_l = l > -inf`` and ``has_u = u < inf``.

Mirrors ``active``, ``projgr`` and the ``stpmx`` loop of ``lnsrlb`` in SciPy's
``lbfgsb.c``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "check_precision",
    "canonicalize_bounds",
    "project",
    "projected_gradient",
    "projected_gradient_norm",
    "steps_to_bounds",
    "max_feasible_step",
    "first_argmin",
]


def check_precision(dtype: Any, name: str) -> None:
  """Raises ``TypeError`` for float dtypes narrower than float32 (float16, bfloat16).

  Their 8-11 bit significands leave the line search and the curvature pairs no
  precision: f stops changing after a step or two.
  """
  if jnp.finfo(dtype).bits < 32:
    raise TypeError(
        f"{name} has dtype {jnp.dtype(dtype).name}; L-BFGS-B needs float32 or float64 (its line"
        " search and curvature pairs need more than a half-precision significand). Solve in"
        " float32 (cast with .astype(jnp.float32)) and cast the solution back; round the bounds"
        " to your dtype inward first if the cast solution must stay inside them."
    )


def _is_concrete(a: Any) -> bool:
  return not isinstance(a, jax.core.Tracer)


def _as_bound(value: Any, n: int, dtype: Any, fill: float, name: str) -> Any:
  """One side of the bounds as an ``(n,)`` array; ``None`` means ``fill``.

  Host values (None, numbers, lists, NumPy arrays, and concrete JAX arrays
  through :func:`_on_host`) stay NumPy arrays, so a call with concrete bounds
  dispatches no device operations before the solve.
  """
  if value is None:
    return np.full((n,), fill, dtype)
  if isinstance(value, (list, tuple)):
    value = np.asarray([fill if v is None else v for v in value], dtype=np.float64)
  xp = jnp if isinstance(value, jax.Array) else np
  if np.size(value) == 1:  # a scalar, or SciPy's Bounds(-1.5, 0.8) (lb of shape (1,)): for all
    return xp.full((n,), _cast_inward(xp.reshape(value, ()), dtype, fill), dtype)
  if np.size(value) != n:
    raise ValueError(
        f"bounds: `{name}` has {np.size(value)} entries but x0 has {n}; give one"
        f" {name} bound per variable of x0, or a scalar to use for all."
    )
  arr = value if np.shape(value) == (n,) else xp.reshape(value, (n,))
  return _cast_inward(arr, dtype, fill)


def _cast_inward(value: Any, dtype: Any, fill: float) -> Any:
  """``value`` as ``dtype``, rounded into the box where the cast is inexact: a
  lower bound (``fill = -inf``) up, an upper bound down, so that a float32
  ``x`` inside the cast box is inside the caller's float64 box."""
  xp = jnp if isinstance(value, jax.Array) else np
  value = xp.asarray(value)
  cast = value.astype(dtype)
  if cast.dtype == value.dtype:
    return cast
  back = cast.astype(value.dtype)
  outside = back < value if fill < 0 else back > value
  if xp is np:
    return np.where(outside, np.nextafter(cast, np.asarray(-fill, dtype)), cast)
  # The bound's derivative passes straight through (nextafter has no derivative rule).
  flat = jax.lax.stop_gradient(cast)
  return cast + jnp.where(outside, jnp.nextafter(flat, jnp.asarray(-fill, dtype)) - flat, 0.0)


def _fix_crossed(l: Any, u: Any) -> tuple[Any, Any]:
  """Where rounding inward crossed the bounds (a box narrower than the dtype's
  spacing, e.g. a fixed variable at 0.1 in float32: no float32 lies inside),
  both become the value just above the lower bound."""
  xp = jnp if isinstance(l, jax.Array) or isinstance(u, jax.Array) else np
  up = xp.nextafter(u if xp is np else jax.lax.stop_gradient(u), xp.asarray(np.inf, u.dtype))
  crossed = (l > u) & (up == l)
  return l, xp.where(crossed, l, u)


def _pytree_bound(value: Any, x0: Any, dtype: Any, fill: float, name: str) -> Any:
  """One side of pytree bounds, raveled: None, a scalar, or a pytree shaped like ``x0``.

  As in :func:`_as_bound`, host values stay NumPy (no device operation per call).
  """
  if value is None or (jax.tree_util.treedef_is_leaf(jax.tree.structure(value)) and jnp.ndim(value) == 0):
    n = sum(jnp.size(leaf) for leaf in jax.tree.leaves(x0))
    xp = jnp if isinstance(value, jax.Array) else np
    return xp.full((n,), fill if value is None else _cast_inward(value, dtype, fill), dtype)
  x_paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(x0)]
  b_leaves = jax.tree_util.tree_leaves_with_path(value, is_leaf=lambda v: v is None)
  b_paths = [jax.tree_util.keystr(p) for p, _ in b_leaves]
  if b_paths != x_paths:
    missing = sorted(set(x_paths) - set(b_paths)) or ["(none)"]
    extra = sorted(set(b_paths) - set(x_paths)) or ["(none)"]
    raise ValueError(
        f"bounds: `{name}` does not have the pytree structure of x0: leaves of x0"
        f" missing from {name}: {', '.join(missing)}; leaves of {name} not in x0:"
        f" {', '.join(extra)}. Give a scalar, or a pytree with one entry per leaf of x0."
    )
  parts = []
  for (path, leaf), (_, b) in zip(jax.tree_util.tree_leaves_with_path(x0), b_leaves):
    b = fill if b is None else b
    if jnp.ndim(b) and jnp.shape(b) != jnp.shape(leaf):
      raise ValueError(
          f"bounds: `{name}`{jax.tree_util.keystr(path)} has shape {jnp.shape(b)} but the"
          f" leaf of x0 has shape {jnp.shape(leaf)}; use a scalar or the leaf's shape."
      )
    xp = jnp if isinstance(b, jax.Array) else np
    parts.append(xp.broadcast_to(_cast_inward(b, dtype, fill), jnp.shape(leaf)).ravel())
  return np.concatenate(parts) if all(isinstance(p, np.ndarray) for p in parts) else jnp.concatenate(parts)


def _on_host(value: Any) -> Any:
  """A concrete JAX array as NumPy: concrete bounds are checked and cast on the host
  (a few eager device operations would cost more than the solve of a small problem)."""
  return np.asarray(value) if isinstance(value, jax.Array) and _is_concrete(value) else value


def _kept(given: Any, host: Any, bound: Any) -> Any:
  """The caller's concrete array (``host``: its values) where canonicalizing left it
  as it was (same shape, dtype and values; not weakly typed, which would compile
  another solve): no transfer, and its placement on devices is kept."""
  if (isinstance(given, jax.Array) and not given.weak_type and isinstance(host, np.ndarray)
      and isinstance(bound, np.ndarray) and host.shape == bound.shape and host.dtype == bound.dtype
      and np.array_equal(host, bound)):
    return given
  return bound


def _check_concrete(l: jax.Array, u: jax.Array) -> None:
  """NaN bounds and ``lower > upper`` raise when the values are known at trace time."""
  if not (_is_concrete(l) and _is_concrete(u)):
    return
  l_np, u_np = np.asarray(l), np.asarray(u)
  for name, arr in (("lower", l_np), ("upper", u_np)):
    if np.isnan(arr).any():
      i = int(np.flatnonzero(np.isnan(arr))[0])
      raise ValueError(f"bounds: `{name}`[{i}] is NaN; use -inf/inf (or None) for no bound.")
  for name, arr, sign in (("lower", l_np, np.inf), ("upper", u_np, -np.inf)):
    if (arr == sign).any():
      i = int(np.flatnonzero(arr == sign)[0])
      raise ValueError(
          f"bounds: `{name}`[{i}] is {sign}, which no x can satisfy; use"
          f" {-sign} (or None) for no bound."
      )
  bad = np.flatnonzero(l_np > u_np)
  if bad.size:
    i = int(bad[0])
    raise ValueError(
        f"bounds: lower[{i}] = {l_np[i]!r} > upper[{i}] = {u_np[i]!r}"
        f" ({bad.size} such indices; indices count the raveled x0); every lower"
        " bound must be <= its upper bound."
    )


def canonicalize_bounds(bounds: Any, x0: Any, dtype: Any) -> tuple[jax.Array, jax.Array]:
  """Turns any accepted ``bounds`` into ``(l, u)``, two ``(n,)`` arrays over the raveled ``x0``.

  Accepted: ``None``; ``(lower, upper)`` with scalars (``None`` or ``+-inf``
  for none) or, for an array ``x0``, arrays of its size, or, for a pytree
  ``x0``, pytrees of its structure (leaves scalars or of the leaf's shape); for
  an array ``x0`` also a sequence of ``(lo, hi)`` pairs and an object with
  ``.lb`` and ``.ub`` such as ``scipy.optimize.Bounds``.

  Bounds cast to a narrower dtype (float64 values for a float32 ``x0``) are
  rounded inward (lower up, upper down), so that ``x`` inside them is inside
  the bounds given.

  Raises:
    ValueError: on a size or structure mismatch (naming the leaf), NaN bounds,
      or (when the bounds are concrete) ``lower > upper``, naming the first
      offending index.
  """
  if not isinstance(x0, (jax.Array, np.ndarray)):
    if bounds is None:
      lower = upper = None
    elif isinstance(bounds, (list, tuple)) and len(bounds) == 2:
      lower, upper = bounds
    else:
      raise ValueError(
          "bounds: for a pytree x0, expected None or (lower, upper) with scalars"
          f" or pytrees shaped like x0; got {type(bounds).__name__}."
      )
    l, u = _fix_crossed(_pytree_bound(lower, x0, dtype, -np.inf, "lower"),
                        _pytree_bound(upper, x0, dtype, np.inf, "upper"))
    _check_concrete(l, u)
    return l, u
  n = int(np.size(x0))
  if bounds is None:
    lower = upper = None
  elif hasattr(bounds, "lb") and hasattr(bounds, "ub"):
    lower, upper = bounds.lb, bounds.ub
  elif isinstance(bounds, (list, tuple)) and len(bounds) == n and n != 2 and all(
      isinstance(b, (list, tuple)) and len(b) == 2 for b in bounds
  ):
    lower, upper = [b[0] for b in bounds], [b[1] for b in bounds]
  elif isinstance(bounds, (list, tuple)) and len(bounds) == 2:
    lower, upper = bounds
    # n == 2 is ambiguous: ((lo0, hi0), (lo1, hi1)) vs (lower, upper). SciPy
    # reads a sequence of n pairs; a pair of arrays/scalars is (lower, upper).
    if n == 2 and all(isinstance(b, (list, tuple)) and len(b) == 2 for b in bounds):
      lower, upper = [b[0] for b in bounds], [b[1] for b in bounds]
  else:
    raise ValueError(
        "bounds: expected None, (lower, upper), a sequence of (lo, hi) pairs"
        f" (one per variable), or an object with .lb and .ub; got {type(bounds).__name__}"
        + (f" of length {len(bounds)} for {n} variables" if hasattr(bounds, "__len__") else "")
        + "."
    )
  lower_h, upper_h = _on_host(lower), _on_host(upper)
  l, u = _fix_crossed(_as_bound(lower_h, n, dtype, -np.inf, "lower"), _as_bound(upper_h, n, dtype, np.inf, "upper"))
  _check_concrete(l, u)
  return _kept(lower, lower_h, l), _kept(upper, upper_h, u)


def project(x: jax.Array, l: jax.Array, u: jax.Array) -> jax.Array:
  """Projection onto the box ``[l, u]`` (``active`` in the reference).

  A bound that no ``x`` satisfies (NaN, a lower bound at +inf, an upper bound
  at -inf: traced, they end the solve as ``INVALID_BOUNDS``) leaves ``x`` as
  it is on that side, so ``x`` stays finite.
  """
  return jnp.where((x < l) & (l < jnp.inf), l, jnp.where((x > u) & (u > -jnp.inf), u, x))


def projected_gradient(x: jax.Array, g: jax.Array, l: jax.Array, u: jax.Array) -> jax.Array:
  """The projected gradient of ``projgr``, componentwise.

  For ``g_i < 0`` with an upper bound the component is ``max(x_i - u_i, g_i)``;
  for ``g_i >= 0`` with a lower bound it is ``min(x_i - l_i, g_i)``.
  """
  has_l = l > -jnp.inf
  has_u = u < jnp.inf
  pg = jnp.where((g < 0) & has_u, jnp.maximum(x - u, g), g)
  return jnp.where((g >= 0) & has_l, jnp.minimum(x - l, g), pg)


def projected_gradient_norm(x: jax.Array, g: jax.Array, l: jax.Array, u: jax.Array) -> jax.Array:
  """``||proj g||_inf`` as ``projgr`` computes it; NaN in ``g`` gives NaN."""
  norm = jnp.max(jnp.abs(projected_gradient(x, g, l, u)), initial=0.0)
  return jnp.where(jnp.any(jnp.isnan(g)), jnp.nan, norm).astype(x.dtype)


def steps_to_bounds(x: jax.Array, d: jax.Array, l: jax.Array, u: jax.Array) -> jax.Array:
  """For each variable, the largest ``t`` with ``l_i <= x_i + t d_i <= u_i`` (``inf`` when unlimited).

  A bounded variable already at its bound with ``d_i`` pointing out gives 0.
  """
  to_l = jnp.where(l - x >= 0, 0.0, (l - x) / jnp.where(d < 0, d, -1.0))
  to_u = jnp.where(u - x <= 0, 0.0, (u - x) / jnp.where(d > 0, d, 1.0))
  return jnp.where((d < 0) & (l > -jnp.inf), to_l, jnp.where((d > 0) & (u < jnp.inf), to_u, jnp.inf))


def max_feasible_step(x: jax.Array, d: jax.Array, l: jax.Array, u: jax.Array) -> jax.Array:
  """Largest ``stp <= 1e10`` with ``l <= x + stp * d <= u`` (``stpmx`` in ``lnsrlb``)."""
  big = jnp.asarray(1e10, x.dtype)
  return jnp.minimum(big, jnp.min(steps_to_bounds(x, d, l, u), initial=big)).astype(x.dtype)


def first_argmin(values: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(i, values[i])`` for the first index ``i`` of the minimum of a 1-D array.

  Two plain min-reductions, which vectorize on CPU where ``argmin``'s paired
  reduction does not (about 2x faster at n = 10^4). A NaN minimum gives the
  last index.
  """
  low = jnp.min(values)
  index = jnp.arange(values.size, dtype=jnp.int32)
  return jnp.minimum(jnp.min(jnp.where(values == low, index, values.size)), values.size - 1), low
