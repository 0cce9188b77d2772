"""The compact L-BFGS matrix: correction pairs, ``matupd``, ``formt``, ``bmv``.

Byrd, Nocedal, Schnabel (1994) write the L-BFGS matrix as
``B = theta I - W M W'`` with ``W = [Y, theta S]`` and

    M = [[-D, L'], [L, theta S'S]]^{-1},

where, with the pairs in chronological order (oldest first), ``D`` is the
diagonal and ``L`` the strictly lower triangle of ``S'Y``.

Storage follows the reference: ``S`` and ``Y`` are ``(m, n)`` circular buffers
(slot of the oldest pair: ``head``; number of pairs: ``col``), while the small
matrices ``SY = S'Y`` and ``SS = S'S`` are kept in chronological order and
shifted when the buffer wraps. Vectors of length ``2m`` such as ``W'v`` are in
chronological order, ``[Y part; S part]``, zero past ``col``.

Mirrors ``matupd``, ``formt`` and ``bmv`` in SciPy's ``lbfgsb.c``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "BmvFactors",
    "bmv_factors",
    "Memory",
    "init_memory",
    "refresh",
    "chronological_slots",
    "chronological_w",
    "w_transpose_times",
    "w_times",
    "w_rows",
    "w_row",
    "update_correction_pairs",
    "formt",
    "update_memory",
    "bmv",
    "InverseHessian",
]

_HI = lax.Precision.HIGHEST


# XLA:CPU compiles each matrix-vector `dot` into a tiled kernel of its own
# (about 25 KB of LLVM IR at n = m = 10, twenty of them in a solve); a
# multiply and a sum fuse with their neighbours instead, but sum in sequence.
# Past FUSED_SUM_MAX rows or columns (S and Y at larger n) the dot's
# vectorized kernel is kept: with fused sums an iteration of EPT took the
# same time at n = 256, 1.6x as long at n = 1024 and 3.5x at n = 90,000.
FUSED_SUM_MAX = 256


def matvec(a: jax.Array, v: jax.Array) -> jax.Array:
  """``a @ v`` for a matrix ``a`` and a vector or matrix ``v``: a fused sum unless ``a`` has more
  than :data:`FUSED_SUM_MAX` rows or columns."""
  if max(a.shape) > FUSED_SUM_MAX:
    return jnp.matmul(a, v, precision=_HI)
  return jnp.sum(a[:, :, None] * v[None], axis=1) if v.ndim == 2 else jnp.sum(a * v[None, :], axis=1)


def tmatvec(a: jax.Array, v: jax.Array) -> jax.Array:
  """``a' @ v``, as :func:`matvec`."""
  if max(a.shape) > FUSED_SUM_MAX:
    return jnp.matmul(v.T, a, precision=_HI).T  # v' a: no transpose of a
  return jnp.sum(a[:, :, None] * v[:, None, :], axis=0) if v.ndim == 2 else jnp.sum(a * v[:, None], axis=0)


class Memory(NamedTuple):
  """The limited memory.

  Attributes:
    S: ``(m, n)`` circular buffer of ``s = x_{k+1} - x_k``.
    Y: ``(m, n)`` circular buffer of ``y = g_{k+1} - g_k``.
    SY: ``(m, m)`` ``S'Y`` in chronological order (lower triangle used).
    SS: ``(m, m)`` ``S'S`` in chronological order (symmetric).
    WT: ``(m, m)`` upper Cholesky factor ``J'`` of ``T = theta S'S + L D^-1 L'``
      (``formt``), identity past ``col`` (not read while ``col = 0``).
    theta: the scaling ``y'y / s'y`` of the newest pair (1 after a refresh).
    iupdat: number of updates since the last refresh, counted from ``m`` again
      at ``2m`` (int32); ``col`` and ``head`` follow from it.
  """

  S: jax.Array
  Y: jax.Array
  SY: jax.Array
  SS: jax.Array
  WT: jax.Array
  theta: jax.Array
  iupdat: jax.Array

  @property
  def col(self) -> jax.Array:
    """Number of stored pairs, ``min(iupdat, m)`` (int32)."""
    return jnp.minimum(self.iupdat, self.S.shape[-2])

  @property
  def head(self) -> jax.Array:
    """Buffer slot of the oldest pair, ``max(iupdat - m, 0)`` (int32): ``iupdat < 2m``, so no
    remainder, which XLA would compute in a kernel of its own wherever the head is read."""
    m = self.S.shape[-2]
    return jnp.maximum(self.iupdat - m, 0)


