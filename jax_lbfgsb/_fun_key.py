"""``fun`` as a static argument of the solve's jit, keyed by what it computes.

SciPy users write ``minimize(lambda x: loss(x, batch), x0)``: a new function
object on every call. A jit keyed by the function's identity compiles the
whole solve again for each. Here ``fun`` is traced once to a jaxpr (about a
millisecond for a small ``fun``) and the compiled solve is keyed by

- the jaxpr's text: its equations, with the Python numbers, strings and
  functions that ``fun`` reads in them (a changed Python float in a closure,
  or another function called inside, is another key and compiles anew), and
- the types of ``x0`` and ``args`` and the structure of ``fun``'s output,

while the jaxpr's constants (the arrays ``fun`` closes over or reads from
globals, and arrays it builds) are passed to the solve as traced inputs. So
a new closure of the same code over new arrays reuses the compiled solve and
sees its own arrays. Python code that the text cannot show (callbacks,
custom derivative rules) keys the jaxpr to the ``fun`` object instead. A
``fun`` called again as the same object skips the tracing (one dictionary
look-up) and, as with :func:`jax.jit`, does not see globals rebound since.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any, Callable

import jax
import jax.extend.core as jex_core

__all__ = ["TracedFun", "traced_fun"]


class TracedFun:
  """``fun`` evaluated from its jaxpr, with its constants as trailing arguments.

  ``TracedFun(...)(x, *args, *consts)`` equals ``fun(x, *args)``. Equal (and
  hashed) by :attr:`key`, so a jit with it as a static argument compiles once
  per key.
  """

  __slots__ = ("key", "_jaxpr", "_out_tree", "_num_args", "__weakref__")

  def __init__(self, key: tuple, jaxpr: Any, out_tree: Any, num_args: int):
    self.key = key
    self._jaxpr = jaxpr
    self._out_tree = out_tree
    self._num_args = num_args

  def __call__(self, *args_and_consts: Any) -> Any:
    args, consts = args_and_consts[: self._num_args], args_and_consts[self._num_args:]
    out = jax.core.eval_jaxpr(self._jaxpr, list(consts), *jax.tree.leaves(args))
    return jax.tree.unflatten(self._out_tree, out)

  def __hash__(self) -> int:
    return hash(self.key)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, TracedFun) and self.key == other.key


# fun -> {types of (x0, args): (TracedFun, consts)}; entries go with fun.
_SEEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# One TracedFun per key, so that the jit's cache sees the same object.
_CANONICAL: dict[tuple, TracedFun] = {}


def _types(tree: Any) -> tuple:
  leaves, treedef = jax.tree.flatten(tree)
  return (treedef, *(jax.typeof(leaf) for leaf in leaves))


def _opaque(value: Any) -> bool:
  """Whether an equation parameter holds Python code or state that the jaxpr's
  text does not show (a callback, a custom derivative rule): such a jaxpr is
  reused only for the same ``fun`` object."""
  if isinstance(value, jex_core.ClosedJaxpr):
    return _has_opaque(value.jaxpr)
  if isinstance(value, jex_core.Jaxpr):
    return _has_opaque(value)
  if isinstance(value, (tuple, list)):
    return any(_opaque(v) for v in value)
  # Callables (a callback), and JAX's wrapped rules (WrappedFun: a custom_jvp
  # or custom_vjp rule, not callable, printed without its function).
  return callable(value) or type(value).__name__ == "WrappedFun" or " at 0x" in repr(value)


def _has_opaque(jaxpr: Any) -> bool:
  return any(_opaque(v) for eqn in jaxpr.eqns for v in eqn.params.values())


def traced_fun(fun: Callable[..., Any], x0: Any, args: tuple) -> tuple[TracedFun, list[Any]]:
  """``(traced, consts)`` with ``traced(x0, *args, *consts) == fun(x0, *args)``.

  ``traced`` is hashable by what ``fun`` computes (see the module docstring).
  A ``fun`` whose jaxpr calls Python code that its text cannot show (a
  ``jax.pure_callback``, a ``custom_jvp`` or ``custom_vjp`` rule) is keyed by
  its identity instead, as by :func:`jax.jit`.

  >>> import jax.numpy as jnp
  >>> f1, c1 = traced_fun(lambda x: jnp.sum((x - jnp.arange(3.0)) ** 2), jnp.zeros(3), ())
  >>> f2, c2 = traced_fun(lambda x: jnp.sum((x - jnp.arange(3.0)) ** 2), jnp.zeros(3), ())
  >>> f1 is f2, float(f2(jnp.ones(3), *c2))
  (True, 2.0)
  """
  types = _types((x0, args))
  try:
    known = _SEEN.get(fun)
  except TypeError:  # not weak-referenceable or not hashable: traced on every call
    known = None
  if known is not None and types in known:
    return known[types]
  closed, out_shape = jax.make_jaxpr(fun, return_shape=True)(x0, *args)
  out_tree = jax.tree.structure(out_shape)
  text = hashlib.sha256(str(closed.jaxpr).encode()).hexdigest()
  opaque = _has_opaque(closed.jaxpr)
  key = (text, types, out_tree, object() if opaque else None)
  traced = TracedFun(key, closed.jaxpr, out_tree, 1 + len(args))
  if not opaque:  # an opaque key is unique to this fun: kept alive by _SEEN (and the jit's cache) only
    traced = _CANONICAL.setdefault(key, traced)
  consts = list(closed.consts)
  # Tracers of an enclosing transformation must not outlive it.
  if not any(isinstance(c, jax.core.Tracer) for c in consts):
    try:
      _SEEN.setdefault(fun, {})[types] = (traced, consts)
    except TypeError:
      pass
  return traced, consts
