"""Tests for jax_lbfgsb._compact: the compact L-BFGS matrix against dense oracles.

The oracle builds ``B = theta I - W M W'`` densely (``W = [Y, theta S]``,
``M = [[-D, L'], [L, theta S'S]]^-1``) from the last ``min(k, m)`` pairs in
chronological order, and checks it against the plain BFGS recursion started
from ``B0 = theta I`` (the compact representation theorem of Byrd, Nocedal and
Schnabel 1994), which pins down the chronological order of the pairs.
"""

import functools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jax_lbfgsb import _compact  # noqa: E402
from jax_lbfgsb._compact import chronological_slots, formt, init_memory, update_correction_pairs  # noqa: E402

# Jitted once per shape: far cheaper than op-by-op dispatch.
bmv = jax.jit(_compact.bmv)
w_row = jax.jit(_compact.w_row)
w_times = jax.jit(_compact.w_times)
w_transpose_times = jax.jit(_compact.w_transpose_times)


# ----------------------------------------------------------------------------
# Oracles.


def random_pairs(rng, n, k):
  """``k`` pairs with ``s'y > 0``: ``y = A s + small noise`` for a random SPD ``A``."""
  q = rng.standard_normal((n, n))
  a = q @ q.T + n * np.eye(n)
  pairs = []
  for _ in range(k):
    s = rng.standard_normal(n)
    y = a @ s + 1e-2 * rng.standard_normal(n)
    assert s @ y > 0
    pairs.append((s, y))
  return pairs


@jax.jit
def _update(mem, s, y, sy, ss):
  return formt(update_correction_pairs(mem, s, y, sy, ss))


def build_memory(pairs, n, m):
  mem = init_memory(n, m, jnp.float64)
  for s, y in pairs:
    mem, failed = _update(mem, jnp.asarray(s), jnp.asarray(y), jnp.asarray(s @ y), jnp.asarray(s @ s))
    assert not bool(failed)
  return mem


def dense_compact(pairs, m):
  """``(B, W, M, S, Y, theta)`` from the last ``min(k, m)`` pairs, oldest first (``S, Y`` are ``(n, col)``)."""
  kept = pairs[-m:]
  s_mat = np.stack([s for s, _ in kept], axis=1)
  y_mat = np.stack([y for _, y in kept], axis=1)
  s_new, y_new = kept[-1]
  theta = (y_new @ y_new) / (s_new @ y_new)
  sy = s_mat.T @ y_mat
  d = np.diag(np.diag(sy))
  low = np.tril(sy, -1)
  m_inv = np.block([[-d, low.T], [low, theta * s_mat.T @ s_mat]])
  m_mat = np.linalg.inv(m_inv)
  w = np.concatenate([y_mat, theta * s_mat], axis=1)
  n = s_mat.shape[0]
  b = theta * np.eye(n) - w @ m_mat @ w.T
  return b, w, m_mat, s_mat, y_mat, theta


def bfgs_recursion(pairs, m, theta):
  """Plain BFGS updates of ``B0 = theta I`` with the last ``min(k, m)`` pairs, oldest to newest."""
  n = pairs[0][0].size
  b = theta * np.eye(n)
  for s, y in pairs[-m:]:
    bs = b @ s
    b = b - np.outer(bs, bs) / (s @ bs) + np.outer(y, y) / (y @ s)
  return b


def embed(vec_col, col, m):
  """A chronological ``2 col`` vector laid out in ``2m``: ``[Y part (m); S part (m)]``, zero past ``col``."""
  out = np.zeros(2 * m)
  out[:col] = vec_col[:col]
  out[m:m + col] = vec_col[col:]
  return out


def restrict(vec_2m, col, m):
  return np.concatenate([vec_2m[:col], vec_2m[m:m + col]])


# Cases: (n, m, number of updates). 7 and 11 updates with m = 3 wrap the
# buffer (head moves, SY/SS shift); m = 5 with 2 updates is not full;
# m = 4 with exactly 4 updates is full without wrapping.
CASES = [(6, 3, 7), (8, 3, 11), (5, 5, 2), (7, 4, 4), (5, 1, 3)]


@functools.lru_cache(maxsize=None)
def _built(n, m, k):
  pairs = random_pairs(np.random.default_rng(1000 * n + 10 * m + k), n, k)
  return pairs, build_memory(pairs, n, m)