def init_memory(n: int, m: int, dtype) -> Memory:
  """An empty memory (``col = 0``, ``theta = 1``)."""
  return Memory(
      S=jnp.zeros((m, n), dtype),
      Y=jnp.zeros((m, n), dtype),
      SY=jnp.zeros((m, m), dtype),
      SS=jnp.zeros((m, m), dtype),
      WT=jnp.eye(m, dtype=dtype),
      theta=jnp.ones((), dtype),
      iupdat=jnp.zeros((), jnp.int32),
  )


def refresh(memory: Memory, when: jax.Array | bool = True) -> Memory:
  """Forgets all pairs (``col = 0``) where ``when``, as the reference does after a failure.

  Only ``theta`` and ``iupdat`` change: ``S``, ``Y``, ``SY``, ``SS`` and ``WT``
  are left as they are (with ``col = 0`` they are never read; the next
  ``formt`` factors ``T`` anew).
  """
  pick = lambda new, old: jnp.where(when, new, old).astype(old.dtype)  # noqa: E731
  return memory._replace(theta=pick(1.0, memory.theta), iupdat=pick(0, memory.iupdat))


def chronological_slots(memory: Memory) -> tuple[jax.Array, jax.Array]:
  """Buffer slot of each chronological position, and the mask ``position < col``."""
  m = memory.S.shape[0]
  pos = jnp.arange(m, dtype=jnp.int32)
  return (memory.head + pos) % m, pos < memory.col


def _rotated(a: jax.Array, head: jax.Array) -> jax.Array:
  """Per-slot ``a`` (``m``) in chronological order (the oldest, slot ``head``, first):
  a rotation by a slice, not a gather, so that it fuses with its users."""
  return lax.dynamic_slice_in_dim(jnp.tile(a, 2), head, a.shape[0], allow_negative_indices=False)


def chronological_w(memory: Memory, y: jax.Array, s: jax.Array, col: jax.Array) -> jax.Array:
  """``[y; theta s]`` from per-slot ``y, s`` (``m``), chronological and zero past ``col``
  (``memory.col``, or a loop's carried copy: the head from it is not hoisted out of the loop)."""
  valid = jnp.arange(memory.S.shape[0]) < col
  head = memory.iupdat - col
  return jnp.concatenate([jnp.where(valid, _rotated(y, head), 0.0),
                          jnp.where(valid, memory.theta * _rotated(s, head), 0.0)])


def w_transpose_times(memory: Memory, v: jax.Array) -> jax.Array:
  """``W'v = [Y'v; theta S'v]`` (``2m``, chronological, zero past ``col``)."""
  return chronological_w(memory, matvec(memory.Y, v), matvec(memory.S, v), memory.col)


def w_times(memory: Memory, a: jax.Array, b: jax.Array) -> jax.Array:
  """``Y a + S b`` for chronological coefficient vectors ``a, b`` of length ``m``."""
  _, valid = chronological_slots(memory)
  m = memory.S.shape[0]
  # Slot j holds chronological position (j - head) mod m: a gather (a
  # scatter by slot would become a loop of m steps on CPU), its index without
  # a remainder, which XLA would compute in a kernel of its own.
  j = jnp.arange(m, dtype=jnp.int32)
  position = jnp.where(j < memory.head, j - memory.head + m, j - memory.head)
  a_buf = jnp.where(valid, a, 0.0)[position]
  b_buf = jnp.where(valid, b, 0.0)[position]
  return tmatvec(memory.Y, a_buf) + tmatvec(memory.S, b_buf)


def w_rows(memory: Memory, idx: jax.Array) -> jax.Array:
  """Rows ``idx`` of ``W = [Y, theta S]``, ``(k, 2m)`` (chronological columns, zero past ``col``).

  A gather: on a memory split over devices each device gathers its own entries.
  """
  slots, valid = chronological_slots(memory)
  cols = lambda a: jnp.take(a, idx, axis=1, mode="clip")[slots]  # noqa: E731
  return jnp.concatenate([jnp.where(valid[:, None], cols(memory.Y), 0.0),
                          jnp.where(valid[:, None], memory.theta * cols(memory.S), 0.0)]).T


