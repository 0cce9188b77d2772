"""The options, as every face takes them: SciPy's defaults, the one validation, the solver's record.

:data:`DEFAULTS` holds SciPy's values (the one copy); :func:`check_options`
is the one validation, raising :class:`FieldError` that names each option as
its face names it (``minimize``'s ``maxcor`` is the optax face's
``memory_size``, the command line's ``--m`` and the page's ``m``);
:func:`count_limit` reads ``maxiter``, ``maxfun`` and ``maxls`` as SciPy
compares them; :func:`solver_options` builds the solver's traced
:class:`~jax_lbfgsb._solver.Options`; :func:`iprint_of` is SciPy's ``disp``
rule.
"""

from __future__ import annotations

import numbers
import string
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_lbfgsb._solver import Options

__all__ = ["DEFAULTS", "Defaults", "FieldError", "check_options", "count_limit", "iprint_of", "solver_options"]

_INT32_MAX = int(np.iinfo(np.int32).max)


class FieldError(ValueError):
  """Bad input in one field (an option, or a field of the command line or the page):
  :attr:`field` names it, the message says the rule.

  The message is a :meth:`str.format` template whose ``{name}`` fields are
  field names, spelled by each face (:meth:`spelled`: the command line writes
  ``--m``, the page ``m``), and whose ``{0}``, ``{1}``, ... are the values,
  never read as a template.

  Example:
    >>> err = FieldError("m", "{m} must be >= {0}, got {1}", 1, 0)
    >>> err.field, str(err), err.spelled(lambda name: f"--{name}")
    ('m', 'm must be >= 1, got 0', '--m must be >= 1, got 0')
  """

  def __init__(self, field: str, template: str, *values):
    self.field, self.template, self.values = field, template, values
    super().__init__(self.spelled(str))

  def spelled(self, spell: Callable[[str], str]) -> str:
    """The message with each field name written as ``spell(name)``."""
    return string.Formatter().vformat(self.template, self.values, _Spelling(spell))


class _Spelling(dict):
  def __init__(self, spell: Callable[[str], str]):
    super().__init__()
    self.spell = spell

  def __missing__(self, name: str) -> str:
    return self.spell(name)


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


class Defaults(NamedTuple):
  """SciPy's L-BFGS-B defaults (``scipy.optimize.minimize``'s ``options``), the one copy
  that every face reads; ``ls_ftol``, ``ls_gtol`` are ``lnsrlb``'s constants and the
  relative tests (ours) are off."""

  maxcor: int = 10
  ftol: float = 2.220446049250313e-09  # factr 1e7 times the float64 eps
  gtol: float = 1e-05
  maxiter: int = 15000
  maxfun: int = 15000
  maxls: int = 20
  ls_ftol: float = 1e-3
  ls_gtol: float = 0.9
  pgtol_rel: float = 0.0
  xtol_rel: float = 0.0


DEFAULTS = Defaults()


def iprint_of(disp: Any, iprint: int) -> int:
  """SciPy's rule: ``disp``, when not None, overrides ``iprint`` (0: silent).

  >>> iprint_of(None, 5), iprint_of(0, 5), iprint_of(99, -1)
  (5, -1, 99)
  """
  return iprint if disp is None else -1 if disp == 0 else int(disp)


def check_options(names: dict[str, str] | None = None, where: str = "", **values: Any) -> dict[str, Any]:
  """Raises :class:`FieldError` for an invalid option value, the field named as the caller
  names it (``names`` maps ours to theirs; ``where``, e.g. ``"lbfgsb"``, prefixes the
  message); returns ``values`` with ``maxiter``, ``maxfun``, ``maxls`` as int32
  (:func:`count_limit`). Traced values are checked where they can be (on the device they
  cannot).

  >>> check_options(maxls=2.5)
  {'maxls': array(3, dtype=int32)}
  >>> check_options({"maxcor": "m"}, maxcor=0)
  Traceback (most recent call last):
  ...
  jax_lbfgsb._options.FieldError: m must be >= 1, got 0
  """
  name = lambda k: (names or {}).get(k, k)  # noqa: E731
  prefix = f"{where}: " if where else ""

  def error(k: str, rule: str, *shown: Any) -> FieldError:
    return FieldError(name(k), prefix + "{%s} " % name(k) + rule, *shown)

  for k, low in (("maxcor", 1), ("history", 0)):
    value = values.get(k, low)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
      raise error(k, "must be a Python int (it fixes array shapes), got {0!r}", value)
    if value < low:
      raise error(k, "must be >= {0}, got {1}", low, value)
  out = dict(values)
  for k in ("maxiter", "maxfun", "maxls"):
    if k in values:
      out[k] = count_limit(values[k], prefix + name(k), strict=k == "maxfun")
  for k, low in (("maxls", 1), ("ftol", 0), ("gtol", 0), ("pgtol_rel", 0), ("xtol_rel", 0)):
    value = out.get(k, low)
    if not isinstance(value, jax.core.Tracer) and np.ndim(value) == 0 and not value >= low:
      raise error(k, "must be >= {0}, got {1}", low, values[k])
  ls = [values.get(k) for k in ("ls_ftol", "ls_gtol")]
  if all(v is not None and not isinstance(v, jax.core.Tracer) for v in ls) and not 0 < ls[0] < ls[1] < 1:
    a, b = name("ls_ftol"), name("ls_gtol")
    raise FieldError(b if not 0 < ls[1] < 1 else a,
                     prefix + "{%s} and {%s} must satisfy 0 < %s < %s < 1; got {0}, {1}" % (a, b, a, b), *ls)
  return out


def _scalar(value: Any, dtype: Any) -> Any:
  """An option as a 0-d array of ``dtype``: NumPy for host values (no device op per call)."""
  return jnp.asarray(value, dtype) if isinstance(value, jax.Array) else np.asarray(value, dtype)


def solver_options(dtype: Any, **values: Any) -> Options:
  """The solver's :class:`~jax_lbfgsb._solver.Options` from option values (checked ones:
  :func:`check_options`), :data:`DEFAULTS` for those not given: counts as int32,
  tolerances in ``dtype``.

  >>> solver_options(np.float32, gtol=1e-3).ls_gtol
  array(0.9, dtype=float32)
  """
  values = {**DEFAULTS._asdict(), **values}
  return Options(**{name: _scalar(values[name], np.int32 if name in ("maxiter", "maxfun", "maxls") else dtype)
                    for name in Options._fields})