@pytest.fixture(params=CASES, ids=lambda c: f"n{c[0]}-m{c[1]}-k{c[2]}")
def case(request):
  n, m, k = request.param
  pairs, mem = _built(n, m, k)
  rng = np.random.default_rng(7 + 1000 * n + 10 * m + k)
  return n, m, k, pairs, mem, rng


# ----------------------------------------------------------------------------
# Tests.


def test_bookkeeping(case):
  n, m, k, pairs, mem, _ = case
  col = min(k, m)
  assert int(mem.col) == col
  assert int(mem.iupdat) == (k if k < 2 * m else m + (k - m) % m)  # counted from m again at 2m
  # head is the slot of the oldest kept pair.
  assert int(mem.head) == (max(k - m, 0)) % m
  slots, valid = chronological_slots(mem)
  slots, valid = np.asarray(slots), np.asarray(valid)
  np.testing.assert_array_equal(valid, np.arange(m) < col)
  kept = pairs[-m:]
  for pos in range(col):
    np.testing.assert_array_equal(np.asarray(mem.S)[slots[pos]], kept[pos][0])
    np.testing.assert_array_equal(np.asarray(mem.Y)[slots[pos]], kept[pos][1])
  s_new, y_new = pairs[-1]
  np.testing.assert_allclose(float(mem.theta), (y_new @ y_new) / (s_new @ y_new), rtol=1e-14)


def test_compact_representation_matches_bfgs_recursion(case):
  """The dense oracle itself: compact form == BFGS recursion from ``theta I`` (validates the order)."""
  _, m, _, pairs, _, _ = case
  b, _, _, _, _, theta = dense_compact(pairs, m)
  b_rec = bfgs_recursion(pairs, m, theta)
  np.testing.assert_allclose(b, b_rec, rtol=1e-10, atol=1e-10 * np.abs(b_rec).max())
  # Sanity: the order matters (reversed pairs give a different matrix) unless col == 1.
  if min(len(pairs), m) > 1:
    b_rev = bfgs_recursion(list(reversed(pairs[-m:])), m, theta)
    assert not np.allclose(b_rec, b_rev, rtol=1e-6)


def test_sy_ss_chronological(case):
  _, m, k, pairs, mem, _ = case
  col = min(k, m)
  _, _, _, s_mat, y_mat, _ = dense_compact(pairs, m)
  sy = np.asarray(mem.SY)[:col, :col]
  ss = np.asarray(mem.SS)[:col, :col]
  # Only the lower triangle (with the diagonal) of SY is maintained and used,
  # as in the reference's matupd.
  np.testing.assert_allclose(np.tril(sy), np.tril(s_mat.T @ y_mat), rtol=1e-13, atol=1e-13)
  np.testing.assert_allclose(ss, s_mat.T @ s_mat, rtol=1e-13, atol=1e-13)


def test_formt_factor(case):
  """``WT = J'`` with ``J J' = theta S'S + L D^-1 L'`` on the valid block."""
  _, m, k, pairs, mem, _ = case
  col = min(k, m)
  _, _, _, s_mat, y_mat, theta = dense_compact(pairs, m)
  sy = s_mat.T @ y_mat
  low = np.tril(sy, -1)
  t = theta * s_mat.T @ s_mat + low @ np.diag(1.0 / np.diag(sy)) @ low.T
  wt = np.asarray(mem.WT)
  np.testing.assert_allclose(wt[:col, :col].T @ wt[:col, :col], t, rtol=1e-12, atol=1e-12 * np.abs(t).max())
  assert np.allclose(np.tril(wt[:col, :col], -1), 0.0)