def w_row(memory: Memory, i: jax.Array, col: jax.Array | None = None) -> jax.Array:
  """Row ``i`` of ``W = [Y, theta S]`` (``2m``, chronological, zero past ``col``, by default
  ``memory.col``; a loop may pass its own carried copy): a rotation, not a gather."""
  column = lambda a: lax.dynamic_slice_in_dim(a, i, 1, axis=1, allow_negative_indices=False)[:, 0]  # noqa: E731
  return chronological_w(memory, column(memory.Y), column(memory.S), memory.col if col is None else col)


def update_correction_pairs(
    memory: Memory, s: jax.Array, y: jax.Array, sy: jax.Array, ss: jax.Array, apply: jax.Array | bool = True
) -> Memory:
  """Stores the pair ``(s, y)`` where ``apply`` (``matupd``); ``sy = s'y``, ``ss = s's`` as the caller computed them.

  The caller has already applied the curvature skip ``s'y <= eps * (-g'd stp)``.
  ``theta = y'y / s'y``. When the buffer is full the oldest pair is dropped
  and ``SY``, ``SS`` shift up-left by one. With ``apply`` False the memory
  comes back unchanged: the row written in place (no copy of ``S`` or ``Y``
  either way) is out of bounds, and the write is dropped.
  """
  m = memory.S.shape[0]
  # The buffer is full: the oldest pair is dropped.
  wrapped = memory.iupdat >= m
  new = memory._replace(iupdat=jnp.where(memory.iupdat + 1 == 2 * m, m, memory.iupdat + 1))
  head, col = new.head, new.col
  itail = jnp.where(apply, (head + col - 1) % m, m)
  S = memory.S.at[itail].set(s, mode="drop")
  Y = memory.Y.at[itail].set(y, mode="drop")
  theta = jnp.vdot(y, y, precision=_HI) / sy

  # New row of S'Y (s_new' y_j) and new row and column of S'S (s_j' s_new),
  # j < col - 1, over SY and SS shifted up-left where the buffer wrapped: one
  # write of each.
  pos = jnp.arange(m, dtype=jnp.int32)
  newest = col - 1
  s_y = jnp.where(pos < newest, _rotated(matvec(Y, s), head), 0.0)
  s_s = jnp.where(pos < newest, _rotated(matvec(S, s), head), 0.0)
  row, column = (pos == newest)[:, None], (pos == newest)[None, :]
  # (The row and column that come in last are written below; SY's column
  # above the diagonal is never read.)
  shift = lambda a: jnp.where(wrapped, jnp.pad(a[1:, 1:], ((0, 1), (0, 1))), a)  # noqa: E731
  SY = jnp.where(row, jnp.where(column, sy, s_y[None, :]), shift(memory.SY))
  SS = jnp.where(row & column, ss, jnp.where(row, s_s[None, :], jnp.where(column, s_s[:, None], shift(memory.SS))))
  pick = lambda new, old: jnp.where(apply, new, old).astype(old.dtype)  # noqa: E731
  return memory._replace(
      S=S, Y=Y, SY=pick(SY, memory.SY), SS=pick(SS, memory.SS), theta=pick(theta, memory.theta),
      iupdat=pick(new.iupdat, memory.iupdat),
  )


def _below(valid: jax.Array) -> jax.Array:
  """``(m, m)``: column ``j`` below row ``i``, a valid row. One compare against a bound that
  depends on ``col``: a triangle alone would be a loop invariant, which XLA hoists out of
  the loop into a kernel of its own."""
  pos = jnp.arange(valid.size)
  return pos[None, :] < jnp.where(valid, pos, 0)[:, None]


def _padded_d_l(memory: Memory) -> tuple[jax.Array, jax.Array]:
  """``D`` (ones past ``col``) and strictly lower ``L`` (zero past ``col``) of ``S'Y``."""
  m = memory.SY.shape[0]
  valid = jnp.arange(m) < memory.col
  d = jnp.where(valid, memory.SY.ravel()[::m + 1], 1.0)  # the diagonal, a strided slice
  low = jnp.where(_below(valid), memory.SY, 0.0)
  return d, low


