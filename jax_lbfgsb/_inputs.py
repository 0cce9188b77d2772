"""The input layer shared by every entry point: the variables as the solver takes them.

:func:`prepare_x0` turns what SciPy and JAX users pass as ``x0`` (a NumPy or
JAX array, a Python list of numbers, integers, a pytree of arrays) into a
pytree of float arrays without weak types (JAX arrays stay JAX arrays, host
values become NumPy arrays), and names the dtype of the solve.
``minimize`` (and so ``fmin_l_bfgs_b`` and ``LBFGSB``) and the optax
transformation call it; the bounds go through
:func:`jax_lbfgsb._bounds.canonicalize_bounds`. :func:`count_limit` reads
``maxiter``, ``maxfun`` and ``maxls`` as SciPy compares them.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_lbfgsb._bounds import check_precision
from jax_lbfgsb._scaling import flat_scale

__all__ = ["count_limit", "prepare_scale", "prepare_x0"]

_warned_x64 = False
_INT32_MAX = int(np.iinfo(np.int32).max)


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


def count_limit(value: Any, name: str, strict: bool) -> Any:
  """A limit on a count (``maxiter``, ``maxfun``, ``maxls``) as int32, compared as SciPy compares it.

  SciPy's L-BFGS-B compares its integer counts with the limits as given, so a
  fractional limit is valid (SciPy's gh-23430 test passes ``maxiter=100.1``):
  ``count >= value`` (``strict=False``: ``nit >= maxiter``, a line search's
  evaluations ``>= maxls``) holds exactly when ``count >= ceil(value)``, and
  ``count > value`` (``strict=True``: ``nfev > maxfun``) when ``count >
  floor(value)``. ``inf`` and values past int32 mean no limit. Traced values
  (under ``jit`` or ``vmap``) are rounded the same way.

  >>> int(count_limit(100.1, "maxiter", strict=False)), int(count_limit(5.5, "maxfun", strict=True))
  (101, 5)
  """
  if isinstance(value, jax.Array):
    if not jnp.issubdtype(value.dtype, jnp.floating):
      return value.astype(jnp.int32)
    whole = jnp.floor(value) if strict else jnp.ceil(value)
    return jnp.where(whole >= _INT32_MAX, _INT32_MAX, jnp.maximum(whole, -1).astype(jnp.int32))
  if isinstance(value, bool) or not (isinstance(value, numbers.Real) or (
      isinstance(value, np.ndarray) and jnp.issubdtype(value.dtype, jnp.number) and value.dtype != bool)):
    raise TypeError(f"{name} must be a number (a count of {'evaluations' if name != 'maxiter' else 'iterations'});"
                    f" got {value!r}.")
  if np.any(np.isnan(value)):
    raise ValueError(f"{name} must be a number, not NaN; use inf for no limit.")
  return np.asarray(np.clip(np.floor(value) if strict else np.ceil(value), -1, _INT32_MAX), np.int32)


def prepare_scale(x_scale: Any, x0: Any, dtype: Any, name: str = "x_scale") -> tuple[Any, bool]:
  """``(scale, auto)``: ``x_scale`` (None, ``"auto"``, a positive scalar, or an array or pytree like
  ``x0``) as ``(n,)`` scales of ``dtype`` (:func:`jax_lbfgsb._scaling.flat_scale`), None for none
  and for ``"auto"`` (``auto`` True: chosen when a solve starts).

  >>> prepare_scale(2.0, np.zeros(2), np.float64)
  (Array([2., 2.], dtype=float64), False)
  """
  auto = isinstance(x_scale, str)
  if auto and x_scale != "auto":
    raise ValueError(f"{name} must be 'auto', a positive scalar, or an array or pytree like x0; got {x_scale!r}.")
  return (None if x_scale is None or auto else flat_scale(x_scale, x0, dtype)), auto
