"""Control flow for the solver: ``packed_while_loop``, ``cond_on_cpu``, and
``devices_spanned``, which picks the variants for an ``x`` split over devices.

``packed_while_loop`` is ``lax.while_loop`` with the carry's scalars in one
array per dtype. The solver's loops carry many scalars (counters, flags, the line search's
interval). XLA:CPU gives each loop-carried scalar its own buffer, fusion output
and, where values move between fields, a copy, each a separate kernel call
per iteration. Packed into one vector per dtype (or one in all), they are
written by one fusion and copied at most once.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["packed_while_loop", "stack", "cond_on_cpu", "devices_spanned"]

Carry = TypeVar("Carry")


def stack(values) -> jax.Array:
  """``jnp.stack(values)`` (broadcast), built from rows of at most 8.

  XLA:CPU fuses no concatenate of more than 8 operands: each operand would
  be computed by a kernel of its own.
  """
  values = list(jnp.broadcast_arrays(*values))
  if len(values) <= 8:
    return jnp.stack(values)
  count = len(values)
  values += [jnp.ones_like(values[0])] * (-count % 8)  # equal rows
  rows = jnp.stack([jnp.stack(values[i:i + 8]) for i in range(0, len(values), 8)])
  return rows.reshape((-1,) + rows.shape[2:])[:count]


def packed_while_loop(cond_fun: Callable[[Carry], Any], body_fun: Callable[[Carry], Any], init: Carry,
                      dtype: Any = None, select: bool = False) -> Carry:
  """``lax.while_loop(cond_fun, body_fun, init)`` with the 0-d leaves of ``init`` packed by dtype.

  ``cond_fun`` and ``body_fun`` see the carry with its usual structure (the
  scalars lose a weak type). With ``dtype``, all of them are packed into one
  vector of that dtype (integers must be exact in it; booleans are 0 or 1).
  With ``select``, ``body_fun`` returns ``(pred, on_true, on_false)`` and the
  next carry is ``on_true`` where ``pred``, else ``on_false``: one select per
  packed vector, not one per scalar (XLA:CPU computes a scalar that more
  than 15 slots of a fused vector read in a kernel of its own).

  Examples:
    >>> import jax.numpy as jnp
    >>> init = (jnp.int32(0), jnp.int32(5), jnp.ones(2, jnp.float32))
    >>> packed_while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1], c[2] * 2), init)
    (Array(3, dtype=int32), Array(5, dtype=int32), Array([8., 8.], dtype=float32))
  """
  leaves, treedef = jax.tree.flatten(init)
  leaves = [jnp.asarray(leaf) for leaf in leaves]
  groups: dict[Any, list[int]] = {}
  for i, leaf in enumerate(leaves):
    if leaf.ndim == 0:
      groups.setdefault(leaf.dtype if dtype is None else jnp.dtype(dtype), []).append(i)
  if select:
    def pick(pred, on_true, on_false):
      return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
  if sum(len(idx) for idx in groups.values()) < 2:
    return lax.while_loop(cond_fun, (lambda c: pick(*body_fun(c))) if select else body_fun, init)
  scalar = {i for idx in groups.values() for i in idx}

  def pack(tree):
    flat = jax.tree.leaves(tree)
    arrays = tuple(flat[i] for i in range(len(flat)) if i not in scalar)
    vectors = tuple(stack([jnp.asarray(flat[i]).astype(dtype) for i in idx]) for dtype, idx in groups.items())
    return arrays, vectors

  def unpack(carry):
    arrays, vectors = carry
    flat: list[Any] = [None] * len(leaves)
    rest = iter(arrays)
    for i in range(len(leaves)):
      if i not in scalar:
        flat[i] = next(rest)
    for vector, idx in zip(vectors, groups.values()):
      for j, i in enumerate(idx):
        flat[i] = vector[j] != 0 if leaves[i].dtype == bool else vector[j].astype(leaves[i].dtype)
    return jax.tree.unflatten(treedef, flat)

  def body(carry):
    if not select:
      return pack(body_fun(unpack(carry)))
    pred, on_true, on_false = body_fun(unpack(carry))
    return pick(pred, pack(on_true), pack(on_false))

  return unpack(lax.while_loop(lambda c: cond_fun(unpack(c)), body, pack(init)))


def cond_on_cpu(pred: Any, true_fun: Callable[[], Carry], false_fun: Callable[[], Carry]) -> Carry:
  """``lax.cond(pred, true_fun, false_fun)`` on CPU; elsewhere both branches and a select.

  A conditional on a GPU reads its predicate on the host, a round trip per
  call; there, branches cheap enough to run both are selected between (as
  ``vmap`` does with a batched ``cond`` anyway). ``lax.platform_dependent``
  compiles only the platform's variant.
  """

  def select() -> Carry:
    return jax.tree.map(lambda a, b: lax.select_n(pred, b, a), true_fun(), false_fun())

  return lax.platform_dependent(cpu=lambda: lax.cond(pred, true_fun, false_fun), default=select)


def devices_spanned(x: Any) -> int:
  """The number of devices of the mesh ``x`` is placed on (1 when it has none).

  Read from the abstract value, so it works on tracers inside ``jit`` and
  ``vmap``: an array placed with a ``NamedSharding`` over several devices, and
  every value computed from it, carries that mesh. The solver picks its
  collective-free variants from it (the Cauchy point's merge, the free-set
  sums recomputed).
  """
  mesh = jax.typeof(x).sharding.mesh
  return 1 if mesh.empty else int(mesh.size)