def formt(memory: Memory) -> tuple[Memory, jax.Array]:
  """Factors ``T = theta S'S + L D^-1 L' = J J'`` into ``memory.WT = J'`` (``formt``).

  Returns the memory and ``info``: True when the Cholesky factorization failed
  (T not numerically positive definite); the caller then refreshes.
  """
  m = memory.SY.shape[0]
  valid = jnp.arange(m) < memory.col
  both = valid[:, None] & valid[None, :]
  d, low = _padded_d_l(memory)
  t = memory.theta * memory.SS + jnp.matmul(low / d[None, :], low.T, precision=_HI)
  eye = jnp.eye(m, dtype=t.dtype)
  t = jnp.where(both, t, eye)
  # jnp.linalg.cholesky(t) without its triangle mask, a loop invariant that XLA would hoist into a
  # kernel of its own: the factor is the identity past col, and zero above the diagonal (_below).
  chol = lax.linalg.cholesky_p.bind((t + t.T) / 2)
  chol = jnp.where(_below(valid).T, 0.0, jnp.where(both, chol, eye))
  failed = ~jnp.all(jnp.isfinite(chol))
  return memory._replace(WT=jnp.where(failed, eye, chol.T)), failed


def update_memory(
    memory: Memory, s: jax.Array, y: jax.Array, sy: jax.Array, ss: jax.Array, apply: jax.Array | bool
) -> Memory:
  """Stores ``(s, y)`` and factors ``T`` anew where ``apply`` (``matupd``, then ``formt``).

  A failed factorization empties the memory (the reference's restart with
  ``B = I``); with ``apply`` False the memory comes back unchanged.
  """
  new = update_correction_pairs(memory, s, y, sy, ss, apply=apply)
  # T over the col with the pair, not its pick (WT is discarded where not apply): iupdat is picked once, in the refresh.
  stored, failed = formt(new._replace(iupdat=memory.iupdat + 1))
  return refresh(new._replace(WT=jnp.where(apply, stored.WT, memory.WT)), apply & failed)


class BmvFactors(NamedTuple):
  """What :func:`bmv` computes from the memory alone: ``D`` and its square root, ``L``, ``J'``."""

  d: jax.Array
  sqrt_d: jax.Array
  low: jax.Array
  wt: jax.Array


def bmv_factors(memory: Memory) -> BmvFactors:
  """The factors of :func:`bmv`, formed once where it is applied to several vectors."""
  d, low = _padded_d_l(memory)
  return BmvFactors(d=d, sqrt_d=jnp.sqrt(d), low=low, wt=memory.WT)


def bmv(memory: Memory, v: jax.Array, factors: BmvFactors | None = None) -> jax.Array:
  """``M v`` for a chronological ``2m`` vector ``v`` (``bmv``), by two triangular solves with ``J'``.

  ``factors``: :func:`bmv_factors` of ``memory``, when already formed.
  Non-finite entries in the result signal a singular system (``info != 0``).
  """
  m = memory.SY.shape[0]
  d, sqrt_d, low, wt = bmv_factors(memory) if factors is None else factors
  v1, v2 = v[:m], v[m:]
  # [ D^(1/2)      O ] [ p1 ]   [ v1 ]
  # [ -L D^(-1/2)  J ] [ p2 ] = [ v2 ]
  p2 = v2 + matvec(low, v1 / d)
  p2 = lax.linalg.triangular_solve(wt, p2[:, None], left_side=True, lower=False, transpose_a=True)[:, 0]
  p1 = v1 / sqrt_d
  # [ -D^(1/2)  D^(-1/2) L' ] [ p1 ]   [ p1 ]
  # [  0        J'          ] [ p2 ] = [ p2 ]
  p2 = lax.linalg.triangular_solve(wt, p2[:, None], left_side=True, lower=False)[:, 0]
  p1 = -p1 / sqrt_d + tmatvec(low, p2) / d
  return jnp.concatenate([p1, p2])


