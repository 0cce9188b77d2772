"""The L-BFGS-B state machine: state, ``init``, ``step``, ``advance``, ``run``.

One ``step`` is one pass of the reference's main loop (``mainlb``): Cauchy
point, subspace minimization, line search, stopping tests, memory update. A
pass that hits a failed factorization or a failed line search with a
non-empty memory refreshes the memory and ends without a new iterate (the
reference's ``RESTART``); every other pass ends with a new iterate or a
termination code. ``advance``, the one driver, runs ``step`` in one
``lax.while_loop`` (to termination for ``run``, one iteration for an optax or
jaxopt ``update``); the line search is an inner ``lax.while_loop``.

Counters follow SciPy: ``nit`` counts new iterates (``NEW_X``), ``nfev`` counts
evaluations of ``f`` and ``g`` together.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jax_lbfgsb._bounds import max_feasible_step, project, projected_gradient, projected_gradient_norm
from jax_lbfgsb._cauchy import CauchyPoint, cauchy_point
from jax_lbfgsb._compact import Memory, bmv_factors, init_memory, refresh, update_memory
from jax_lbfgsb._dcsrch import (
    FG,
    DcsrchState,
    dcsrch_init,
    dcsrch_step,
    lnsrlb_first_step,
    lnsrlb_trial_point,
)
from jax_lbfgsb._loops import cond_on_cpu, devices_spanned, packed_while_loop
from jax_lbfgsb._status import Termination
from jax_lbfgsb._subspace import (
    Grams, Subspace, chronological_sums, formk, init_grams, mark_replaced, reduced_gradient, subspace_minimization,
    update_grams,
)

__all__ = [
    "Box", "Options", "Hooks", "History", "Info", "LbfgsbState", "init", "resume", "step", "advance", "run",
    "with_termination",
]

FunAndGrad = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


class Box(NamedTuple):
  """The bounds and the facts derived from them, computed once per solve (:meth:`of`).

  Attributes:
    l, u: ``(n,)`` bounds, ``-inf``/``inf`` where absent.
    fixed: ``(n,)`` ``l == u``.
    constrained: some variable has a bound.
    boxed: every variable has both bounds.
  """

  l: jax.Array
  u: jax.Array
  fixed: jax.Array
  constrained: jax.Array
  boxed: jax.Array

  @classmethod
  def of(cls, l: jax.Array, u: jax.Array) -> "Box":
    has_l, has_u = l > -jnp.inf, u < jnp.inf
    return cls(l=l, u=u, fixed=l == u, constrained=jnp.any(has_l | has_u), boxed=jnp.all(has_l & has_u))


class Options(NamedTuple):
  """Traced numeric options: changing them never recompiles.

  ``ls_ftol``, ``ls_gtol`` are ``dcsrch``'s sufficient-decrease and curvature
  constants; ``pgtol_rel``, ``xtol_rel`` enable the relative stopping tests
  when positive.
  """

  ftol: jax.Array
  gtol: jax.Array
  maxiter: jax.Array
  maxfun: jax.Array
  maxls: jax.Array
  ls_ftol: jax.Array
  ls_gtol: jax.Array
  pgtol_rel: jax.Array
  xtol_rel: jax.Array


@dataclasses.dataclass(frozen=True)
class Hooks:
  """Static extras of a solve; each one absent from the graph when off.

  Attributes:
    history: record the first ``history`` iterates (0: no record).
    callback: host function ``callback(new_iterate, x, f, g, nit, nfev) -> bool``
      called in each pass before the stopping tests; when ``new_iterate``,
      ``True`` halts the solve (SciPy's ``callback`` raising ``StopIteration``);
      otherwise it must return False.
    printer: host object with ``start``, ``iterate`` and ``finish`` methods
      (the ``iprint`` output, :class:`~jax_lbfgsb._iprint.IprintPrinter`).
  """

  history: int = 0
  callback: Callable[..., bool] | None = None
  printer: Any = None


class History(NamedTuple):
  """Per-iteration record; entry ``k`` is the iterate after ``k`` iterations (``k = 0``: ``x0``).

  Entries past the last iteration hold NaN (floats) or -1 (``nfev``).

  Attributes:
    x: ``(K, n)`` iterates.
    f: ``(K,)`` ``f(x_k)``.
    projg: ``(K,)`` ``||proj g(x_k)||_inf``.
    nfev: ``(K,)`` evaluations made up to ``x_k`` (int32).
    stp: ``(K,)`` step length of the line search that produced ``x_k`` (0 for ``x0``).
  """

  x: jax.Array
  f: jax.Array
  projg: jax.Array
  nfev: jax.Array
  stp: jax.Array


class Info(NamedTuple):
  """Diagnostics that only the iprint table reads (SciPy's summary); in the state
  only when something prints (:class:`Hooks` ``printer``), else absent from the graph.

  Attributes:
    nskip: updates skipped by the curvature test.
    nintol: segments explored by all Cauchy point searches.
    nact: variables active (not free) at the last Cauchy point.
    iback: backtracks (evaluations beyond the first) in the last line search.
  """

  nskip: jax.Array
  nintol: jax.Array
  nact: jax.Array
  iback: jax.Array


class LbfgsbState(NamedTuple):
  """The loop carry: the algorithm's state.

  Attributes:
    x, f, g: current iterate, ``f(x)`` and ``grad f(x)``.
    fold: ``f`` at the previous iterate (for the ``ftol`` test).
    memory: the limited memory (:class:`~jax_lbfgsb._compact.Memory`).
    grams: the sums behind ``formk``'s ``K`` (:class:`~jax_lbfgsb._subspace.Grams`);
      None on small problems, which recompute them (``init_grams``).
    sbgnrm: ``||proj g||_inf`` at ``x``.
    nit: new iterates so far.
    nfev: evaluations of ``f`` and ``g`` so far.
    stp: accepted step length of the last line search.
    xstep: ``||x - x_prev||_2`` of the last step (the ``xtol_rel`` test).
    termination: a :class:`~jax_lbfgsb._status.Termination` code, ``RUNNING`` until it stops.
    history: a :class:`History`, or None when not recorded.
    info: an :class:`Info`, or None when nothing prints.
    box: the :class:`Box` the state was solved in, set when :func:`run`
      returns (a warm start compares it with its own); None inside the loop.
  """

  x: jax.Array
  f: jax.Array
  g: jax.Array
  fold: jax.Array
  memory: Memory
  grams: Grams | None
  sbgnrm: jax.Array
  nit: jax.Array
  nfev: jax.Array
  stp: jax.Array
  xstep: jax.Array
  termination: jax.Array
  history: History | None
  info: Info | None
  box: Box | None = None


def _i32(v) -> jax.Array:
  return jnp.asarray(v, jnp.int32)


def with_termination(state: LbfgsbState, code: Any) -> LbfgsbState:
  """The one writer of ``state.termination``: the entry tests, the stopping
  tests and failure ladder of each pass (callback halt included), and a fresh
  transformation state all set it here."""
  return state._replace(termination=_i32(code))


def _info(info: Info | None, hooks: Hooks) -> Info | None:
  """``info`` kept, or started, when something prints; else None."""
  if hooks.printer is None:
    return None
  return info if info is not None else Info(_i32(0), _i32(0), _i32(0), _i32(0))


def _nonfinite(f: jax.Array, g: jax.Array) -> jax.Array:
  return ~(jnp.isfinite(f) & jnp.all(jnp.isfinite(g)))


def _rounding(f: jax.Array) -> jax.Array:
  """Changes of ``f`` this small may be rounding error: ``16 eps max(|f|, 1)``."""
  return 16.0 * jnp.finfo(f.dtype).eps * jnp.maximum(jnp.abs(f), 1.0)


_NOWHERE = jnp.iinfo(jnp.int32).max  # a history index that is always dropped


def _record(history: History | None, k: jax.Array, x, f, projg, nfev, stp) -> History | None:
  """Writes entry ``k`` of the history (dropped when ``k`` is past its end)."""
  if history is None:
    return None
  entry = History(x=x, f=f, projg=projg, nfev=nfev, stp=stp)
  return jax.tree.map(lambda buf, v: buf.at[k].set(v, mode="drop"), history, entry)


class Event(NamedTuple):
  """What the entry or a pass found, for :func:`terminate`.

  Attributes:
    entry: the tests before the first pass (:func:`init`, :func:`resume`).
    continuing: at the entry, the solve continues one that made iterations:
      the tests of its last new iterate instead of the initial ones.
    accepted: the pass's line search found a new iterate.
    failed: the pass's line search failed (no new iterate).
    empty: the memory was empty at the start of the pass (a failed search ends the solve).
    nans: some trial of the search had ``f`` or ``g`` NaN or inf.
    mismatch: ``f`` rose beyond rounding against the gradient's prediction and never fell.
    flat: the failed search's last ``f`` is within rounding of the pass's first.
    gd: ``g'd`` at the start of the search.
    halt: the callback halted the solve at this new iterate.
  """

  entry: Any = False
  continuing: Any = False
  accepted: Any = False
  failed: Any = False
  empty: Any = False
  nans: Any = False
  mismatch: Any = False
  flat: Any = False
  gd: Any = 0.0
  halt: Any = False


def terminate(s: LbfgsbState, box: Box, options: Options, event: Event) -> jax.Array:
  """The termination code after the entry or a pass: every stopping test, in one table.

  The first rule that holds decides, in SciPy's order (its ``minimize``'s
  fixed-variable exit, ``mainlb``'s entry test, the line search's ``ABNORMAL``
  exits, then at a new iterate the driver's ``maxiter``/``maxfun`` and
  callback before ``mainlb``'s ``pgtol`` and ``ftol`` tests), then our
  relative tests. Two corrections at a new iterate: a search that only found
  ``f`` rising against the gradient's prediction (accepted by ``dcsrch`` on
  rounding) stops as ``INCONSISTENT_GRADIENT`` instead of running on or
  calling that convergence; an ``ftol`` stop whose step changed ``f`` by no
  more than 4 ulps, where the quadratic model predicted a decrease (``-g'd /
  2`` at its minimizer along ``d``) beyond ``sqrt(eps) max(|f|, 1)``, is the
  precision limit of the type (``PRECISION_LIMIT``), as MGH's Brown badly
  scaled in float32 at ``f = 6e11``; a smaller prediction is within what
  rounding in ``g`` allows near a minimizer, and ``ftol`` stands.
  """
  e = event
  entry = jnp.asarray(e.entry)
  initial = entry & ~(jnp.asarray(e.continuing) & (s.nit > 0))  # the initial tests, not a new iterate's
  searched = ~entry & (jnp.asarray(e.accepted) | jnp.asarray(e.failed))
  eps = jnp.finfo(s.f.dtype).eps
  scale = jnp.maximum(jnp.abs(s.fold), jnp.abs(s.f))
  # ftol: (f_old - f) <= factr * epsmch * max(|f_old|, |f|, 1), factr = ftol / eps64 (SciPy's driver).
  tol = options.ftol / 2.220446049250313e-16 * 2.220446049250313e-16
  small_reduction = (s.fold - s.f) <= tol * jnp.maximum(scale, 1.0)
  floor = ~entry & (s.fold - s.f <= 4.0 * eps * scale) & (-0.5 * e.gd > jnp.sqrt(eps) * jnp.maximum(scale, 1.0))
  mismatch = ~entry & jnp.asarray(e.mismatch)
  pg2 = jnp.linalg.norm(projected_gradient(s.x, s.g, box.l, box.u))
  small_pg = (options.pgtol_rel > 0) & (pg2 <= options.pgtol_rel * (1.0 + jnp.abs(s.f)))
  small_step = (options.xtol_rel > 0) & (s.xstep <= options.xtol_rel * (jnp.linalg.norm(s.x) + 1.0))
  # Traced bad bounds (concrete ones raise in canonicalize_bounds): lower > upper,
  # NaN, a lower bound at +inf or an upper bound at -inf.
  invalid = jnp.any(~(box.l <= box.u) | (box.l == jnp.inf) | (box.u == -jnp.inf))
  failed = searched & jnp.asarray(e.failed)
  rules = [
      (entry & invalid, Termination.INVALID_BOUNDS),
      (entry & _nonfinite(s.f, s.g), Termination.NONFINITE),
      (initial & jnp.all(box.fixed), Termination.ALL_FIXED),
      (initial & (s.sbgnrm <= options.gtol), Termination.CONVERGED_PGTOL),
      (initial | (~entry & ~searched), Termination.RUNNING),  # a failed direction: the pass restarts
      # A failed search with an empty memory ends the solve (a restart otherwise):
      # NONFINITE where NaN or inf cut it short, else why it failed.
      (failed & ~jnp.asarray(e.empty), Termination.RUNNING),
      (failed & (jnp.asarray(e.nans) > 0), Termination.NONFINITE),
      (failed & (e.gd >= 0), Termination.ABNORMAL_NOT_DESCENT),
      (failed & mismatch, Termination.INCONSISTENT_GRADIENT),
      (failed & jnp.asarray(e.flat), Termination.PRECISION_LIMIT),
      (failed, Termination.ABNORMAL_LINE_SEARCH),
      # A new iterate (or, at the entry, the last one of the solve continued).
      (s.nit >= options.maxiter, Termination.MAXITER),
      (s.nfev > options.maxfun, Termination.MAXFUN),
      (jnp.asarray(e.halt), Termination.CALLBACK_HALT),
      (s.sbgnrm <= options.gtol, Termination.CONVERGED_PGTOL),
      (small_reduction & mismatch, Termination.INCONSISTENT_GRADIENT),
      (small_reduction & floor, Termination.PRECISION_LIMIT),
      (small_reduction, Termination.CONVERGED_FTOL),
      (small_pg, Termination.CONVERGED_PGTOL_REL),
      (small_step & mismatch, Termination.INCONSISTENT_GRADIENT),
      (small_step, Termination.CONVERGED_XTOL),
      (mismatch, Termination.INCONSISTENT_GRADIENT),
  ]
  code = jnp.asarray(Termination.RUNNING, jnp.int32)
  for holds, value in reversed(rules):  # nested selects: one fused kernel
    code = jnp.where(holds, jnp.int32(value), code)
  return code


def init(
    fun_and_grad: FunAndGrad, x0: jax.Array, box: Box, options: Options, maxcor: int, hooks: Hooks = Hooks()
) -> LbfgsbState:
  """Projects ``x0`` into the box, evaluates ``f`` and ``g`` and runs the initial test ``||proj g|| <= gtol``.

  A NaN in (a traced) ``x0`` ends the solve as ``NONFINITE`` at once, with the
  NaN entries replaced by the point of the box nearest 0, so ``x`` is inside.
  """
  bad_x0 = jnp.isnan(x0)
  x = project(jnp.where(bad_x0, 0.0, x0), box.l, box.u)
  f, g = fun_and_grad(x)
  f = jnp.where(jnp.any(bad_x0), jnp.nan, f)
  sbgnrm = projected_gradient_norm(x, g, box.l, box.u)
  zero = _i32(0)
  history = None
  if hooks.history:
    k, dtype = hooks.history, x.dtype
    history = History(
        x=jnp.full((k, x.size), jnp.nan, dtype), f=jnp.full((k,), jnp.nan, dtype),
        projg=jnp.full((k,), jnp.nan, dtype), nfev=jnp.full((k,), -1, jnp.int32),
        stp=jnp.full((k,), jnp.nan, dtype),
    )
    history = _record(history, zero, x, f, sbgnrm, _i32(1), jnp.zeros((), dtype))
  state = LbfgsbState(
      x=x, f=f, g=g, fold=f, memory=init_memory(x.size, maxcor, x.dtype),
      grams=init_grams(x.size, maxcor, x.dtype), sbgnrm=sbgnrm,
      nit=zero, nfev=_i32(1), stp=jnp.zeros((), x.dtype), xstep=jnp.zeros((), x.dtype),
      termination=_i32(Termination.RUNNING), history=history, info=_info(None, hooks),
  )
  state = with_termination(state, terminate(state, box, options, Event(entry=True)))
  if hooks.printer is not None:
    at_bound = jnp.sum((x == box.l) | (x == box.u), dtype=jnp.int32)
    jax.debug.callback(
        hooks.printer.start, x.size, maxcor, jnp.finfo(x.dtype).eps, at_bound,
        box.constrained, jnp.any(x != x0), f, sbgnrm,
    )
  return state


def resume(
    fun_and_grad: FunAndGrad, state: LbfgsbState, box: Box, options: Options, hooks: Hooks = Hooks(),
    x: jax.Array | None = None,
) -> LbfgsbState:
  """Continues a solve with its memory and counters (warm start) under new options, from ``x``
  projected into the box (default: the state's ``x``).

  Without ``x`` (a warm start of ``minimize``), ``fun``, its ``args`` or the
  bounds may differ from the solve that made ``state``: ``f`` and ``g`` are
  evaluated again at ``x`` (one more evaluation). When nothing changed (the
  same bounds, the same ``x``, and ``f`` and ``g`` equal to rounding: this
  evaluation may be compiled differently from the loop's) the solve continues
  exactly as one longer solve would, with the stored ``f``, ``g`` and the
  tests of its last iterate; otherwise (new bounds too, even where they leave
  ``x`` where it was) it starts over from there, keeping the memory, with the
  initial test ``||proj g|| <= gtol``.

  With ``x`` (an ``update``: the same ``fun`` and ``args``), the evaluation
  is made only where ``x`` or the bounds differ from the state's (a traced
  test, so one program for both): otherwise the solve continues exactly,
  with no evaluation.
  """
  given = x is not None
  x = project(state.x if x is None else x, box.l, box.u)
  same_box = False if state.box is None else jnp.all(box.l == state.box.l) & jnp.all(box.u == state.box.u)
  if given:
    same = same_box & jnp.all(x == state.x)
    f, g = lax.cond(same, lambda x: (state.f, state.g), fun_and_grad, x)
    evaluated = ~same
  else:
    f, g = fun_and_grad(x)
    tol = 8.0 * jnp.finfo(x.dtype).eps
    same = (
        same_box
        & jnp.all(x == state.x)
        & (jnp.abs(f - state.f) <= tol * jnp.maximum(jnp.abs(f), jnp.abs(state.f)))
        & (jnp.max(jnp.abs(g - state.g)) <= tol * jnp.maximum(jnp.max(jnp.abs(g)), jnp.max(jnp.abs(state.g))))
    )
    evaluated = True
  state = state._replace(
      x=x, f=jnp.where(same, state.f, f), g=jnp.where(same, state.g, g), fold=jnp.where(same, state.fold, f),
      nfev=state.nfev + jnp.asarray(evaluated, jnp.int32),
      sbgnrm=jnp.where(same, state.sbgnrm, projected_gradient_norm(x, g, box.l, box.u)),
      info=_info(state.info, hooks),
  )
  return with_termination(state, terminate(state, box, options, Event(entry=True, continuing=same)))


class _LineSearch(NamedTuple):
  x: jax.Array  # last evaluated point and its g, g'd (read only once accepted: then finite)
  f: jax.Array  # f there, or the last finite one (the failed search's rounding test reads it)
  g: jax.Array
  gd: jax.Array
  stp: jax.Array  # the step to evaluate next, or the accepted one once done
  dcsrch: DcsrchState
  ifun: jax.Array  # 1 + the finite trials that did not end the search (dcsrch's budget, maxls)
  nans: jax.Array  # trials where f or g was NaN or inf (their own budget, maxls)
  nfev: jax.Array
  done: jax.Array
  failed: jax.Array
  bad: jax.Array  # the shortest step where f or g was NaN or inf (inf: none)
  good: jax.Array  # the longest finite trial step below ``bad``
  rose: jax.Array  # some trial raised f beyond rounding where g predicted a fall beyond it
  fell: jax.Array  # some trial lowered f
  # Constants, carried: read from the loop's operands, XLA would compute each in a kernel of its own.
  stpmax: jax.Array
  noise: jax.Array  # changes of f this small may be rounding (_rounding)


def _line_search(fun_and_grad, state: LbfgsbState, d, z, box: Box, options: Options, skip):
  """``lnsrlb``: the Moré–Thuente search along ``d`` from ``x``, starting at ``z`` or ``1/||d||``.

  A trial where ``f`` or ``g`` is NaN or inf (a barrier's log or sqrt beyond
  its domain, an overflow) is not shown to ``dcsrch``: the step is halved
  toward the best point so far, and from then on no step goes past the
  longest finite one, so that the search stops at the edge of the finite
  region rather than probing it again. These halvings have their own budget
  of ``maxls`` evaluations; ``dcsrch`` keeps its ``maxls`` for the Wolfe
  conditions. With ``skip`` the loop makes no evaluation (``done``, not
  ``failed``).
  """
  x, dtype = state.x, state.x.dtype
  first = state.nit == 0
  stpmx = jnp.where(
      box.constrained, jnp.where(first, 1.0, max_feasible_step(x, d, box.l, box.u)), 1e10
  ).astype(dtype)
  stp = lnsrlb_first_step(d, stpmx, first, box.boxed)
  # stpmx can fall an ulp below 1 although x + d = z is feasible; keep z as the first trial.
  stpmax = jnp.maximum(stpmx, stp)
  gd0 = jnp.vdot(state.g, d)

  def cond(ls: _LineSearch):
    return ~(ls.done | ls.failed)

  def body(ls: _LineSearch):
    xt = lnsrlb_trial_point(x, d, z, ls.stp, box.l, box.u)
    f, g = fun_and_grad(xt)
    gd = jnp.vdot(g, d)
    # NaN or inf in g makes g'd NaN or inf (d is finite): one reduction tests both.
    nonfinite = ~(jnp.isfinite(f) & jnp.isfinite(gd))
    good = jnp.where(ls.stp < ls.bad, jnp.maximum(ls.good, ls.stp), ls.good)
    new_stp, ds = dcsrch_step(ls.dcsrch, f, gd, ls.stp, ftol=options.ls_ftol, gtol=options.ls_gtol,
                              stpmax=jnp.where(ls.bad < jnp.inf, jnp.minimum(ls.stpmax, good), ls.stpmax))
    done = ds.task != FG
    # The gradient's prediction of f(stp) - f(0), by the trapezoid rule over
    # g'd at both ends (exact for a quadratic), against the change seen.
    change, predicted = f - ls.dcsrch.finit, 0.5 * ls.stp * (ls.dcsrch.ginit + gd)
    ifun = jnp.where(done, ls.ifun, ls.ifun + 1)
    finite = _LineSearch(
        x=xt, f=f, g=g, gd=gd, stp=new_stp, dcsrch=ds, ifun=ifun, nans=ls.nans, nfev=ls.nfev + 1, done=done,
        failed=~done & ((ifun - 1 >= options.maxls) | (ls.nans >= options.maxls)), bad=ls.bad, good=good,
        rose=ls.rose | ((change > ls.noise) & (-predicted > ls.noise)), fell=ls.fell | (change < 0),
        stpmax=ls.stpmax, noise=ls.noise,
    )
    # A NaN or inf trial: dcsrch's state kept, the step halved toward stx.
    nans = ls.nans + 1
    halved = ls._replace(
        x=xt, g=g, gd=gd, stp=ls.dcsrch.stx + 0.5 * (ls.stp - ls.dcsrch.stx), nans=nans, nfev=ls.nfev + 1,
        failed=(ls.ifun - 1 >= options.maxls) | (nans >= options.maxls), bad=jnp.minimum(ls.bad, ls.stp),
    )
    return nonfinite, halved, finite

  zero = jnp.zeros((), bool)
  init_ls = _LineSearch(
      x=x, f=state.f, g=state.g, gd=gd0, stp=stp, dcsrch=dcsrch_init(state.f, gd0, stp, 0.0, stpmax),
      ifun=_i32(1), nans=_i32(0), nfev=_i32(0), done=jnp.asarray(skip), failed=~skip & (gd0 >= 0),
      bad=jnp.asarray(jnp.inf, dtype), good=jnp.zeros((), dtype), rose=zero, fell=zero, stpmax=stpmax,
      noise=_rounding(state.f),
  )
  return packed_while_loop(cond, body, init_ls, dtype, select=True), gd0


_cauchy_point = jax.jit(cauchy_point, static_argnames=("blocks",))


@functools.partial(jax.jit, static_argnames=("devices",))
def _subspace_step(x, g, l, u, gcp: CauchyPoint, memory: Memory, grams: Grams | None, devices: int
                   ) -> tuple[Subspace, Grams | None]:
  """Subspace minimization over the variables free at the Cauchy point, with the updated sums
  (None for small problems, which keep none: ``init_grams``)."""
  new_grams = None if grams is None else update_grams(grams, memory, gcp.free, devices=devices)
  factors, info_k = formk(memory, chronological_sums(memory, new_grams, gcp.free))
  r, info_r = reduced_gradient(x, g, gcp.xcp, gcp.c, memory, gcp.factors)
  sub = subspace_minimization(x, g, l, u, gcp.xcp, r, gcp.free, memory, factors)
  return sub._replace(info=sub.info | info_k | info_r), new_grams


def _search_direction(state: LbfgsbState, box: Box) -> tuple[CauchyPoint, Subspace, Grams | None]:
  """Cauchy point, then subspace minimization over the variables free at it."""
  x, g, memory = state.x, state.g, state.memory
  n = x.size
  # x split over several devices: the variants without a collective of an n-sized array.
  devices = devices_spanned(x)

  def skip_cauchy():  # unconstrained with a non-empty memory: z = x, all free
    return CauchyPoint(
        xcp=x, c=jnp.zeros((2 * memory.S.shape[0],), x.dtype), free=jnp.ones((n,), bool),
        nseg=_i32(0), info=jnp.zeros((), bool), factors=bmv_factors(memory),
    )

  # Both variants of cond_on_cpu call jitted kernels: each is traced once.
  gcp = cond_on_cpu(
      box.constrained | (memory.col == 0),
      lambda: _cauchy_point(x, g, box.l, box.u, box.fixed, memory, blocks=devices),
      skip_cauchy,
  )

  def no_subspace():
    return Subspace(z=gcp.xcp, iword=jnp.zeros((), bool), info=jnp.zeros((), bool)), state.grams

  use_subspace = jnp.any(gcp.free) & (memory.col > 0)
  sub, grams = cond_on_cpu(
      use_subspace, lambda: _subspace_step(x, g, box.l, box.u, gcp, memory, state.grams, devices), no_subspace)
  return gcp, sub, grams


def _callback_halt(hooks: Hooks, state: LbfgsbState, s: LbfgsbState, accepted) -> Any:
  """The host callback at a new iterate (SciPy calls it before its stopping
  tests); whether it halts the solve. False when there is none.

  Called in every pass, told whether it made a new iterate, outside any
  ``lax.cond`` (under vmap a cond runs both branches and finished lanes keep
  stepping). A ``pure_callback``, since JAX refuses IO effects in a
  ``while_loop`` with a batched predicate (vmap); its result is used, so it is
  never elided.
  """
  if hooks.callback is None:
    return False
  new_iterate = accepted & (state.termination == Termination.RUNNING)
  return jax.pure_callback(
      hooks.callback, jax.ShapeDtypeStruct((), bool), new_iterate, s.x, s.f, s.g, s.nit, s.nfev,
      vmap_method="sequential",
  )


def _accept(state: LbfgsbState, ls: _LineSearch, gdold, failed_direction, box: Box, options: Options,
            hooks: Hooks) -> LbfgsbState:
  """The new iterate where the search succeeded, the counters, the callback and the stopping tests.

  A failed search with a non-empty memory, or a failed direction, ends the
  pass without a new iterate and refreshes the memory (``B = I``).
  """
  searched = ~failed_direction
  failed, accepted = searched & ls.failed, searched & ls.done
  empty = state.memory.col == 0
  pick = lambda new, old: jnp.where(accepted, new, old)  # noqa: E731
  s = state._replace(
      x=pick(ls.x, state.x), f=pick(ls.f, state.f), g=pick(ls.g, state.g), fold=pick(state.f, state.fold),
      sbgnrm=pick(projected_gradient_norm(ls.x, ls.g, box.l, box.u), state.sbgnrm),
      nit=state.nit + accepted.astype(jnp.int32), nfev=state.nfev + ls.nfev,
      stp=pick(ls.stp, state.stp),
      xstep=pick(jnp.linalg.norm(ls.x - state.x), state.xstep),
      memory=refresh(state.memory, failed_direction | (failed & ~empty)),
  )
  # A search where f rose beyond rounding while the gradient predicted a fall
  # beyond it, and never fell at all, says that g does not match f (for a
  # smooth f and a consistent g, short enough steps fall as predicted; a long
  # trial that rose over a hump, then a short one that fell, even by a few
  # ulps, is no evidence). One that shrank the step until f's changes were
  # lost in rounding failed for lack of precision (flat).
  event = Event(
      accepted=accepted, failed=failed, empty=empty, nans=ls.nans, mismatch=ls.rose & ~ls.fell,
      flat=jnp.abs(ls.f - state.f) <= _rounding(state.f), gd=gdold, halt=_callback_halt(hooks, state, s, accepted),
  )
  history = _record(s.history, jnp.where(accepted, s.nit, _NOWHERE), s.x, s.f, s.sbgnrm, s.nfev, s.stp)
  return with_termination(s._replace(history=history), terminate(s, box, options, event))


def _update_memory(s: LbfgsbState, old: LbfgsbState, ls: _LineSearch, d, gdold, accepted
                   ) -> tuple[LbfgsbState, jax.Array]:
  """The pair ``s = stp d``, ``y = g_new - g_old``, skipped when ``s'y <= eps (-g_old'd stp)``.

  Also after the last iteration, so that a warm start continues exactly as one
  longer solve would. No ``lax.cond``: ``S`` and ``Y`` are written in place,
  one row, in every pass. Also returns whether an accepted pair was skipped.
  """
  eps = jnp.finfo(s.x.dtype).eps
  dr = (ls.gd - gdold) * ls.stp
  skip = dr <= eps * (-gdold * ls.stp)
  stored = accepted & ~skip
  ss = ls.stp * ls.stp * jnp.vdot(d, d)  # the reference's stp^2 dtd (exactly dtd when stp == 1)
  memory = update_memory(s.memory, ls.stp * d, ls.g - old.g, dr, ss, apply=stored)
  return s._replace(memory=memory, grams=mark_replaced(s.grams, memory, stored)), accepted & skip


def step(
    fun_and_grad: FunAndGrad, box: Box, options: Options, state: LbfgsbState, hooks: Hooks = Hooks()
) -> LbfgsbState:
  """One pass of the main loop: search direction, line search, accept, update the memory.

  Of ``hooks``, only the callback acts here (its halt is a stopping test).
  """
  # 1. Generalized Cauchy point and 2. subspace minimization.
  gcp, sub, grams = _search_direction(state, box)
  state = state._replace(grams=grams)
  failed_direction = gcp.info | sub.info

  # 3. Line search along d = z - x; none when the direction failed.
  d = sub.z - state.x
  ls, gdold = _line_search(fun_and_grad, state, d, sub.z, box, options, failed_direction)

  # 4. The new iterate and the stopping tests, 5. the memory update.
  accepted = ~failed_direction & ls.done
  s = _accept(state, ls, gdold, failed_direction, box, options, hooks)
  s, skipped = _update_memory(s, state, ls, d, gdold, accepted)
  if state.info is None:
    return s
  info = state.info
  return s._replace(info=Info(
      nskip=info.nskip + skipped.astype(jnp.int32), nintol=info.nintol + gcp.nseg,
      nact=jnp.where(box.constrained | (state.memory.col == 0), jnp.sum(~gcp.free, dtype=jnp.int32), info.nact),
      iback=jnp.where(failed_direction, info.iback, ls.ifun - 1),
  ))


def advance(
    fun_and_grad: FunAndGrad, state: LbfgsbState, box: Box, options: Options, until: Any = None,
    hooks: Hooks = Hooks(),
) -> LbfgsbState:
  """The one driver: runs :func:`step` in a ``lax.while_loop`` from ``state``
  while it is ``RUNNING`` and has made fewer than ``until`` iterates (None: no
  such limit).

  ``until=state.nit + 1`` is one iteration: passes until one makes a new
  iterate (a restart refreshes the memory without one) or the solve
  terminates; it evaluates only in the line searches, so ``k`` such calls
  from :func:`init` make the iterates and counters of :func:`run` with
  ``maxiter=k``. A state stopped by ``until`` stays ``RUNNING``. The printer
  of ``hooks`` prints each new iterate; ``start`` and ``finish`` are
  :func:`init`'s and :func:`run`'s.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jax_lbfgsb._solver import Box, Options, advance, init
    >>> fg = lambda x: (jnp.sum((x - 2.0) ** 2), 2.0 * (x - 2.0))
    >>> box = Box.of(jnp.zeros(2), jnp.ones(2))
    >>> options = Options(*(jnp.asarray(v, jnp.float32) for v in (0.0, 1e-5)),
    ...                   *(jnp.asarray(v, jnp.int32) for v in (100, 100, 20)),
    ...                   *(jnp.asarray(v, jnp.float32) for v in (1e-3, 0.9, 0.0, 0.0)))
    >>> state = advance(fg, init(fg, jnp.zeros(2), box, options, 5), box, options, until=1)
    >>> print(state.x, int(state.nit), int(state.nfev))
    [1. 1.] 1 2
  """

  def cond(s: LbfgsbState) -> jax.Array:
    running = s.termination == Termination.RUNNING
    return running if until is None else running & (s.nit < until)

  def body(s: LbfgsbState) -> LbfgsbState:
    new = step(fun_and_grad, box, options, s, hooks)
    # The printer runs on every pass, outside any lax.cond, told whether the
    # pass made a new iterate; it prints only then.
    new_iterate = (new.nit > s.nit) & (s.termination == Termination.RUNNING)
    if hooks.printer is not None:
      jax.debug.callback(hooks.printer.iterate, new_iterate, new.nit, new.f, new.sbgnrm, new.info.iback, new.xstep)
    return new

  return lax.while_loop(cond, body, state._replace(box=None))


def run(
    fun_and_grad: FunAndGrad, state: LbfgsbState, box: Box, options: Options, hooks: Hooks = Hooks()
) -> LbfgsbState:
  """:func:`advance` from ``state`` (from :func:`init` or :func:`resume`) until it terminates, then the
  printer's summary; the state returned holds ``box``."""
  state = advance(fun_and_grad, state, box, options, None, hooks)
  if hooks.printer is not None:
    jax.debug.callback(
        hooks.printer.finish, state.x.size, state.nit, state.nfev, state.info.nintol, state.info.nskip,
        state.info.nact, state.sbgnrm, state.f, state.termination,
    )
  return state._replace(box=box)
