"""A shared dense oracle: a memory from random curvature pairs and its explicit L-BFGS matrix.

Used by the kernel tests (``test_cauchy.py``, ``test_subspace.py``).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_lbfgsb._compact import Memory, formt, init_memory, update_correction_pairs


class DenseMemory(NamedTuple):
  """A memory and, dense, what it represents (pairs kept, oldest first)."""

  mem: Memory
  b: np.ndarray  # (n, n) B = theta I - W M W'
  w: np.ndarray  # (n, 2 col) W = [Y, theta S]
  m_inv: np.ndarray  # (2 col, 2 col) [[-D, L'], [L, theta S'S]]
  theta: float
  col: int


@jax.jit
def update(mem, s, y, sy, ss):
  return formt(update_correction_pairs(mem, s, y, sy, ss))


@functools.lru_cache(maxsize=None)
def memory_and_dense(n: int, m: int, npairs: int, seed: int) -> DenseMemory:
  """The memory after ``npairs`` updates with ``y = A s + noise`` (``A`` SPD), and its dense form."""
  if n > 2000:  # tests stay small: an n x n oracle above this costs memory and BLAS time (and has crashed BLAS)
    raise ValueError(f"memory_and_dense builds n x n matrices; n = {n} is above 2000: test at a smaller n")
  rng = np.random.default_rng(seed)
  q = rng.standard_normal((n, n))
  a = q @ q.T / n + np.eye(n)
  mem = init_memory(n, m, jnp.float64)
  pairs = []
  for _ in range(npairs):
    s = rng.standard_normal(n)
    y = a @ s + 1e-2 * rng.standard_normal(n)
    pairs.append((s, y))
    mem, failed = update(mem, jnp.asarray(s), jnp.asarray(y), jnp.asarray(s @ y), jnp.asarray(s @ s))
    assert not bool(failed)
  if npairs == 0:
    return DenseMemory(mem, np.eye(n), np.zeros((n, 0)), np.zeros((0, 0)), 1.0, 0)
  kept = pairs[-m:]
  s_mat = np.stack([s for s, _ in kept], axis=1)
  y_mat = np.stack([y for _, y in kept], axis=1)
  theta = (kept[-1][1] @ kept[-1][1]) / (kept[-1][0] @ kept[-1][1])
  sy = s_mat.T @ y_mat
  m_inv = np.block([[-np.diag(np.diag(sy)), np.tril(sy, -1).T], [np.tril(sy, -1), theta * s_mat.T @ s_mat]])
  w = np.concatenate([y_mat, theta * s_mat], axis=1)
  b = theta * np.eye(n) - w @ np.linalg.solve(m_inv, w.T)
  return DenseMemory(mem, b, w, m_inv, theta, len(kept))


def random_box_problem(rng, n, width=(0.05, 1.0)):
  """Random ``x, g, l, u, fixed`` mixing unbounded, one-sided, boxed and fixed variables, some x on a bound."""
  kinds = rng.choice(["free", "lower", "upper", "box", "box", "fixed"], size=n)
  x = rng.uniform(-1, 1, n)
  g = rng.standard_normal(n)
  l = np.full(n, -np.inf)
  u = np.full(n, np.inf)
  for i, kind in enumerate(kinds):
    if kind in ("lower", "box"):
      l[i] = x[i] - rng.uniform(*width)
    if kind in ("upper", "box"):
      u[i] = x[i] + rng.uniform(*width)
    if kind == "fixed":
      l[i] = u[i] = x[i]
  # Some bounded variables exactly on a bound (the gradient's sign is random: in or out).
  for i in range(n):
    if kinds[i] in ("lower", "upper", "box") and rng.uniform() < 0.35:
      x[i] = l[i] if (kinds[i] == "lower" or (kinds[i] == "box" and rng.uniform() < 0.5)) else u[i]
  return x, g, l, u, l == u
