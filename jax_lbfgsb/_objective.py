"""The objective as the solver sees it: ``fun``'s forms, over the raveled variables, and scaled.

:func:`gradient_form` reads SciPy's ``jac``; :func:`parts` splits ``fun``'s
output (``f``, ``(f, grad)``, ``(f, aux)``, ``((f, aux), grad)``);
:func:`flat_fun_and_grad` is ``fun`` and its gradient over the raveled
variables; :func:`check_fun_output` checks the output's form at trace time.
With scales ``s`` the solver works on ``y = x / s`` (:func:`scaled`,
:func:`solve_scale`, :func:`solver_problem`; :mod:`jax_lbfgsb._scaling`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jax_lbfgsb import _scaling
from jax_lbfgsb._bounds import project

__all__ = ["check_fun_output", "flat_fun_and_grad", "gradient_form", "parts", "scaled", "solve_scale",
           "solver_problem"]


# ---------------------------------------------------------------- fun's forms


def gradient_form(jac: Any, fun: Callable[..., Any]) -> tuple[bool, Callable[..., Any]]:
  """``(jac, fun)`` with ``jac`` a bool: SciPy's ``jac`` forms, the gradient never by finite differences."""
  if jac is None or jac is False or (isinstance(jac, str) and jac in ("2-point", "3-point", "cs")):
    return False, fun
  if jac is True:
    return True, fun
  if callable(jac):
    return True, lambda x, *args: (fun(x, *args), jac(x, *args))
  raise ValueError(
      f"minimize: jac={jac!r} is not understood; use None (gradient by jax.grad), True (fun returns"
      " (f, grad)) or a callable jac(x, *args) returning the gradient."
  )


def parts(out: Any, jac: bool, has_aux: bool) -> tuple[Any, Any, Any]:
  """``(f, grad or None, aux or None)`` from ``fun``'s output: ``f``, ``(f, grad)``
  with ``jac``, ``(f, aux)`` with ``has_aux``, ``((f, aux), grad)`` with both."""
  grad = None
  if jac:
    out, grad = out
  aux = None
  if has_aux:
    out, aux = out
  return out, grad, aux


def flat_fun_and_grad(fun: Callable[..., Any], jac: bool, has_aux: bool, unravel: Callable[[Any], Any]
                      ) -> Callable[[jax.Array, tuple], tuple[jax.Array, jax.Array]]:
  """``fun_and_grad(x, params) -> (f, g)`` over the raveled variables ``x``: ``fun(unravel(x), *params)``
  and its gradient (``fun``'s own with ``jac``, else :func:`jax.value_and_grad`), raveled, in ``x``'s dtype."""
  value = lambda *inputs: parts(fun(*inputs), False, has_aux)[0]  # noqa: E731

  def fun_and_grad(x, params):
    inputs = (unravel(x), *params)
    f, g = parts(fun(*inputs), True, has_aux)[:2] if jac else jax.value_and_grad(value)(*inputs)
    return jnp.asarray(f, x.dtype).reshape(()), ravel_pytree(g)[0].astype(x.dtype)

  return fun_and_grad


def check_fun_output(fun, jac, has_aux, x0, args) -> None:
  """Trace-time check of ``fun``'s output: a float scalar, with ``grad`` shaped like ``x0``."""
  out = jax.eval_shape(fun, x0, *args)
  shapes = lambda t: jax.tree.map(lambda a: a.shape, t)  # noqa: E731
  form = {(False, False): "f", (True, False): "(f, grad)", (False, True): "(f, aux)",
          (True, True): "((f, aux), grad)"}[jac, has_aux]
  pair = lambda o: isinstance(o, (tuple, list)) and len(o) == 2  # noqa: E731
  if (jac or has_aux) and not (pair(out) and (not (jac and has_aux) or pair(out[0]))):
    raise TypeError(f"with jac={jac}, has_aux={has_aux}, fun must return {form}; got {shapes(out)}.")
  f_out, grad, _ = parts(out, jac, has_aux)
  if jac and shapes(grad) != shapes(x0):
    raise TypeError(f"fun must return {form} with grad shaped like x0 {shapes(x0)}; got grad {shapes(grad)}.")
  if not hasattr(f_out, "shape") or f_out.shape != () or not jnp.issubdtype(f_out.dtype, jnp.floating):
    raise TypeError(
        ("fun must return a float scalar" if form == "f" else f"fun must return {form} with f a float scalar")
        + f" (shape ()); got"
        f" {getattr(f_out, 'dtype', type(f_out).__name__)}{getattr(f_out, 'shape', '')}."
        " Reduce it, e.g. return jnp.sum(...)."
    )


# ---------------------------------------------------------------- the scales' view


def scaled(fun_and_grad: Callable[[jax.Array, tuple], tuple[jax.Array, jax.Array]]
           ) -> Callable[[jax.Array, tuple], tuple[jax.Array, jax.Array]]:
  """The objective the solver sees with scales ``s``, the last of ``params``: ``f(s y)`` and ``s g``
  (the scales reach it as a param, so implicit derivatives reach them)."""
  def fg(y, params):
    f, g = fun_and_grad(y * params[-1], params[:-1])
    return f, g * params[-1]
  return fg


def solve_scale(fun_and_grad, params, auto_scale: bool, scale, x0_flat, l, u) -> Any:
  """The scales of a new solve: ``"auto"``'s, chosen at ``P(x0)`` (:func:`._scaling.auto_scale`), or ``scale``."""
  if not auto_scale:
    return scale
  return _scaling.auto_scale(lambda x: fun_and_grad(x, params)[1], project(x0_flat, l, u), l, u)


def solver_problem(fun_and_grad, params: tuple, scale, l, u, x) -> tuple:
  """``(fun_and_grad, params, l, u, x)`` as the solver sees them: as given without scales; with
  scales ``s``, :func:`scaled` (``f(s y)``, ``s g``, with ``s`` appended to ``params``), the box
  ``[l/s, u/s]`` and ``x / s``."""
  if scale is None:
    return fun_and_grad, params, l, u, x
  return scaled(fun_and_grad), (*params, scale), l / scale, u / scale, x / scale
