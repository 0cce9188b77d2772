"""``minimize_batch``: many problems in one compiled program, lanes drawing problems from the batch.

``jax.vmap(minimize)`` steps every problem until the slowest stops: a batch
whose problems need 3 to 60 iterations pays 60 for each. Here a fixed number
of *lanes* (a vmapped solver state) draw problems from the batch: when a
lane's problem terminates, the lane writes its state into the results at the
problem's index and starts the next problem (its ``init``), inside one
``lax.while_loop``. The cost follows the sum of the problems' iterations, and
each problem takes exactly the steps of its single solve (``init``, then
``step`` until it terminates), so its ``nit``, ``nfev`` and termination are
those of ``minimize`` and ``x`` equal to rounding (a vmapped step may round
differently from a single one). The loop runs on its inputs without
derivatives; each problem's solution gets them back from
:func:`~jax_lbfgsb._implicit.differentiable_solve`, as a single solve's does.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from jax_lbfgsb import _status
from jax_lbfgsb._fun_key import traced_fun
from jax_lbfgsb._implicit import differentiable_solve
from jax_lbfgsb._inputs import canonicalize_bounds, prepare_x0
from jax_lbfgsb._minimize import OptimizeResult, _keyword_defaults, _result, fast_compile_jit
from jax_lbfgsb._objective import check_fun_output, flat_fun_and_grad, gradient_form, parts
from jax_lbfgsb._options import check_options, solver_options
from jax_lbfgsb._solver import Box, Hooks, init, step
from jax_lbfgsb._status import Termination

__all__ = ["minimize_batch", "default_lanes"]

# minimize's keyword options that apply to every problem of a batch (its
# callback, iprint and x_scale do not).
_BATCH_OPTIONS = ("maxcor", "ftol", "gtol", "maxiter", "maxfun", "maxls", "history", "ls_ftol", "ls_gtol",
                  "pgtol_rel", "xtol_rel", "has_aux")

# Lanes on CPU: each vmapped step pays a fixed cost (its ~200 kernels, about
# 250 us) plus about 8 us per lane (n = 10); more lanes amortize the first and
# lengthen the tail where a slow last problem runs with idle lanes. 16 was
# fastest on the skewed batch of benchmarks/batch.py and within noise of the
# best on the uniform one (RESULTS_batch.md, 512 problems, us per
# problem-iteration: uniform 12.9 against 12.5 at 32, 12.5 at 64 and 14.7 at
# 8; skewed 22.1 against 29.1 at 32, 25.2 at 8 and 69.8 at 128).
CPU_LANES = 16


def default_lanes(batch: int, platform: str | None = None) -> int:
  """The lane count ``minimize_batch`` uses for ``batch`` problems: all of them on
  an accelerator (one step costs about the same for any number of lanes), at
  most :data:`CPU_LANES` on CPU."""
  platform = jax.default_backend() if platform is None else platform
  return batch if platform != "cpu" else min(batch, CPU_LANES)


def _take(tree: Any, idx: jax.Array) -> Any:
  return jax.tree.map(lambda a: jnp.take(a, idx, axis=0, mode="clip"), tree)


def _select(pred: jax.Array, new: Any, old: Any) -> Any:
  """Per lane: ``new`` where ``pred``, else ``old`` (``pred`` shaped ``(lanes,)``)."""
  def pick(a, b):
    return jnp.where(pred.reshape(pred.shape + (1,) * (a.ndim - 1)), a, b)
  return jax.tree.map(pick, new, old)


class _Packing:
  """A pytree of per-lane arrays ``(lanes, ...)`` as one ``(lanes, size)`` matrix per dtype, and back.

  XLA:CPU expands a scatter into a loop over its rows with a few kernels per
  row and per array; packed, a finished lane's whole state is written by one
  ``dynamic_update_slice`` per dtype.
  """

  def __init__(self, tree: Any):
    leaves, self.treedef = jax.tree.flatten(tree)
    self.layout = []  # (dtype, offset, shape[1:]) per leaf
    self.sizes: dict[Any, int] = {}
    for leaf in leaves:
      size = int(np.prod(leaf.shape[1:], dtype=np.int64))
      self.layout.append((leaf.dtype, self.sizes.get(leaf.dtype, 0), leaf.shape[1:]))
      self.sizes[leaf.dtype] = self.sizes.get(leaf.dtype, 0) + size

  def pack(self, tree: Any) -> dict[Any, jax.Array]:
    leaves = jax.tree.leaves(tree)
    return {dtype: jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf, (d, _, _) in zip(leaves, self.layout)
                                    if d == dtype], axis=1) for dtype in self.sizes}

  def unpack(self, packed: dict[Any, jax.Array]) -> Any:
    rows = next(iter(packed.values())).shape[0]
    leaves = [packed[d][:, o:o + int(np.prod(shape, dtype=np.int64))].reshape((rows,) + shape)
              for d, o, shape in self.layout]
    return jax.tree.unflatten(self.treedef, leaves)


def _write_finished(packing: _Packing, results: dict, states: Any, done: jax.Array, idx: jax.Array) -> dict:
  """``results[idx[k]] = states[k]`` for the lanes ``k`` that are ``done``, one row at a time."""
  packed = packing.pack(states)
  order = jnp.argsort(~done, stable=True).astype(jnp.int32)  # the done lanes first

  def write(k, res):
    lane = order[k]
    return {d: lax.dynamic_update_slice(res[d], lax.dynamic_slice_in_dim(packed[d], lane, 1), (idx[lane], jnp.int32(0)))
            for d in res}

  return lax.fori_loop(0, jnp.sum(done, dtype=jnp.int32), write, results)


def _solved(l, u, params, state):
  """The ``solve`` of :func:`~jax_lbfgsb._implicit.differentiable_solve` for a problem the batch loop solved."""
  return state


def _solve_batch(fun, jac, has_aux, maxcor, history, lanes, x0, l, u, args, shared, options):
  """The jitted batch solve: ``x0`` ``(B, ...)`` pytree, ``l, u`` ``(B, n)``, ``args`` batched, ``shared`` not."""
  x0_flat = jax.vmap(lambda x: ravel_pytree(x)[0])(x0)
  unravel = ravel_pytree(jax.tree.map(lambda a: a[0], x0))[1]
  batch = x0_flat.shape[0]
  flat = flat_fun_and_grad(fun, jac, has_aux, unravel)

  def problem_fun_and_grad(x, inputs):  # inputs: (one problem's args, the shared ones)
    return flat(x, (*inputs[0], *inputs[1]))

  # The loop is not differentiated: it sees its inputs without derivatives,
  # and each problem's x, f and g get them back from the implicit rule below.
  hooks = Hooks(history=history)
  params_in, shared_in, l_in, u_in = tuple(args), tuple(shared), l, u
  params, shared, l, u = lax.stop_gradient((params_in, shared_in, l, u))

  def fun_and_grad(x, params):
    return problem_fun_and_grad(x, (params, shared))

  boxes = jax.vmap(Box.of)(l, u)

  def start(idx):
    """The lanes' inputs (box, params) and ``init`` for problems ``idx``, one per lane."""
    box, p = _take(boxes, idx), _take(params, idx)
    states = jax.vmap(lambda x, b, q: init(functools.partial(fun_and_grad, params=q), x, b, options, maxcor, hooks))(
        x0_flat[idx], box, p)
    return states, box, p

  def advance(states, box, p):
    return jax.vmap(lambda s, b, q: step(functools.partial(fun_and_grad, params=q), b, options, s, hooks))(
        states, box, p)

  first = jnp.arange(lanes, dtype=jnp.int32)
  lane = start(first)  # (states, box, params) of each lane, carried: no gather per step
  # The results: one state per problem, written when its solve terminates.
  packing = _Packing(lane[0])
  results = {d: jnp.zeros((batch, size), d) for d, size in packing.sizes.items()}

  def cond(carry):
    return jnp.any(carry[1] < batch)

  def body(carry):
    lane, idx, queued, results = carry
    states = lane[0]
    active = idx < batch
    running = active & (states.termination == Termination.RUNNING)
    states = _select(running, advance(*lane), states)
    done = active & (states.termination != Termination.RUNNING)
    results = lax.cond(jnp.any(done), lambda: _write_finished(packing, results, states, done, idx),
                       lambda: results)
    # Finished lanes take the next problems in order; past the end, none (idx = batch).
    new_idx = jnp.minimum(queued + jnp.cumsum(done, dtype=jnp.int32) - 1, batch).astype(jnp.int32)
    idx = jnp.where(done, new_idx, idx)
    queued = jnp.minimum(queued + jnp.sum(done, dtype=jnp.int32), batch)
    refill = done & (idx < batch)
    lane = (states,) + lane[1:]
    lane = lax.cond(jnp.any(refill), lambda: _select(refill, start(idx), lane), lambda: lane)
    return lane, idx, queued, results

  _, _, _, results = lax.while_loop(cond, body, (lane, first, jnp.int32(lanes), results))
  results = packing.unpack(results)._replace(box=boxes)
  results = jax.vmap(lambda li, ui, pi, state: differentiable_solve(
      _solved, problem_fun_and_grad, li, ui, (pi, shared_in), state))(l_in, u_in, params_in, results)
  x = jax.vmap(unravel)(results.x)
  jac_out = jax.vmap(unravel)(results.g)
  status = jnp.asarray(_status.STATUS, jnp.int32)[results.termination]
  aux = None
  if has_aux:
    aux = jax.vmap(lambda xi, p: parts(fun(xi, *p, *shared_in), jac, True)[2])(x, params_in)
  return x, jac_out, status, status == 0, results, aux, None


