"""packed_while_loop is lax.while_loop with the scalars packed: same results, same structure."""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jax_lbfgsb._loops import packed_while_loop, stack


class _Carry(NamedTuple):
  k: jax.Array  # int32 counter
  done: jax.Array  # bool
  a: jax.Array  # float scalars that swap and mix
  b: jax.Array
  v: jax.Array  # (n,) vector
  tag: jax.Array  # int32 scalar left alone


def _problem(dtype):
  def cond(c):
    return ~c.done

  def body(c):
    a, b = c.b, c.a + 0.5 * c.b  # a swap, as dcsrch's interval update does
    v = c.v * a + b
    k = c.k + 1
    return _Carry(k=k, done=(k >= 7) | (jnp.sum(v) > 1e6), a=a, b=b, v=v, tag=c.tag)

  def init(x):
    return _Carry(
        k=jnp.int32(0), done=jnp.zeros((), bool), a=jnp.asarray(x[0], dtype), b=jnp.asarray(x[1], dtype),
        v=jnp.asarray(x, dtype), tag=jnp.int32(42),
    )

  return cond, body, init


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_packed_while_loop_matches_lax_while_loop_under_jit_and_vmap(dtype):
  cond, body, init = _problem(dtype)
  xs = np.linspace(0.1, 0.9, 12).reshape(4, 3)
  plain = jax.jit(jax.vmap(lambda x: lax.while_loop(cond, body, init(x))))(xs)
  packed = jax.jit(jax.vmap(lambda x: packed_while_loop(cond, body, init(x))))(xs)
  chex.assert_trees_all_equal_shapes_and_dtypes(packed, plain)  # and structures
  chex.assert_trees_all_equal(packed, plain)
  assert int(packed.k[0]) == 7 and packed.v.dtype == dtype
  # Unbatched, unjitted, with the same values.
  single = packed_while_loop(cond, body, init(xs[1]))
  np.testing.assert_array_equal(single.v, plain.v[1])


def test_packed_while_loop_packs_scalars_into_one_array_per_dtype():
  cond, body, init = _problem(jnp.float64)
  jaxpr = jax.make_jaxpr(lambda x: packed_while_loop(cond, body, init(x)))(np.ones(3))
  (loop,) = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "while"]
  carried = [v.aval for v in loop.outvars]
  # v, then one vector per dtype: the int32 pair (k, tag), the bool, the float pair (a, b).
  assert sorted((a.shape, str(a.dtype)) for a in carried) == sorted(
      [((3,), "float64"), ((2,), "int32"), ((1,), "bool"), ((2,), "float64")]
  )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_packed_while_loop_in_one_dtype_and_with_select_matches_lax_while_loop(dtype):
  """``dtype=``: every scalar (int32 and bool too) in one vector of x's dtype;
  ``select=``: the body returns ``(pred, on_true, on_false)``. Same values as
  the plain loop, under jit and vmap, structure and dtypes kept."""
  cond, body, init = _problem(dtype)

  def body_select(c):  # the plain body's carry, or (at odd k) a sentinel that it overrides
    new = body(c)
    return (c.k % 2 == 1) | (c.k % 2 == 0), new, new._replace(a=jnp.asarray(-1.0, dtype))

  xs = np.linspace(0.1, 0.9, 12).reshape(4, 3)
  plain = jax.jit(jax.vmap(lambda x: lax.while_loop(cond, body, init(x))))(xs)
  for kwargs, fun in (({"dtype": dtype}, body), ({"dtype": dtype, "select": True}, body_select),
                      ({"select": True}, body_select)):
    packed = jax.jit(jax.vmap(lambda x: packed_while_loop(cond, fun, init(x), **kwargs)))(xs)
    chex.assert_trees_all_equal_shapes_and_dtypes(packed, plain)
    chex.assert_trees_all_equal(packed, plain)
  jaxpr = jax.make_jaxpr(lambda x: packed_while_loop(cond, body, init(x), dtype=dtype))(np.ones(3, dtype))
  (loop,) = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "while"]
  assert sorted(v.aval.shape for v in loop.outvars) == [(3,), (5,)]  # v, and k, done, a, b, tag in one


@pytest.mark.parametrize("count", [1, 8, 9, 17])
def test_stack_of_more_than_eight_values_is_jnp_stack(count):
  values = [jnp.float32(i) * jnp.arange(2.0, dtype=jnp.float32) for i in range(count)]
  chex.assert_trees_all_equal(stack(values), jnp.stack(values))
