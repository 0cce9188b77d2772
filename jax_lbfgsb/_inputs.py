"""The input layer shared by every entry point: a problem as the solver takes it.

:func:`prepare` is the one preparation every face calls (``minimize``, and so
``fmin_l_bfgs_b``, the command line and the page; ``LBFGSB``; the optax
transformation): it returns
a :class:`Setup`, the pytree each jitted solve takes. Its pieces:
:func:`prepare_x0` turns what SciPy and JAX users pass as ``x0`` (a NumPy or
JAX array, a Python list of numbers, integers, a pytree of arrays) into a
pytree of float arrays without weak types (JAX arrays stay JAX arrays, host
values become NumPy arrays), and names the dtype of the solve; the bounds go
through :func:`canonicalize_bounds` (rounded inward to the dtype of the
solve), the scales through :func:`prepare_scale`, both broadcast over pytrees
by :func:`broadcast_like`; ``fun``'s forms are read by
:mod:`jax_lbfgsb._objective`. ``minimize_batch``, whose ``x0``, bounds and
``args`` carry a batch axis, uses the pieces. Option values are checked in
:mod:`jax_lbfgsb._options`.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jax_lbfgsb._fun_key import TracedFun, traced_fun
from jax_lbfgsb._objective import check_fun_output, flat_fun_and_grad, gradient_form
from jax_lbfgsb._options import solver_options

__all__ = [
    "Setup", "broadcast_like", "canonicalize_bounds", "check_precision", "is_half", "prepare", "prepare_scale",
    "prepare_x0", "strong",
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


def broadcast_like(value: Any, x0: Any, dtype: Any, fill: float, name: str, where: str = "", noun: str = "bound",
                   cast: Any = None) -> Any:
  """``value`` raveled over ``x0``: an ``(n,)`` array of ``dtype``, for pytree bounds and scales.

  ``value`` is None (``fill`` everywhere), a scalar, or a pytree with the
  structure of ``x0`` (one array for an array ``x0``) whose leaves are None,
  scalars or of the leaf's shape; ``cast(v, dtype, fill)`` converts each
  (bounds round inward, :func:`_cast_inward`; default a plain cast). As in
  :func:`_as_bound`, host values stay NumPy (no device operation per call).
  ``name`` (in ``where``: ``bounds``) and ``noun`` name ``value`` in errors.

  >>> broadcast_like({"a": 1.0, "b": np.array([2.0, 3.0])}, {"a": np.zeros(()), "b": np.zeros(2)},
  ...                np.float64, np.inf, "x_scale", noun="scale")
  array([1., 2., 3.])
  """
  cast = cast or (lambda v, dtype, fill: (jnp if isinstance(v, jax.Array) else np).asarray(v, dtype))
  label = f"{where}: `{name}`" if where else name
  if isinstance(x0, (jax.Array, np.ndarray)) and isinstance(value, (list, tuple)):
    value = np.asarray(value)
  if value is None or (jax.tree_util.treedef_is_leaf(jax.tree.structure(value)) and jnp.ndim(value) == 0):
    n = sum(jnp.size(leaf) for leaf in jax.tree.leaves(x0))
    xp = jnp if isinstance(value, jax.Array) else np
    return xp.full((n,), fill if value is None else cast(value, dtype, fill), dtype)
  x_paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(x0)]
  b_leaves = jax.tree_util.tree_leaves_with_path(value, is_leaf=lambda v: v is None)
  b_paths = [jax.tree_util.keystr(p) for p, _ in b_leaves]
  if b_paths != x_paths:
    missing = sorted(set(x_paths) - set(b_paths)) or ["(none)"]
    extra = sorted(set(b_paths) - set(x_paths)) or ["(none)"]
    raise ValueError(
        f"{label} does not have the pytree structure of x0: leaves of x0 missing from {name}:"
        f" {', '.join(missing)}; leaves of {name} not in x0: {', '.join(extra)}. Give a scalar, or a"
        " pytree with one entry per leaf of x0."
    )
  parts = []
  for (path, leaf), (_, b) in zip(jax.tree_util.tree_leaves_with_path(x0), b_leaves):
    b = fill if b is None else b
    if jnp.ndim(b) and jnp.shape(b) != jnp.shape(leaf):
      raise ValueError(
          f"{label}{jax.tree_util.keystr(path)} has shape {jnp.shape(b)}: a {noun} of shape {jnp.shape(b)}"
          f" for a leaf of x0 of shape {jnp.shape(leaf)}; use a scalar or the leaf's shape."
      )
    xp = jnp if isinstance(b, jax.Array) else np
    parts.append(xp.broadcast_to(cast(b, dtype, fill), jnp.shape(leaf)).ravel())
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
    l, u = _fix_crossed(broadcast_like(lower, x0, dtype, -np.inf, "lower", "bounds", cast=_cast_inward),
                        broadcast_like(upper, x0, dtype, np.inf, "upper", "bounds", cast=_cast_inward))
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


_warned_x64 = False


def _warn_float32(name: str, what: str) -> None:
  """Once per process: the solve runs in float32 because float64 is off."""
  global _warned_x64
  if not _warned_x64:
    _warned_x64 = True
    warnings.warn(
        f"{name} is {what}, but float64 is disabled in JAX, so the solve runs in float32"
        " (SciPy solves in float64). Call jax.config.update('jax_enable_x64', True) at startup"
        " for float64, or pass float32 arrays to silence this warning.",
        UserWarning, stacklevel=4,
    )


def _is_number_list(x0: Any) -> bool:
  leaves = jax.tree.leaves(x0)
  return isinstance(x0, (list, tuple)) and bool(leaves) and all(
      isinstance(v, (numbers.Number, np.generic)) for v in leaves)


def _as_float_leaf(leaf: Any, path: Any, name: str, int_dtype: Any) -> Any:
  """``leaf`` as a float JAX array; ``path`` (its key path) names it in errors."""
  if not isinstance(leaf, (jax.Array, np.ndarray, numbers.Number, np.generic)):
    raise TypeError(
        f"{name}{jax.tree_util.keystr(path)} must be a float array (or a pytree of them); got"
        f" {type(leaf).__name__}.")
  dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
  if jnp.issubdtype(dtype, jnp.complexfloating) or not (
      jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer) or dtype == bool):
    raise TypeError(
        f"{name}{jax.tree_util.keystr(path)} must be real (float or integer); got dtype {dtype}. L-BFGS-B minimizes over"
        " real variables: split a complex x into its real and imaginary parts.")
  x64 = jax.config.jax_enable_x64
  # Host values stay NumPy arrays: the jitted solve takes them with its other
  # arguments, cheaper than a device operation here.
  xp = jnp if isinstance(leaf, jax.Array) else np
  if not jnp.issubdtype(dtype, jnp.floating):  # integers and bools become floats, as in SciPy
    if int_dtype is None and not x64:
      _warn_float32(name, f"of dtype {dtype}")
    return xp.asarray(leaf, np.dtype(int_dtype or (np.float64 if x64 else np.float32)))
  if isinstance(leaf, jax.Array):
    return leaf.astype(leaf.dtype) if leaf.weak_type else leaf  # no weak types: no recompiles
  if not x64 and np.dtype(dtype) == np.float64 and not isinstance(leaf, float):
    _warn_float32(name, "a float64 NumPy array")
  return np.asarray(leaf, np.dtype(dtype) if x64 or np.dtype(dtype).itemsize <= 4 else np.float32)


def prepare_x0(x0: Any, name: str = "x0", check_nan: bool = True) -> tuple[Any, Any]:
  """``(x0, dtype)``: ``x0`` as a pytree of float arrays (no weak types), and its solve dtype.

  JAX arrays (and tracers) stay JAX arrays; host values become NumPy arrays,
  which a jitted solve takes with its arguments (no device operation here).

  A list or tuple of numbers (nested or not) is one array, as in SciPy; any
  other list, tuple or dict is a pytree. Integer and bool arrays become
  float64 (float32, with a one-time warning, when ``jax_enable_x64`` is off;
  so do float64 NumPy arrays), or the dtype of the float leaves beside them.
  The float leaves must share one dtype: the solution cast back to a
  narrower leaf dtype could leave the bounds.

  Raises:
    TypeError: for complex or non-numeric leaves, float leaves of different
      dtypes, or a dtype narrower than float32.
    ValueError: for an empty ``x0``, or NaN entries (when concrete).

  >>> x0, dtype = prepare_x0([1, 2, 3])
  >>> x0.shape, str(dtype) in ("float32", "float64")
  ((3,), True)
  """
  if _is_number_list(x0):
    x0 = np.asarray(x0)
  with_paths, treedef = jax.tree_util.tree_flatten_with_path(x0)
  floats = {jnp.dtype(getattr(leaf, "dtype", None)) for _, leaf in with_paths
            if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)}
  if len(floats) > 1:
    raise TypeError(
        f"{name} has leaves of dtypes {sorted(d.name for d in floats)}; L-BFGS-B solves in one dtype"
        f" (a solution cast back to the narrower one could leave the bounds). Cast them first, e.g."
        f" jax.tree.map(lambda a: a.astype(jnp.float32), {name.split(': ')[-1]})."
    )
  int_dtype = next(iter(floats)) if floats else None
  leaves = [_as_float_leaf(leaf, path, name, int_dtype) for path, leaf in with_paths]
  if sum(leaf.size for leaf in leaves) == 0:
    raise ValueError(f"{name} is empty; L-BFGS-B needs at least one variable.")
  for (path, _), leaf in zip(with_paths, leaves):
    if check_nan and not isinstance(leaf, jax.core.Tracer):
      nan = np.flatnonzero(np.isnan(np.asarray(leaf)))
      if nan.size:
        raise ValueError(
            f"{name}{jax.tree_util.keystr(path)} has NaN entries (the first at raveled index"
            f" {int(nan[0])}); give a finite starting point inside the bounds.")
  dtype = jnp.result_type(*leaves)
  check_precision(dtype, name)
  return jax.tree.unflatten(treedef, leaves), dtype


def prepare_scale(x_scale: Any, x0: Any, dtype: Any, name: str = "x_scale") -> tuple[Any, bool]:
  """``(scale, auto)``: ``x_scale`` (None, ``"auto"``, a positive scalar, or an array or pytree like
  ``x0``) as ``(n,)`` scales of ``dtype`` (:func:`broadcast_like`), None for none and for
  ``"auto"`` (``auto`` True: chosen when a solve starts).

  Raises:
    ValueError: for another string, a shape or structure that does not fit
      ``x0``, or (when concrete) a scale that is not positive and finite.

  >>> prepare_scale(2.0, np.zeros(2), np.float64)
  (array([2., 2.]), False)
  """
  auto = isinstance(x_scale, str)
  if auto and x_scale != "auto":
    raise ValueError(f"{name} must be 'auto', a positive scalar, or an array or pytree like x0; got {x_scale!r}.")
  if x_scale is None or auto:
    return None, auto
  scale = broadcast_like(x_scale, x0, dtype, 1.0, name, noun="scale")
  if _is_concrete(scale):
    bad = np.flatnonzero(~(np.isfinite(np.asarray(scale)) & (np.asarray(scale) > 0)))
    if bad.size:
      raise ValueError(f"{name} must be positive and finite; entry {int(bad[0])} (of the raveled x0) is"
                       f" {float(scale[bad[0]])!r}.")
  return scale, False


# ---------------------------------------------------------------- mixed precision


def strong(tree: Any) -> Any:
  """``tree`` with array leaves and no weak types, so that e.g. ``jnp.full(n, 0.5)`` does not recompile."""
  return jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.asarray(leaf).dtype), tree)


def is_half(leaf: Any) -> bool:
  """Whether ``leaf`` is a float16 or bfloat16 array."""
  dtype = getattr(leaf, "dtype", None)
  return dtype is not None and jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32


def _mixed_x0(x0: Any, name: str, check_nan: bool) -> tuple[Any, Any]:
  """:func:`prepare_x0` with float16 and bfloat16 leaves kept as they are (no weak types) beside
  float32 ones, the solve in float32 over their exact float32 values."""
  if not any(is_half(leaf) for leaf in jax.tree.leaves(x0)):
    return prepare_x0(x0, name, check_nan)
  wide, dtype = prepare_x0(jax.tree.map(lambda a: a.astype(jnp.float32) if is_half(a) else a, x0), name, check_nan)
  return jax.tree.map(lambda a, w: strong(a) if is_half(a) else w, x0, wide), dtype


def _half_box(l: Any, u: Any, x0: Any, dtype: Any) -> tuple[jax.Array, jax.Array]:
  """The box rounded inward to each leaf's dtype (as float64 bounds are rounded to float32),
  in ``dtype``: float32 iterates inside it round to nearest into it."""
  unravel = ravel_pytree(jax.tree.map(lambda a: a.astype(dtype), x0))[1]
  pairs = [_fix_crossed(_cast_inward(lo, a.dtype, -np.inf), _cast_inward(hi, a.dtype, np.inf))
           for lo, hi, a in zip(*(jax.tree.leaves(unravel(jnp.asarray(b))) for b in (l, u)), jax.tree.leaves(x0))]
  return tuple(jnp.concatenate([pair[k].astype(dtype).ravel() for pair in pairs]) for k in (0, 1))


# ---------------------------------------------------------------- the problem


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=("x0", "l", "u", "args", "scale", "options"),
                   meta_fields=("fun", "jac", "has_aux", "auto_scale"))
@dataclasses.dataclass(frozen=True)
class Setup:
  """A problem as every face hands it to its jitted solve (made by :func:`prepare`): a pytree
  whose ``fun`` and flags are static, so that the compiled solve is keyed by them.

  Attributes:
    fun: ``fun`` keyed by its jaxpr (:func:`~jax_lbfgsb._fun_key.traced_fun`)
      (None in the optax face, whose objective comes with each update),
      returning ``f``, ``(f, grad)`` with ``jac``, ``(f, aux)`` with ``has_aux``.
    jac: whether ``fun`` returns its gradient.
    has_aux: whether ``fun`` returns an auxiliary output.
    auto_scale: ``x_scale="auto"``: the scales are chosen when a solve starts
      (:func:`solve_scale`).
    x0: a pytree of float arrays of one dtype, the dtype of the solve
      (float16 and bfloat16 leaves beside float32 ones in mixed precision).
    l, u: ``(n,)`` bounds over the raveled ``x0``, rounded inward to its dtype.
    args: ``fun``'s arguments, then the arrays it closes over (so that the
      implicit derivatives reach them).
    scale: ``(n,)`` scales, or None.
    options: the solver's :class:`~jax_lbfgsb._solver.Options`.
  """

  fun: TracedFun | None
  jac: bool
  has_aux: bool
  auto_scale: bool
  x0: Any
  l: Any
  u: Any
  args: tuple
  scale: Any
  options: Any

  def objective(self) -> tuple[jax.Array, Callable[[jax.Array], Any], Callable[..., tuple[jax.Array, jax.Array]]]:
    """Inside the jit: ``(x0_flat, unravel, fun_and_grad)``, ``fun_and_grad(x, params)`` over the
    raveled variables (:func:`flat_fun_and_grad`), after :func:`check_fun_output`."""
    x0_flat, unravel = ravel_pytree(self.x0)
    check_fun_output(self.fun, self.jac, self.has_aux, self.x0, self.args)
    return x0_flat, unravel, flat_fun_and_grad(self.fun, self.jac, self.has_aux, unravel)


def prepare(fun: Callable[..., Any] | None, x0: Any, args: Any = (), bounds: Any = None, *, jac: Any = None,
            has_aux: bool = False, x_scale: Any = None, options: dict[str, Any] | None = None, name: str = "x0",
            scale_name: str = "x_scale", mixed: bool = False, check_nan: bool = True) -> Setup:
  """The one preparation of a problem, shared by every face: ``fun`` in its gradient form
  (:func:`gradient_form`) keyed by its jaxpr, ``x0`` (:func:`prepare_x0`), the bounds
  (:func:`canonicalize_bounds`), the scales (:func:`prepare_scale`; all ones are no scaling, the
  very program of a solve without them) and the solver's options from checked option values
  (:func:`~jax_lbfgsb._options.check_options`, :data:`~jax_lbfgsb._options.DEFAULTS` for the rest).

  ``args`` that is not a tuple is one argument, as in SciPy; ``name`` and
  ``scale_name`` are how the face calls ``x0`` and ``x_scale`` in its errors. ``fun`` None (the optax face, whose
  objective comes with each update) prepares the rest. ``mixed``: float16 and
  bfloat16 leaves of ``x0`` stay as they are and the solve runs in float32,
  with the bounds rounded inward to each leaf's dtype. ``check_nan=False``
  leaves NaN entries to the solver (``NONFINITE``; no host sync).

  >>> setup = prepare(lambda x, c: jnp.sum((x - c) ** 2), np.zeros(2), 1.0, bounds=(0, 0.5))
  >>> setup.l, setup.u, setup.args
  (array([0., 0.]), array([0.5, 0.5]), (1.0,))
  """
  if not isinstance(args, tuple):
    args = (args,)
  x0, dtype = _mixed_x0(x0, name, check_nan) if mixed else prepare_x0(x0, name, check_nan)
  l, u = canonicalize_bounds(bounds, x0, dtype)
  if mixed and any(is_half(leaf) for leaf in jax.tree.leaves(x0)):
    l, u = _half_box(l, u, x0, dtype)
  scale, auto_scale = prepare_scale(x_scale, x0, dtype, scale_name)
  if scale is not None and _is_concrete(scale) and np.all(np.asarray(scale) == 1):
    scale = None
  traced = None
  if fun is not None:
    jac, fun = gradient_form(jac, fun)
    traced, consts = traced_fun(fun, x0, args)
    args = (*args, *consts)
  return Setup(traced, bool(jac), bool(has_aux), auto_scale, x0, l, u, args, scale,
               solver_options(dtype, **(options or {})))