_solve_batch_jit = fast_compile_jit(_solve_batch, ("fun", "jac", "has_aux", "maxcor", "history", "lanes"))


def _batched_args(args: tuple, batch: int) -> tuple[Any, list[bool], list[Any]]:
  """``args``'s treedef, which leaves are batched (leading axis ``batch``; the others, Python numbers and
  0-d arrays, are shared) and the leaves."""
  leaves, treedef = jax.tree.flatten(args)
  mask = []
  for i, leaf in enumerate(leaves):
    if np.ndim(leaf) == 0:
      mask.append(False)
    elif np.shape(leaf)[0] != batch:
      raise ValueError(
          f"minimize_batch: every array in args has the batch axis first (length {batch}, from x0); argument"
          f" leaf {i} has shape {np.shape(leaf)}. Pass a value shared by every problem as a Python number or"
          " close over it in fun."
      )
    else:
      mask.append(True)
  return treedef, mask, leaves


def minimize_batch(
    fun: Callable[..., Any],
    x0: Any,
    args: Any = (),
    bounds: Any = None,
    *,
    jac: bool | Callable[..., Any] | None = None,
    lanes: int | None = None,
    **options: Any,
) -> OptimizeResult:
  """Solves a batch of problems ``min fun(x_i, *args_i)`` s.t. ``l_i <= x_i <= u_i`` in one compiled program.

  The result is that of ``jax.vmap(minimize)`` over the batch (per-problem
  fields, each problem's ``nit``, ``nfev`` and ``termination`` those of its
  single solve), but the cost follows the sum of the problems' iterations,
  not the batch size times the slowest: ``lanes`` solver states step
  together, and a lane whose problem stops takes the next one, inside one
  ``lax.while_loop`` (no host round trip, one compile). Works under
  :func:`jax.jit`; :func:`jax.grad` and :func:`jax.jvp` differentiate each
  problem's ``x``, ``fun`` and ``jac`` with respect to ``args``, the bounds
  and arrays ``fun`` closes over by the implicit function theorem, as for
  :func:`minimize` (the loop itself is not differentiated).

  Args:
    fun: ``fun(x, *args) -> scalar`` for one problem (``x`` shaped like one
      problem's ``x0``); with ``jac=True`` it returns ``(f, grad)``.
    x0: the starting points: an array or pytree whose every leaf has the batch
      axis first.
    args: extra arguments of ``fun``: every array with the batch axis first
      (one slice per problem); Python numbers and 0-d arrays are shared.
    bounds: ``None`` or ``(lower, upper)``, each a scalar (shared) or an
      array or pytree shaped like ``x0`` (batch axis first); ``None`` or
      ``+-inf`` for no bound.
    jac: as in :func:`minimize`.
    lanes: problems solved at once; default :func:`default_lanes` (all on an
      accelerator, 16 on CPU).
    **options: :func:`minimize`'s keyword options ``maxcor, ftol, gtol,
      maxiter, maxfun, maxls, history, ls_ftol, ls_gtol, pgtol_rel, xtol_rel,
      has_aux``, with its defaults, the same for every problem.

  Returns:
    :class:`OptimizeResult` with a leading batch axis on every field.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jax_lbfgsb import minimize_batch
    >>> def f(x, c):
    ...   return jnp.sum((x - c) ** 2)
    >>> res = minimize_batch(f, jnp.zeros((3, 2)), args=(jnp.array([[1.0, 2], [3, 4], [5, 6]]),),
    ...                      bounds=(0.0, 4.5))
    >>> print(res.x, res.nit)
    [[1.  2. ]
     [3.  4. ]
     [4.5 4.5]] [2 2 1]
  """
  unknown = [name for name in options if name not in _BATCH_OPTIONS]
  if unknown:
    raise TypeError(f"minimize_batch() got unknown option(s) {', '.join(map(repr, unknown))}; its options are"
                    f" {', '.join(_BATCH_OPTIONS)} (minimize's callback, iprint and x_scale are per-solve only).")
  o = {name: options.get(name, _keyword_defaults()[name]) for name in _BATCH_OPTIONS}
  maxcor, history, has_aux = o["maxcor"], o["history"], o["has_aux"]
  o = check_options(**o)
  if lanes is not None and not int(lanes) >= 1:
    raise ValueError(f"minimize_batch: lanes must be >= 1; got {lanes}.")
  if not isinstance(args, tuple):
    args = (args,)
  sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(x0)}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(
        "minimize_batch: every leaf of x0 needs the batch axis first, with one length for all; got leaf shapes"
        f" {[np.shape(leaf) for leaf in jax.tree.leaves(x0)]}."
    )
  (batch,) = sizes
  if batch == 0:  # the shapes of a batch of one, with no row
    row = lambda t: jax.tree.map(lambda a: np.zeros((1,) + np.shape(a)[1:], np.asarray(a).dtype)  # noqa: E731
                                 if np.ndim(a) and np.shape(a)[0] == 0 else a, t)
    one = jax.eval_shape(lambda z, a, b: minimize_batch(fun, z, a, b, jac=jac, maxcor=maxcor, history=history,
                                                        has_aux=has_aux), row(x0), row(args), row(bounds))
    return jax.tree.map(lambda s: jnp.zeros((0,) + s.shape[1:], s.dtype), one)
  jac, fun = gradient_form(jac, fun)
  x0, dtype = prepare_x0(x0)
  # Bounds over the whole batch as one problem (checks, inward rounding), then one row per problem.
  l, u = canonicalize_bounds(bounds, x0, dtype)
  _, unravel_all = ravel_pytree(x0)
  per_problem = jax.vmap(lambda t: ravel_pytree(t)[0])
  l, u = per_problem(unravel_all(jnp.asarray(l))), per_problem(unravel_all(jnp.asarray(u)))
  treedef, mask, leaves = _batched_args(args, batch)
  batched = tuple(leaf for leaf, b in zip(leaves, mask) if b)
  shared = [leaf for leaf, b in zip(leaves, mask) if not b]

  def one(x, *inputs):
    it_b, it_s = iter(inputs[:len(batched)]), iter(inputs[len(batched):])
    return fun(x, *jax.tree.unflatten(treedef, [next(it_b) if b else next(it_s) for b in mask]))

  template = jax.tree.map(lambda a: a[0], (x0, batched))
  check_fun_output(one, jac, has_aux, template[0], (*template[1], *shared))
  traced, consts = traced_fun(one, template[0], (*template[1], *shared))
  lanes = min(default_lanes(batch) if lanes is None else int(lanes), batch)
  return _result(*_solve_batch_jit(traced, bool(jac), bool(has_aux), int(maxcor), int(history), lanes,
                                   x0, l, u, batched, (*shared, *consts), solver_options(dtype, **o)))
