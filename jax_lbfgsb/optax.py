"""L-BFGS-B as an optax gradient transformation: one solver iteration per ``update``.

:func:`lbfgsb` wraps the state machine of :mod:`jax_lbfgsb._solver` in optax's
line-search protocol (``update(..., value=, grad=, value_fn=)``, as
:func:`optax.scale_by_zoom_linesearch`). Each ``update`` runs passes of the
main loop until one makes a new iterate or the solve terminates, and returns
``x_new - x``; ``k`` updates from ``params`` give the iterate of
``jax_lbfgsb.minimize(value_fn, params, maxiter=k)``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from jax_lbfgsb import _solver
from jax_lbfgsb._bounds import project
from jax_lbfgsb._inputs import Setup, prepare, prepare_scale, strong
from jax_lbfgsb._minimize import fast_compile_jit, unscaled
from jax_lbfgsb._objective import solve_scale, solver_problem
from jax_lbfgsb._options import DEFAULTS, check_options
from jax_lbfgsb._solver import Box, LbfgsbState
from jax_lbfgsb._status import Termination

__all__ = ["LbfgsbTransformState", "lbfgsb"]

_NO_LIMIT = np.iinfo(np.int32).max  # maxiter and maxfun: the training loop decides when to stop


class LbfgsbTransformState(NamedTuple):
  """State of :func:`lbfgsb`.

  Attributes:
    value: ``f`` at the current iterate; ``inf`` before the first update, so
      that :func:`optax.value_and_grad_from_state` evaluates ``f`` then.
    grad: ``grad f`` at the current iterate, with the structure of ``params``
      (zeros before the first update).
    landed: the raveled ``params + updates`` of the last update (NaN before
      the first). An update from these params continues the solve from its
      exact iterate; an update from any other params starts a new solve there.
    solver: the :class:`~jax_lbfgsb._solver.LbfgsbState` over the raveled
      params: iterate, memory, counters (``nit``, ``nfev``) and
      ``termination`` (a :class:`~jax_lbfgsb.Termination` code, ``RUNNING``
      until the solve stops). With ``x_scale``, over ``params / scale``.
    scale: with ``x_scale``, the ``(n,)`` scales of the current solve
      (``"auto"``: chosen when a solve starts); else None.
  """

  value: jax.Array  # float
  grad: Any  # pytree like params
  landed: jax.Array  # (n,) float
  solver: LbfgsbState
  scale: jax.Array | None = None


def _setup(lower: Any, upper: Any, params: Any, options: dict[str, Any], x_scale: Any = None) -> Setup:
  """``params``, the box and the options through the input layer (:func:`~jax_lbfgsb._inputs.prepare`,
  in mixed precision, NaN params left to the solver: no host sync per update); for array params,
  lists are arrays (``lower`` and ``upper`` are never ``(lo, hi)`` pairs)."""
  if isinstance(params, (jax.Array, np.ndarray)):
    lower, upper = (None if b is None else jnp.asarray(b) for b in (lower, upper))
  return prepare(None, params, bounds=(lower, upper), x_scale=x_scale, options=options, name="lbfgsb: params",
                 scale_name="lbfgsb: x_scale", mixed=True, check_nan=False)


def _widened(params: Any, dtype: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
  """``(p, unravel)``: the params raveled in the solve's ``dtype`` (exact), and back to each leaf's dtype."""
  p, unravel = ravel_pytree(jax.tree.map(lambda a: a.astype(dtype), params))
  return p, lambda flat: jax.tree.map(lambda a, leaf: a.astype(leaf.dtype), unravel(flat), params)


def _rounded(a: jax.Array) -> jax.Array:
  """``a`` rounded to its own dtype: under ``jit`` XLA may keep half-precision
  sums in float32 (excess precision), which ``optax.apply_updates`` rounds."""
  info = jnp.finfo(a.dtype)
  return lax.reduce_precision(a, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def _landing_update(p: jax.Array, x: jax.Array, l: jax.Array, u: jax.Array) -> jax.Array:
  """``d`` in ``p``'s dtype with ``l <= p + d <= u`` in that floating point, landing on ``x`` where it can.

  ``x``, ``l`` and ``u`` (with ``p`` and ``x`` inside the box) are rounded to
  ``p``'s dtype first, to nearest: ``x`` stays inside a box whose ends are
  values of that dtype (a half-precision leaf's box, rounded inward). ``p + d
  == x`` when ``x - p`` is exact (e.g. when ``p`` and ``x`` are within a
  factor 2 of each other); otherwise ``p + d`` can miss ``x`` by an ulp of
  ``x - p``: ``d`` then moves one ulp toward ``x`` where that lands on it; a
  sum still past a bound moves one ulp inward, and failing that ``d`` becomes
  ``P(p) - p``.
  """
  x, l, u = (a.astype(p.dtype) for a in (x, l, u))
  inf = jnp.asarray(jnp.inf, p.dtype)
  d = _rounded(x - p)
  y = _rounded(p + d)
  toward = jnp.nextafter(d, jnp.where(y < x, inf, -inf))
  d = jnp.where((y != x) & (_rounded(p + toward) == x), toward, d)
  y = _rounded(p + d)
  d = jnp.where((y < l) | (y > u), jnp.nextafter(d, jnp.where(y > u, -inf, inf)), d)
  y = _rounded(p + d)
  return jnp.where((y < l) | (y > u), _rounded(project(p, l, u) - p), d)


def _update(value_fn, auto_scale, params, state, value, grad, box, options, extra_args):
  """One iteration of the solve, on the raveled params (divided by the scales, with ``x_scale``),
  in the box's dtype; ``value_fn``, the grad and the updates are in each leaf's dtype."""
  dtype = box.l.dtype
  p, unravel = _widened(params, dtype)

  def fun_and_grad(x, params=()):  # the solver's form (x, params); extra_args are closed over
    del params
    f, g = jax.value_and_grad(value_fn)(unravel(x), **extra_args)
    return jnp.asarray(f, dtype).reshape(()), ravel_pytree(g)[0].astype(dtype)

  # 1. Continue from the solver's exact iterate when params are where the last
  #    update landed (an ulp off it at most); otherwise start a solve at
  #    P(params), with the caller's value and grad unless P moved params
  #    (and, with x_scale="auto", new scales).
  continuing = jnp.all(p == state.landed)
  scale = state.scale
  if auto_scale:
    scale = lax.cond(continuing, lambda: state.scale,
                     lambda: solve_scale(fun_and_grad, (), True, None, p, box.l, box.u))
  fg, fg_params, l, u, p_solver = solver_problem(fun_and_grad, (), scale, box.l, box.u, p)
  fg, solver_box = functools.partial(fg, params=fg_params), Box.of(l, u)
  g_given = ravel_pytree(grad)[0].astype(dtype) * (1 if scale is None else scale)

  def start() -> LbfgsbState:
    given = (jnp.asarray(value, dtype).reshape(()), g_given)
    at_p = lambda x: lax.cond(jnp.all(x == p_solver), lambda: given, lambda: fg(x))  # noqa: E731
    return _solver.init(at_p, p_solver, solver_box, options, state.solver.memory.S.shape[0])

  solver = lax.cond(continuing, lambda: state.solver, start)

  # 2. One iteration: passes of the main loop until a new iterate or a
  #    termination (a restart refreshes the memory without a new iterate).
  solver = _solver.advance(fg, solver, solver_box, options, until=solver.nit + 1)

  # 3. Updates that move params onto the new iterate, inside the box; zero
  #    where the iterate did not move and params are inside the box (after
  #    termination: everywhere, unless params started outside).
  x_old = jnp.where(continuing, state.solver.x, p_solver)
  stay = (solver.x == x_old) & (p >= box.l) & (p <= box.u)
  x_new, g_new = unscaled(solver, box.l, box.u, scale)
  d = jax.tree.map(_landing_update, params, *(unravel(a) for a in (x_new, box.l, box.u)))  # each leaf's dtype
  d = unravel(jnp.where(stay, jnp.zeros((), dtype), _widened(d, dtype)[0]))
  landed = _widened(jax.tree.map(lambda p, d: _rounded(p + d), params, d), dtype)[0]  # as optax.apply_updates
  new_state = LbfgsbTransformState(value=solver.f, grad=unravel(g_new), landed=landed, solver=solver, scale=scale)
  return d, new_state


_update_jit = fast_compile_jit(_update, ("value_fn", "auto_scale"))


def lbfgsb(
    lower: Any = None,
    upper: Any = None,
    memory_size: int = DEFAULTS.maxcor,
    maxls: int = DEFAULTS.maxls,
    ftol: float = DEFAULTS.ftol,
    gtol: float = DEFAULTS.gtol,
    x_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""L-BFGS-B as an optax transformation: each update is one iteration of :func:`~jax_lbfgsb.minimize`.

  ``update(updates, state, params, *, value, grad, value_fn, **extra_args)``
  makes one L-BFGS-B iteration from ``params`` for
  ``min value_fn(params, **extra_args)`` subject to ``lower <= params <= upper``:
  generalized Cauchy point, subspace minimization and the Moré–Thuente line
  search ``dcsrch`` (which evaluates ``jax.value_and_grad(value_fn)``). It
  returns ``updates = x_new - params``, rounded so that
  ``optax.apply_updates(params, updates)`` lies inside the bounds; it equals
  ``x_new`` whenever ``x_new - params`` is exact, and is an ulp of the step off
  otherwise. After ``k`` updates, ``state.solver.x`` is the iterate of
  ``minimize(value_fn, params, bounds=(lower, upper), maxcor=memory_size,
  maxiter=k)`` and ``params`` equals it to that rounding. Once the solve stops
  (``state.solver.termination`` is no longer ``RUNNING``: ``gtol`` or ``ftol``
  met, a failed line search, or NaN), the updates are zero.

  ``value`` and ``grad`` must be ``value_fn`` and its gradient at ``params``;
  they are used when an update starts a solve (the first update, or params
  that are not where the last update landed). A continuing update uses the
  solver's own values at its exact iterate, which
  :func:`optax.value_and_grad_from_state` returns without evaluating
  ``value_fn``. ``updates`` (the gradient, by convention) is ignored. Start
  from params inside the box: from params outside it, the first update lands
  within rounding of params of the box (the box may hold no ``params + d``
  at all), and the second inside.

  bfloat16 and float16 params are trained in mixed precision: the state keeps
  a float32 master copy (``state.solver``: the iterate and the memory),
  ``value_fn`` is evaluated at the params in their own dtype (the master
  rounded to it), ``state.grad`` and the updates come in each leaf's dtype and
  ``state.value`` in float32, and the bounds are rounded inward to the leaf's
  dtype. Steps below that dtype's spacing are lost: pass ``x_scale`` for
  variables far from unit size.

  ``update`` runs under :func:`jax.jit` with ``value_fn`` static: pass the same
  function object every step (not a new lambda), or each call recompiles.
  ``extra_args`` must be arrays or pytrees of arrays; it works under
  :func:`jax.jit`, :func:`jax.vmap` and inside :func:`jax.lax.scan`.

  .. warning:: Use this transformation alone, not in :func:`optax.chain` after
    other transformations: it ignores the incoming ``updates`` and returns a
    step to the next iterate, which a later transformation would distort.

  Args:
    lower: lower bounds: ``None`` (none), a scalar, or a pytree with the
      structure of ``params`` (leaves scalars or of the leaf's shape); ``-inf``
      for none. ``lower == upper`` fixes a variable.
    upper: upper bounds, like ``lower``; ``inf`` for none.
    memory_size: number of correction pairs kept (``maxcor``, ``m``).
    maxls: maximum number of evaluations in one line search (a fractional
      value counts as SciPy compares it: ``ceil(maxls)``).
    ftol: relative reduction tolerance (SciPy's ``ftol``).
    gtol: projected-gradient tolerance (SciPy's ``gtol``).
    x_scale: variable scales (a positive scalar, or a pytree like ``params``)
      or ``"auto"`` (chosen when a solve starts), as in
      :func:`~jax_lbfgsb.minimize`: the solver works on ``params / scale``;
      the updates are in the caller's variables.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`LbfgsbTransformState`.

  Raises:
    ValueError: ``memory_size < 1``, ``maxls < 1``, negative ``ftol`` or
      ``gtol`` (at once); bounds that do not fit ``params`` or have
      ``lower > upper`` (in ``init``).
    TypeError: ``params`` that are not float arrays of one dtype (half-precision
      leaves may sit beside float32 ones) (in ``init``).

  Example:
    Maximize a hidden unit of a small MLP over a 28x28 image with pixels in
    ``[0, 255]`` and a 2-pixel border fixed at 0:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from jax_lbfgsb import Termination
    >>> from jax_lbfgsb.optax import lbfgsb
    >>> k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    >>> w1 = jax.random.normal(k1, (784, 32), jnp.float64) / 28.0
    >>> w2 = jax.random.normal(k2, (32, 16), jnp.float64) / jnp.sqrt(32.0)
    >>> def activation(image):  # unit 3 of the second hidden layer
    ...   return jnp.tanh(jnp.tanh(image.reshape(784) / 255.0 @ w1) @ w2)[3]
    >>> def f(image):
    ...   return -activation(image)
    >>> inside = jnp.zeros((28, 28), bool).at[2:-2, 2:-2].set(True)
    >>> opt = lbfgsb(lower=0.0, upper=jnp.where(inside, 255.0, 0.0))
    >>> params = jnp.where(inside, 127.5, 0.0)
    >>> state = opt.init(params)
    >>> value_and_grad = jax.jit(optax.value_and_grad_from_state(f))
    >>> print(f"{activation(params):.4f}")
    -0.0788
    >>> for _ in range(10):
    ...   value, grad = value_and_grad(params, state=state)
    ...   updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
    ...   params = optax.apply_updates(params, updates)
    >>> print(f"{activation(params):.4f}", int(state.solver.nit), Termination(int(state.solver.termination)).name)
    0.9911 6 CONVERGED_PGTOL
    >>> print(bool(jnp.all((params >= 0) & (params <= 255))), bool(jnp.all(params[~inside] == 0)))
    True True

    The solve converged after 6 iterations; the last 4 updates were zero.

  References:
    Byrd, Lu, Nocedal, Zhu, `A limited memory algorithm for bound constrained
    optimization <https://doi.org/10.1137/0916069>`_, SIAM J. Sci. Comput.
    16(5), 1995.
  """
  checked = check_options({"maxcor": "memory_size"}, "lbfgsb", maxcor=memory_size, maxls=maxls, ftol=ftol, gtol=gtol,
                          maxiter=_NO_LIMIT, maxfun=_NO_LIMIT)

  auto = prepare_scale(x_scale, None, None, "lbfgsb: x_scale")[1] if isinstance(x_scale, str) else False

  def init_fn(params: Any) -> LbfgsbTransformState:
    setup = _setup(lower, upper, params, checked, None if auto else x_scale)
    box, dtype = Box.of(setup.l, setup.u), setup.l.dtype
    p = _widened(setup.x0, dtype)[0]
    scale = jnp.ones_like(p) if auto else setup.scale
    # Zeros of the solver state's shapes, a placeholder that evaluates
    # nothing: the first update starts the solve at its params (landed is NaN).
    shapes = jax.eval_shape(
        lambda p, box: _solver.init(lambda x: (jnp.sum(x), x), p, box, setup.options, memory_size), p, box
    )
    solver = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return LbfgsbTransformState(
        value=jnp.full((), jnp.inf, p.dtype), grad=jax.tree.map(jnp.zeros_like, setup.x0),
        landed=jnp.full_like(p, jnp.nan),
        solver=_solver.with_termination(solver, Termination.RUNNING), scale=scale,
    )

  def update_fn(
      updates: Any,
      state: LbfgsbTransformState,
      params: Any,
      *,
      value: jax.typing.ArrayLike,
      grad: Any,
      value_fn: Callable[..., jax.typing.ArrayLike],
      **extra_args: Any,
  ) -> tuple[Any, LbfgsbTransformState]:
    del updates  # the gradient, by convention; ``grad`` is the same
    setup = _setup(lower, upper, params, checked)
    return _update_jit(value_fn, auto, setup.x0, state, *strong((value, grad)), Box.of(setup.l, setup.u),
                       setup.options, extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
