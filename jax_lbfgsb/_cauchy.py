"""The generalized Cauchy point: Algorithm CP of Byrd, Lu, Nocedal, Zhu (1995), section 4.

Along the projected steepest-descent path ``x(t) = P(x - t g)`` the quadratic
model ``m(x) = g'(x - x_k) + 1/2 (x - x_k)' B (x - x_k)`` is piecewise
quadratic; its first local minimizer is the Cauchy point ``xcp``. The path
bends at the breakpoints ``t_i = (x_i - l_i) / g_i`` (``g_i > 0``) or
``(x_i - u_i) / g_i`` (``g_i < 0``). On each segment ``f1`` and ``f2`` are the
first and second derivatives of the model along the path; ``dtm = -f1/f2`` is
the minimizer within the segment.

Mirrors ``cauchy`` in SciPy's ``lbfgsb.c``, with one difference: breakpoints
with equal ``t`` are visited in index order, where the reference's heap visits
them in heap order (the Cauchy point differs by rounding only). Three ways to
find the segment, equal to rounding:

- ``"walk"`` (CPU): like the reference's lazy heapsort, it avoids a full sort
  when it stops early: each of the first ``SORT_AFTER`` breakpoints is found by
  a masked argmin (``O(n)``, no sort), in a ``while`` loop; a walk that passes
  more sorts the breakpoints once and goes on in that order. Cheapest where a
  loop trip costs microseconds. Its loop carries two arrays (floats, ints),
  each written by one kernel a trip; the breakpoints passed are not carried
  but follow from the last one passed.
- ``"scan"`` (GPU, TPU): no loop. One sort of all breakpoints, then every
  segment's ``f1``, ``f2``, ``c`` and ``p`` at once by prefix sums (``f2``'s
  floor ``eps f2(0)`` by a max-plus associative scan), and the first segment
  whose minimizer lies inside it. It holds ``O(n m)`` temporaries, as much as
  the memory itself; on an accelerator each loop trip would be a round trip.
- ``"merge"`` (``x`` split over devices, any platform): the scan's sums over
  runs of ``MERGE_ROWS`` breakpoints. Each block of ``x`` (a device's part)
  sorts its own breakpoints once; a run takes the next ``MERGE_ROWS + 1`` of
  every block, sorts those few candidates (ties by block, then index: by
  index) and keeps the first, gathers their rows of ``d``, ``x``, ``l``, ``u``
  and ``W`` (each device its own entries, summed: ``O(m)`` per row), and goes
  on from where the last run ended, until a segment holds the minimizer (one
  run, usually). Devices exchange ``O(m MERGE_ROWS)`` numbers per run, never an
  ``n``-sized array.

Symbols: ``x, g, l, u`` the iterate, gradient and bounds; ``d`` the direction
(``-g`` on moving variables); ``p = W'd``; ``c = W'(xcp - x)``; ``iwhere`` the
status of each variable (-1 unbounded, 0 free, -3 free with ``g_i = 0``, 1 at
``l``, 2 at ``u``, 3 fixed by ``l == u``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jax_lbfgsb._bounds import first_argmin
from jax_lbfgsb._compact import BmvFactors, Memory, bmv, bmv_factors, matvec, w_row, w_rows, w_transpose_times

__all__ = ["CauchyPoint", "cauchy_point", "SORT_AFTER", "MERGE_ROWS", "floored_sums"]

# Breakpoints found by argmin before the rest are sorted (see the module docstring).
SORT_AFTER = 32
# Breakpoints per run of the merge (see the module docstring).
MERGE_ROWS = 32


class CauchyPoint(NamedTuple):
  """Result of :func:`cauchy_point`.

  Attributes:
    xcp: the generalized Cauchy point, inside the bounds.
    c: ``W'(xcp - x)`` (``2m``, chronological), used by the subspace step.
    free: True for variables free at ``xcp`` (``iwhere <= 0``).
    nseg: number of segments explored (int32).
    info: True when a triangular solve with the middle matrix failed.
    factors: :func:`~jax_lbfgsb._compact.bmv_factors` of the memory (the subspace step's ``bmv`` reuses them).
  """

  xcp: jax.Array
  c: jax.Array
  free: jax.Array
  nseg: jax.Array
  info: jax.Array
  factors: BmvFactors


class _Segment(NamedTuple):
  k: jax.Array  # breakpoints passed
  passed: jax.Array  # (n,) bool, the breakpoints passed
  tj: jax.Array  # t at the last breakpoint passed
  tsum: jax.Array
  f1: jax.Array
  f2: jax.Array
  dtm: jax.Array
  p: jax.Array
  c: jax.Array
  info: jax.Array


class _Walk(NamedTuple):
  """The walk's state, carried as two arrays (:meth:`pack`): one fusion writes each.

  The breakpoints passed are not carried: they are those up to ``(tj, last)``
  in the walk's order (increasing ``t``, ties by index), :func:`_passed`."""

  k: jax.Array  # breakpoints passed
  last: jax.Array  # the last breakpoint passed
  ibp: jax.Array  # the next breakpoint
  tj: jax.Array  # t at the last breakpoint passed
  tnext: jax.Array  # t at ibp
  tsum: jax.Array
  f1: jax.Array
  f2: jax.Array
  dtm: jax.Array
  info: jax.Array
  pc: jax.Array  # (2, 2m): p = W'd over the free variables, c = W'(x(tj) - x)
  # Constants, carried: XLA would hoist what the body computes from them into kernels of their own.
  nbreak: jax.Array  # the number of breakpoints
  bnded: jax.Array  # every moving variable has one
  col: jax.Array  # pairs in the memory
  floor: jax.Array  # of f2: eps f2(0)

  def pack(self) -> tuple[jax.Array, jax.Array]:
    """``([p, c, tj, tnext, tsum, f1, f2, dtm, floor], [k, last, ibp, nbreak, col, info, bnded])``."""
    floats = jnp.stack([self.tj, self.tnext, self.tsum, self.f1, self.f2, self.dtm, self.floor]).astype(self.pc.dtype)
    flags = [self.info, self.bnded]
    return (jnp.concatenate([self.pc.ravel(), floats]),
            jnp.stack([self.k, self.last, self.ibp, self.nbreak, self.col, *(f.astype(jnp.int32) for f in flags)]))

  @staticmethod
  def unpack(carry: tuple[jax.Array, jax.Array]) -> "_Walk":
    floats, ints = carry
    size = floats.size - 7
    tj, tnext, tsum, f1, f2, dtm, floor = (floats[size + i] for i in range(7))
    return _Walk(k=ints[0], last=ints[1], ibp=ints[2], tj=tj, tnext=tnext, tsum=tsum, f1=f1, f2=f2, dtm=dtm,
                 info=ints[5] != 0, pc=floats[:size].reshape(2, size // 2), nbreak=ints[3], bnded=ints[6] != 0,
                 col=ints[4], floor=floor)


def _while(cond, body, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
  """``lax.while_loop`` on a packed :class:`_Walk`."""
  return lax.while_loop(lambda c: cond(_Walk.unpack(c)), lambda c: body(_Walk.unpack(c)).pack(), carry)


def _passed(t, k, tj, last) -> jax.Array:
  """The ``k`` breakpoints up to ``last`` (at ``t = tj``) in the walk's order."""
  index = jnp.arange(t.size, dtype=jnp.int32)
  return (k > 0) & ((t < tj) | ((t == tj) & (index <= last)))


def _walk(x, d, t, l, u, nbreak, bnded, theta, f1, f2, p, info, memory, factors) -> _Segment:
  """The walk: passes breakpoint ``ibp``, finds the next one, and stops before it
  when the minimizer of the new segment comes first."""
  dtype = x.dtype
  eps = jnp.finfo(dtype).eps

  def advance(s: _Walk, next_breakpoint) -> _Walk:
    ibp = s.ibp
    tj = s.tnext
    dt = tj - s.tj
    dibp = d[ibp]
    zibp = jnp.where(dibp > 0, u[ibp] - x[ibp], l[ibp] - x[ibp])
    dibp2 = dibp * dibp
    sp, sc = s.pc[0], s.pc[1]
    f1 = s.f1 + dt * s.f2 + dibp2 - theta * dibp * zibp
    f2 = s.f2 - theta * dibp2
    c = sc + dt * sp
    use_w = s.col > 0
    wbp = w_row(memory, ibp, s.col)  # the loop's carried col
    v = bmv(memory, wbp, factors)
    cv, pv, wv = jnp.sum(jnp.stack([c, sp, wbp]) * v[None, :], axis=1)  # one reduction
    f1 = f1 + jnp.where(use_w, dibp * cv, 0.0)
    f2 = f2 + jnp.where(use_w, 2.0 * dibp * pv - dibp2 * wv, 0.0)
    p = sp - dibp * wbp
    f2 = jnp.maximum(s.floor, f2)
    more = s.k + 1 < s.nbreak
    dtm = jnp.where(~more & s.bnded, 0.0, -f1 / f2)
    nxt, tnext = next_breakpoint(s.k + 1, tj, ibp)
    return _Walk(
        k=s.k + 1, last=ibp, ibp=nxt, tj=tj, tnext=tnext, tsum=s.tsum + dt, f1=f1, f2=f2, dtm=dtm,
        info=s.info | (use_w & ~jnp.all(jnp.isfinite(v))), pc=jnp.stack([p, c]), nbreak=s.nbreak, bnded=s.bnded,
        col=s.col, floor=s.floor,
    )

  def done(s: _Walk) -> jax.Array:
    """The minimizer lies before ibp, or no breakpoint is left (or, at the start, info)."""
    return (s.k >= s.nbreak) | (s.dtm < s.tnext - s.tj) | ((s.k == 0) & s.info)

  # The first SORT_AFTER breakpoints: one masked argmin each.
  def by_argmin(k, tj, last) -> tuple[jax.Array, jax.Array]:
    return first_argmin(jnp.where(_passed(t, k, tj, last), jnp.inf, t))

  zero = jnp.zeros((), dtype)
  k0 = jnp.zeros((), jnp.int32)
  ibp, tnext = by_argmin(k0, zero, k0)
  init = _Walk(
      k=k0, last=k0, ibp=ibp, tj=zero, tnext=tnext, tsum=zero, f1=f1, f2=f2, dtm=-f1 / f2, info=info,
      pc=jnp.stack([p, jnp.zeros_like(p)]), nbreak=nbreak, bnded=bnded, col=memory.col, floor=eps * f2,
  )
  carry = _while(lambda s: ~done(s) & (s.k < SORT_AFTER), lambda s: advance(s, by_argmin), init.pack())

  # The rest, if any: one stable sort of the breakpoints (ties by index, as
  # above: its first k are those passed, its entry k is ibp). Only the sort is
  # under a cond; a finished walk makes no trip (a cond passing the walk's
  # state through would copy it). With n <= SORT_AFTER the walk above has
  # passed every breakpoint, and this part is left out of the graph.
  if x.size > SORT_AFTER:
    order = lax.cond(done(_Walk.unpack(carry)), lambda: jnp.zeros(x.shape, jnp.int32),
                     lambda: jnp.argsort(t, stable=True).astype(jnp.int32))

    def by_order(k, tj, last) -> tuple[jax.Array, jax.Array]:
      nxt = order[k]
      return nxt, t[nxt]

    carry = _while(lambda r: ~done(r), lambda r: advance(r, by_order), carry)
  seg = _Walk.unpack(carry)
  return _Segment(k=seg.k, passed=_passed(t, seg.k, seg.tj, seg.last), tj=seg.tj, tsum=seg.tsum, f1=seg.f1,
                  f2=seg.f2, dtm=seg.dtm, p=seg.pc[0], c=seg.pc[1], info=seg.info)


def floored_sums(f0: jax.Array, deltas: jax.Array, floor: jax.Array) -> jax.Array:
  """``f_j = max(floor, f_{j-1} + deltas_j)`` for all ``j`` at once, from ``f0``.

  Each step is the map ``y -> max(a, y + b)``; these compose associatively,
  ``(a1, b1) then (a2, b2) = (max(a2, a1 + b2), b1 + b2)``, so one
  :func:`jax.lax.associative_scan` gives every ``f_j``.
  """

  def compose(first, second):
    (a1, b1), (a2, b2) = first, second
    return jnp.maximum(a2, a1 + b2), b1 + b2

  a, b = lax.associative_scan(compose, (jnp.full_like(deltas, floor), deltas))
  return jnp.maximum(a, f0 + b)


class _Start(NamedTuple):
  """Where a run of sorted breakpoints starts: ``k`` passed, the last at ``tj``,
  ``tsum`` their accumulated steps, and ``f1``, ``f2``, ``p``, ``c`` of the segment after it."""

  k: jax.Array
  tj: jax.Array
  tsum: jax.Array
  f1: jax.Array
  f2: jax.Array
  p: jax.Array
  c: jax.Array


def _segments(start: _Start, ts, ds, zs, ws, next_t, nbreak, bnded, theta, f2_floor, mid, use_w) -> tuple:
  """The segments after breakpoints ``start.k + j`` (rows ``j`` of ``ts, ds, zs, ws``, in
  sorted order; ``next_t`` follows the last row), all at once by prefix sums: per row
  ``done`` (the minimizer lies in the segment after it) and the state there."""
  dtype = ts.dtype
  j = jnp.arange(ts.size, dtype=jnp.int32)
  real = start.k + j < nbreak
  more = start.k + j + 1 < nbreak
  ts = jnp.where(real, ts, 0.0)
  # v_b = M w_b for each row (M symmetric).
  vs = jnp.where(use_w, matvec(ws, jnp.where(use_w, mid, 0.0)), 0.0)
  # p before passing each breakpoint, and c after reaching it.
  dw = jnp.where(real[:, None], ds[:, None] * ws, 0.0)
  p_before = start.p[None, :] - (jnp.cumsum(dw, axis=0) - dw)
  dt = jnp.where(real, ts - jnp.concatenate([start.tj[None], ts[:-1]]), 0.0)
  c = start.c[None, :] + jnp.cumsum(dt[:, None] * p_before, axis=0)
  dot = lambda a, b: jnp.sum(a * b, axis=1)  # noqa: E731
  # f2 after each breakpoint (floored at eps f2(0), as the walk), f1 with the f2 before it.
  delta = -theta * ds * ds + jnp.where(use_w, 2.0 * ds * dot(p_before, vs) - ds * ds * dot(ws, vs), 0.0)
  f2s = floored_sums(start.f2, jnp.where(real, delta, 0.0), f2_floor)
  f2_before = jnp.concatenate([start.f2[None], f2s[:-1]])
  f1s = start.f1 + jnp.cumsum(jnp.where(
      real, dt * f2_before + ds * ds - theta * ds * zs + jnp.where(use_w, ds * dot(c, vs), 0.0), 0.0))
  dtm = jnp.where(~more & bnded, 0.0, -f1s / f2s)
  gap = jnp.where(more, jnp.concatenate([ts[1:], jnp.asarray(next_t, dtype)[None]]) - ts, jnp.inf)
  done = real & (~more | (dtm < gap))
  after = _Start(k=start.k + j + 1, tj=ts, tsum=start.tsum + jnp.cumsum(dt), f1=f1s, f2=f2s,
                 p=p_before - dw, c=c)
  return done, dtm, after


def _first_done(start: _Start, done0, done, dtm, after: _Start) -> tuple:
  """The rows passed up to the first ``done`` (``done0``: the segment at ``start``),
  all of them when none is; ``(found, the segment reached, its dtm)``."""
  flags = jnp.concatenate([done0[None], done])
  found = jnp.any(flags)
  k = jnp.where(found, jnp.argmax(flags), done.size).astype(jnp.int32)
  last = jnp.maximum(k - 1, 0)
  pick = lambda a, b: jnp.where(k > 0, a[last], b)  # noqa: E731
  return found, jax.tree.map(pick, after, start), jnp.where(k > 0, dtm[last], -start.f1 / start.f2)


def _middle(memory: Memory, info) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``M`` formed once by ``2m`` :func:`bmv` solves, whether ``W`` is used, and ``info``."""
  use_w = memory.col > 0
  mid = jax.vmap(lambda e: bmv(memory, e))(jnp.eye(2 * memory.S.shape[0], dtype=memory.S.dtype))
  return mid, use_w, info | (use_w & ~jnp.all(jnp.isfinite(mid)))


def _rows(memory: Memory, x, d, l, u, idx) -> tuple:
  """``d``, ``z`` (the step to the bound it meets) and the rows of ``W`` at ``idx``, by
  gathers (on an array split over devices, each device gathers its own entries)."""
  take = lambda a: jnp.take(a, idx, mode="clip")  # noqa: E731
  ds = take(d)
  return ds, jnp.where(ds > 0, take(u) - take(x), take(l) - take(x)), w_rows(memory, idx)


def _start(f1, f2, p) -> _Start:
  zero = jnp.zeros((), f1.dtype)
  return _Start(k=jnp.zeros((), jnp.int32), tj=zero, tsum=zero, f1=f1, f2=f2, p=p, c=jnp.zeros_like(p))


def _segment(seg: _Start, dtm, passed, info) -> _Segment:
  return _Segment(k=seg.k, passed=passed, tj=seg.tj, tsum=seg.tsum, f1=seg.f1, f2=seg.f2, dtm=dtm, p=seg.p, c=seg.c,
                  info=info)


def _scan(x, d, t, l, u, nbreak, bnded, theta, f1, f2, p, info, memory) -> _Segment:
  """Every segment at once (module docstring): one sort, then :func:`_segments`
  over all breakpoints; row ``j`` is breakpoint ``j`` in sorted order."""
  n = x.size
  eps = jnp.finfo(x.dtype).eps
  order = jnp.argsort(t, stable=True)  # ties by index, as the walk; no breakpoint (inf) last
  mid, use_w, info = _middle(memory, info)
  ds, zs, ws = _rows(memory, x, d, l, u, order)
  start = _start(f1, f2, p)
  done, dtm, after = _segments(start, t[order], ds, zs, ws, 0.0, nbreak, bnded, theta, eps * f2, mid, use_w)
  first = jnp.where(nbreak > 0, t[order[0]], jnp.inf)
  done0 = (nbreak == 0) | info | (-f1 / f2 < first)
  _, seg, dtm = _first_done(start, done0, done, dtm, after)  # some segment is done
  rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
  return _segment(seg, dtm, rank < seg.k, info)


class _Merge(NamedTuple):
  heads: jax.Array  # (B,) breakpoints of each block passed
  start: _Start
  passed: jax.Array
  dtm: jax.Array
  done: jax.Array


def _merge(x, d, t, l, u, nbreak, bnded, theta, f1, f2, p, info, memory, blocks: int) -> _Segment:
  """The scan in runs of ``MERGE_ROWS`` breakpoints, for ``x`` split over devices
  (module docstring): no collective of an ``n``-sized array."""
  n, dtype = x.size, x.dtype
  eps = jnp.finfo(dtype).eps
  rows = min(MERGE_ROWS, n)
  width = n // blocks
  mid, use_w, info = _middle(memory, info)
  # Each block (a device's part, when blocks is the device count) sorted on its own.
  local = t.reshape(blocks, width)
  order = jnp.argsort(local, axis=1, stable=True).astype(jnp.int32)
  local = jnp.take_along_axis(local, order, axis=1)
  order = order + (width * jnp.arange(blocks, dtype=jnp.int32))[:, None]
  grab = rows + 1  # the rows, and the breakpoint after them

  def run(s: _Merge) -> _Merge:
    # The next `grab` of each block; the first `grab` of all these are the next overall
    # (stable: ties by block, then by index within a block, so by index).
    at = s.heads[:, None] + jnp.arange(grab, dtype=jnp.int32)[None, :]
    inside = at < width
    at = jnp.minimum(at, width - 1)
    cand_t = jnp.where(inside, jnp.take_along_axis(local, at, axis=1), jnp.inf).ravel()
    cand_i = jnp.take_along_axis(order, at, axis=1).ravel()
    pick = jnp.argsort(cand_t, stable=True)[:grab]
    ts, idx = cand_t[pick[:rows]], cand_i[pick[:rows]]
    ds, zs, ws = _rows(memory, x, d, l, u, idx)
    done, dtm, after = _segments(s.start, ts, ds, zs, ws, cand_t[pick[rows]], nbreak, bnded, theta, eps * f2,
                                 mid, use_w)
    done0 = (s.start.k == 0) & ((nbreak == 0) | info | (-f1 / f2 < ts[0]))
    found, start, dtm = _first_done(s.start, done0, done, dtm, after)
    taken = jnp.arange(rows) < start.k - s.start.k
    heads = s.heads + jnp.sum(taken[:, None] & (pick[:rows, None] // grab == jnp.arange(blocks)[None, :]), axis=0,
                              dtype=jnp.int32)
    passed = s.passed.at[jnp.where(taken, idx, n)].set(True, mode="drop")
    return _Merge(heads=heads, start=start, passed=passed, dtm=dtm, done=found)

  init = _Merge(heads=jnp.zeros((blocks,), jnp.int32), start=_start(f1, f2, p), passed=jnp.zeros((n,), bool),
                dtm=-f1 / f2, done=jnp.zeros((), bool))
  s = lax.while_loop(lambda s: ~s.done, run, init)
  return _segment(s.start, s.dtm, s.passed, info)


def cauchy_point(
    x: jax.Array,
    g: jax.Array,
    l: jax.Array,
    u: jax.Array,
    fixed: jax.Array,
    memory: Memory,
    method: str | None = None,
    blocks: int = 1,
) -> CauchyPoint:
  """Computes the generalized Cauchy point (``cauchy``).

  Args:
    x, g, l, u: ``(n,)`` iterate, gradient and bounds (``+-inf`` for none).
    fixed: ``(n,)`` bool, ``l == u`` (``iwhere = 3``).
    memory: the limited memory (``B = theta I - W M W'``).
    method: ``"walk"``, ``"scan"``, ``"merge"`` (see the module docstring), or
      None: the merge when ``blocks > 1``, else the walk on CPU and the scan
      elsewhere (``lax.platform_dependent``: only the chosen one is compiled).
    blocks: (static) the number of devices ``x`` is split over; the merge
      sorts ``gcd(n, blocks)`` blocks each on its own.

  Returns:
    :class:`CauchyPoint`.
  """
  theta = memory.theta
  has_l = l > -jnp.inf
  has_u = u < jnp.inf
  bounded = has_l | has_u
  neggi = -g
  tl = jnp.where(has_l, x - l, 0.0)
  tu = jnp.where(has_u, u - x, 0.0)

  # 1. Classify the variables and set the direction d (zero on variables that
  #    are fixed, or at a bound with -g pointing out, or bounded with g = 0).
  at_l = has_l & (tl <= 0)
  at_u = has_u & (tu <= 0)
  candidate = bounded & ~fixed
  pinned = candidate & jnp.where(at_l, neggi <= 0, at_u & (neggi >= 0))  # iwhere 1, 2
  flat = candidate & ~at_l & ~at_u & (jnp.abs(neggi) <= 0)  # iwhere -3
  moving = ~fixed & ~pinned & ~flat
  d = jnp.where(moving, neggi, 0.0)

  # 2. Breakpoints along -g.
  brk_l = moving & has_l & (neggi < 0)
  brk_u = moving & has_u & (neggi > 0)
  has_break = brk_l | brk_u
  t = jnp.where(brk_l, tl / jnp.where(brk_l, -neggi, 1.0), jnp.where(brk_u, tu / jnp.where(brk_u, neggi, 1.0), jnp.inf))
  # One reduction (a sum and a max) for the number of breakpoints and two
  # flags: 2 if a moving variable without a breakpoint has g != 0 (the path is
  # unbounded), 1 if one has g = 0, else 0.
  nbreak, unlimited = lax.reduce(
      (has_break.astype(jnp.int32),
       jnp.where(moving & ~has_break, jnp.where(jnp.abs(neggi) > 0, 2, 1), 0).astype(jnp.int32)),
      (jnp.int32(0), jnp.int32(0)), lambda a, b: (a[0] + b[0], jnp.maximum(a[1], b[1])), (0,))
  bnded = unlimited < 2

  # 3. Derivatives of the model at t = 0: f1 = -d'd, f2 = theta d'd - p'Mp.
  f1 = -jnp.vdot(d, d)
  p = w_transpose_times(memory, d)  # W'd
  factors = bmv_factors(memory)
  v = bmv(memory, p, factors)
  f2 = -theta * f1 - jnp.where(memory.col > 0, jnp.vdot(v, p), 0.0)
  info = ~jnp.all(jnp.isfinite(v))

  # 4. The segment where the model's minimizer lies, in increasing t.
  def walk():
    return _walk(x, d, t, l, u, nbreak, bnded, theta, f1, f2, p, info, memory, factors)

  def scan():
    return _scan(x, d, t, l, u, nbreak, bnded, theta, f1, f2, p, info, memory)

  def merge():
    return _merge(x, d, t, l, u, nbreak, bnded, theta, f1, f2, p, info, memory, math.gcd(x.size, blocks))

  if method is None:
    seg = merge() if blocks > 1 else lax.platform_dependent(cpu=walk, default=scan)
  else:
    seg = {"walk": walk, "scan": scan, "merge": merge}[method]()

  # 5. xcp: variables whose breakpoint was passed sit on their bound; the rest
  #    move by tsum + dtm along d.
  dtm = jnp.maximum(seg.dtm, 0.0)
  tsum = seg.tsum + dtm
  hit = seg.passed
  bound = jnp.where(d > 0, u, l)
  xcp = jnp.where(hit, bound, x + tsum * jnp.where(hit, 0.0, d))
  c = seg.c + dtm * seg.p
  # With no breakpoint and no moving variable the reference returns xcp = x.
  trivial = (nbreak == 0) & (unlimited == 0)
  xcp = jnp.where(trivial, x, xcp)
  c = jnp.where(trivial, jnp.zeros_like(c), c)
  nseg = jnp.where(trivial, 0, 1 + seg.k).astype(jnp.int32)
  return CauchyPoint(xcp=xcp, c=c, free=~fixed & ~pinned & ~hit, nseg=nseg, info=seg.info, factors=factors)