class InverseHessian(NamedTuple):
  """The L-BFGS inverse Hessian approximation ``H`` of a memory, as a lazy operator.

  ``H`` is the two-loop recursion over the stored pairs in chronological order
  (oldest first) with ``H0 = I / theta``: the inverse of ``B = theta I - W M W'``.

  It has the interface of SciPy's ``LbfgsInvHessProduct`` (a
  ``LinearOperator``): ``H(v)``, ``H @ v``, ``H.dot(v)``, ``matvec`` and
  ``rmatvec`` of an ``(n,)`` or ``(n, 1)`` array, ``matmat`` of ``(n, k)``,
  ``todense()``, ``shape``, ``dtype``, ``T``. SciPy's operator differs in what
  it computes: it uses ``H0 = I`` and takes the pairs in buffer order, which
  is wrong once the buffer has wrapped (more than ``maxcor`` updates:
  ``_minimize_lbfgsb`` in SciPy's ``scipy/optimize/_lbfgsb_py.py`` passes
  ``wa``'s first ``n_corrs`` rows of ``S`` and ``Y``, which ``matupd`` in
  ``scipy/optimize/src/lbfgsb.c`` fills circularly). This operator is the
  L-BFGS-B matrix, exact (``B = theta I - W M W'`` of Byrd, Lu, Nocedal, Zhu 1995).

  With ``scale`` (``x_scale``: the memory holds pairs in ``y = x / s``) it is
  ``S H_y S`` with ``S = diag(s)``, the inverse Hessian in the caller's variables.

  Attributes:
    memory: the limited memory.
    scale: ``(n,)`` variable scales, or None.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jax_lbfgsb import minimize
    >>> res = minimize(lambda x: jnp.sum(jnp.arange(1.0, 4.0) * x ** 2), jnp.ones(3))
    >>> h = res.hess_inv
    >>> h.shape, (h @ jnp.ones(3)).shape, h.matmat(jnp.ones((3, 2))).shape
    ((3, 3), (3,), (3, 2))
  """

  memory: Memory
  scale: Any = None

  @property
  def shape(self) -> tuple[int, int]:
    n = self.memory.S.shape[-1]
    return (n, n)

  @property
  def dtype(self) -> Any:
    return self.memory.S.dtype

  @property
  def T(self) -> "InverseHessian":  # noqa: N802 (SciPy's name); H is symmetric
    return self

  def __repr__(self) -> str:
    n = self.shape[0]
    return f"<{n}x{n} InverseHessian with dtype={self.dtype}>"

  def dot(self, v: Any) -> jax.Array:
    """``H v`` for ``v`` of shape ``(n,)``, ``(n, 1)`` or ``(n, k)``."""
    v = jnp.asarray(v, self.dtype)
    if v.ndim == 1 and v.shape[0] == self.shape[0]:
      return self._scaled_matvec(v)
    if v.ndim == 2 and v.shape[0] == self.shape[0]:
      return jax.vmap(self._scaled_matvec, in_axes=1, out_axes=1)(v)
    raise ValueError(f"InverseHessian: expected an array of shape ({self.shape[0]},) or ({self.shape[0]}, k);"
                     f" got {v.shape}.")

  __call__ = __matmul__ = matvec = rmatvec = matmat = dot

  def _scaled_matvec(self, v: jax.Array) -> jax.Array:
    return self._matvec(v) if self.scale is None else self.scale * self._matvec(self.scale * v)

  def _matvec(self, v: jax.Array) -> jax.Array:
    """``H v`` for an ``(n,)`` vector (the raveled variables)."""
    mem = self.memory
    m = mem.S.shape[0]
    slots, valid = chronological_slots(mem)
    rho = jnp.where(valid, 1.0 / jnp.where(valid, jnp.diagonal(mem.SY), 1.0), 0.0)

    def backward(j, carry):  # newest to oldest
      q, alpha = carry
      pos = m - 1 - j
      a = rho[pos] * jnp.vdot(mem.S[slots[pos]], q, precision=_HI)
      return q - a * mem.Y[slots[pos]], alpha.at[pos].set(a)

    q, alpha = lax.fori_loop(0, m, backward, (v, jnp.zeros((m,), v.dtype)))
    r = q / mem.theta

    def forward(pos, r):  # oldest to newest
      b = rho[pos] * jnp.vdot(mem.Y[slots[pos]], r, precision=_HI)
      return r + (alpha[pos] - b) * mem.S[slots[pos]]

    return lax.fori_loop(0, m, forward, r)

  def todense(self) -> jax.Array:
    """The ``(n, n)`` matrix ``H``."""
    return self.dot(jnp.eye(self.shape[0], dtype=self.dtype))