def test_bmv_is_middle_matrix(case):
  _, m, k, pairs, mem, rng = case
  col = min(k, m)
  _, _, m_mat, _, _, _ = dense_compact(pairs, m)
  for _ in range(4):
    v_col = rng.standard_normal(2 * col)
    got = np.asarray(bmv(mem, jnp.asarray(embed(v_col, col, m))))
    want = m_mat @ v_col
    np.testing.assert_allclose(restrict(got, col, m), want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    # Entries past col stay zero in both halves.
    np.testing.assert_array_equal(got[col:m], 0.0)
    np.testing.assert_array_equal(got[m + col:], 0.0)


def test_dense_b_from_kernels(case):
  """``theta v - W (M (W'v))`` assembled from the kernels equals the dense ``B v``."""
  n, m, k, pairs, mem, rng = case
  b, _, _, _, _, theta = dense_compact(pairs, m)
  for _ in range(3):
    v = rng.standard_normal(n)
    wv = w_transpose_times(mem, jnp.asarray(v))
    mwv = bmv(mem, wv)
    got = theta * v - np.asarray(w_times(mem, mwv[:m], mem.theta * mwv[m:]))
    np.testing.assert_allclose(got, b @ v, rtol=1e-10, atol=1e-11 * np.abs(b @ v).max())


def test_w_products(case):
  n, m, k, pairs, mem, rng = case
  col = min(k, m)
  _, w, _, s_mat, y_mat, _ = dense_compact(pairs, m)
  v = rng.standard_normal(n)
  got = np.asarray(w_transpose_times(mem, jnp.asarray(v)))
  np.testing.assert_allclose(restrict(got, col, m), w.T @ v, rtol=1e-13, atol=1e-13)
  np.testing.assert_array_equal(got[col:m], 0.0)
  np.testing.assert_array_equal(got[m + col:], 0.0)

  # w_times: Y a + S b with chronological coefficients; entries past col are ignored.
  a = rng.standard_normal(m)
  bcoef = rng.standard_normal(m)
  got = np.asarray(w_times(mem, jnp.asarray(a), jnp.asarray(bcoef)))
  want = y_mat @ a[:col] + s_mat @ bcoef[:col]
  np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)

  for i in range(n):
    row = np.asarray(w_row(mem, jnp.asarray(i, jnp.int32)))
    np.testing.assert_allclose(restrict(row, col, m), w[i], rtol=1e-14, atol=0)
    np.testing.assert_array_equal(row[col:m], 0.0)
    np.testing.assert_array_equal(row[m + col:], 0.0)


def test_empty_memory():
  mem = init_memory(4, 3, jnp.float64)
  v = jnp.arange(6.0)
  np.testing.assert_array_equal(np.asarray(w_transpose_times(mem, jnp.ones(4))), 0.0)
  np.testing.assert_array_equal(np.asarray(w_times(mem, v[:3], v[3:])), 0.0)
  np.testing.assert_array_equal(np.asarray(w_row(mem, jnp.asarray(2, jnp.int32))), 0.0)
  mem2, failed = formt(mem)
  assert not bool(failed)
  np.testing.assert_array_equal(np.asarray(mem2.WT), np.eye(3))
  assert float(mem.theta) == 1.0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("shape", [(3, 5), (2, _compact.FUSED_SUM_MAX + 1), (_compact.FUSED_SUM_MAX + 1, 2)],
                         ids=["fused", "dot-columns", "dot-rows"])
def test_matvec_and_tmatvec_are_the_products(shape, dtype):
  # A fused sum for small matrices, the dot past FUSED_SUM_MAX rows or columns:
  # either way a @ v and a' @ v, for a vector and a matrix v, under jit and
  # vmap, to the rounding of sums of that length.
  rng = np.random.default_rng(7)
  a = rng.standard_normal(shape)
  right, left = rng.standard_normal((shape[1], 3)), rng.standard_normal((shape[0], 3))
  cast = lambda v: jnp.asarray(v, dtype)  # noqa: E731
  eps = float(jnp.finfo(dtype).eps)
  for got, want, bound in [
      (jax.jit(_compact.matvec)(cast(a), cast(right[:, 0])), a @ right[:, 0], np.abs(a) @ np.abs(right[:, 0])),
      (jax.jit(_compact.matvec)(cast(a), cast(right)), a @ right, np.abs(a) @ np.abs(right)),
      (jax.jit(_compact.tmatvec)(cast(a), cast(left[:, 0])), a.T @ left[:, 0], np.abs(a).T @ np.abs(left[:, 0])),
      (jax.jit(_compact.tmatvec)(cast(a), cast(left)), a.T @ left, np.abs(a).T @ np.abs(left)),
      (jax.jit(jax.vmap(_compact.matvec, in_axes=(None, 1), out_axes=1))(cast(a), cast(right)), a @ right,
       np.abs(a) @ np.abs(right)),
  ]:
    assert got.dtype == dtype and got.shape == want.shape
    # |fl(sum) - sum| <= k eps sum |terms| (k terms), and the inputs' own rounding to dtype.
    np.testing.assert_array_less(np.abs(np.asarray(got, np.float64) - want), (max(shape) + 2) * eps * bound + 1e-300)
