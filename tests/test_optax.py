"""The optax transformation: iterates equal minimize's, updates land inside the box, the MLP user story."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from jax.flatten_util import ravel_pytree

from jax_lbfgsb import Termination, minimize
from jax_lbfgsb.optax import _landing_update, lbfgsb

DTYPES = [jnp.float32, jnp.float64]


def _run(opt, f, params, k, *, from_state=False, **extra_args):
  """The plain training loop; returns the params and state after each of ``k`` updates."""
  state = opt.init(params)
  value_and_grad = jax.jit(optax.value_and_grad_from_state(f)) if from_state else jax.value_and_grad(f)
  trajectory = []
  for _ in range(k):
    if from_state:
      value, grad = value_and_grad(params, state=state, **extra_args)
    else:
      value, grad = value_and_grad(params, **extra_args)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f, **extra_args)
    params = optax.apply_updates(params, updates)
    trajectory.append((params, state))
  return trajectory


def _scan(opt, f, params, k, record):
  """``k`` updates in a ``lax.scan``, as training code runs them; ``record(params, updates, state)`` after each."""
  def body(carry, _):
    params, state = carry
    value, grad = jax.value_and_grad(f)(params)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
    params = optax.apply_updates(params, updates)
    return (params, state), record(params, updates, state)

  return lax.scan(body, (params, opt.init(params)), length=k)[1]


# ---------------------------------------------------------------- parity with minimize


def _rosen_tree(p):
  x = jnp.concatenate([p["w"].ravel(), p["b"]])
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@pytest.mark.rounding
@pytest.mark.parametrize("from_state", [False, True], ids=["value_and_grad", "value_and_grad_from_state"])
def test_k_updates_equal_minimize_maxiter_k(from_state):
  x = jnp.asarray(np.resize([-1.2, 1.0], 10), jnp.float64)
  params = {"w": x[:4].reshape(2, 2), "b": x[4:]}
  lower, upper = -1.5, {"w": 0.8, "b": jnp.full(6, 0.8, jnp.float64)}  # a scalar and a pytree
  opt = lbfgsb(lower, upper, memory_size=5)
  trajectory = _run(opt, _rosen_tree, params, 40, from_state=from_state)

  for k in range(1, 11):
    res = minimize(_rosen_tree, params, bounds=(lower, upper), maxcor=5, maxiter=k)
    got, state = trajectory[k - 1]
    # The solver's iterate is minimize's, bit for bit; params can differ by
    # the rounding of params + (x_new - params).
    np.testing.assert_array_equal(state.solver.x, ravel_pytree(res.x)[0])
    np.testing.assert_allclose(ravel_pytree(got)[0], ravel_pytree(res.x)[0], rtol=0, atol=1e-15)
    assert int(state.solver.nit) == int(res.nit) == k
    assert int(state.solver.nfev) == int(res.nfev)

  # Run to convergence: the same solution and reason as one solve, then zero updates.
  res = minimize(_rosen_tree, params, bounds=(lower, upper), maxcor=5)
  final, state = trajectory[-1]
  assert int(res.nit) < 35 and int(state.solver.termination) == int(res.termination)
  assert int(state.solver.termination) in (Termination.CONVERGED_PGTOL, Termination.CONVERGED_FTOL)
  np.testing.assert_allclose(ravel_pytree(final)[0], ravel_pytree(res.x)[0], rtol=0, atol=1e-12)
  for before, after in zip(trajectory[int(res.nit):], trajectory[int(res.nit) + 1:]):
    chex.assert_trees_all_equal(before[0], after[0])
  assert float(state.value) == float(res.fun)
  assert jax.tree.structure(state.grad) == jax.tree.structure(params)


def test_update_does_not_retrace():
  traces = []

  def f(x):
    traces.append(None)  # runs once per trace
    return jnp.sum(jnp.arange(1.0, 5.0, dtype=x.dtype) * (x - 2.0) ** 2)

  opt = lbfgsb(0.0, 1.5)
  params = jnp.zeros(4, jnp.float64)
  state = opt.init(params)
  value, grad = jnp.asarray(16.0, jnp.float64), jnp.asarray([-4.0, -8.0, -12.0, -16.0], jnp.float64)
  counts = []
  for _ in range(4):
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
    params = optax.apply_updates(params, updates)
    value, grad = state.value, state.grad
    counts.append(len(traces))
  assert counts[0] > 0 and counts == counts[:1] * 4


# ---------------------------------------------------------------- landing inside the box

# Bounds of all magnitudes, a fixed variable and a free one, so that x_new - x
# often rounds (steps across zero, onto bounds far from x, next to tiny bounds).
_LOWER = np.array([1e-30, -1e-20, -3.7, 0.1, 1e3, -2e5, 0.0, -1.0, 1 / 3, -np.inf, 5e-8, 0.7])
_UPPER = np.array([1.0, 1e-20, 2.9e-3, 0.1 + 1e-9, 1e3 + 0.5, 7.0, 1e-3, 1.0, 1 / 3, np.inf, 6e-8, 1e4])


def _quadratic(x, c):
  """Coupled quadratic whose unconstrained minimizer ``c`` lies far outside the box."""
  w = jnp.arange(1, x.size + 1, dtype=x.dtype)
  return jnp.sum(w * (x - c) ** 2) + 0.1 * jnp.sum(x[1:] * x[:-1])


def _starts(dtype, batch=8):
  rng = np.random.default_rng(0)
  c = rng.normal(size=(batch, _LOWER.size)) * 10.0 ** rng.uniform(-3, 6, size=(batch, _LOWER.size))
  inside = np.clip(c * rng.uniform(-1, 1, size=c.shape), _LOWER, _UPPER)
  x0 = np.where(np.arange(batch)[:, None] % 2 == 0, inside, c)  # odd lanes start outside the box
  return jnp.asarray(x0, dtype), jnp.asarray(c, dtype)


@pytest.mark.rounding
@pytest.mark.parametrize("dtype", DTYPES)
def test_landing_update_stays_in_bounds(dtype):
  # p, x inside boxes of random magnitudes and signs, x often on a bound.
  rng = np.random.default_rng(1)
  ends = rng.choice([-1.0, 1.0], size=(2, 20000)) * 10.0 ** rng.uniform(-30, 6, size=(2, 20000))
  l, u = np.min(ends, axis=0).astype(dtype), np.max(ends, axis=0).astype(dtype)
  p, x = np.clip(l + rng.uniform(size=(2, l.size)) * (u - l), l, u).astype(dtype)
  x = np.select([np.arange(x.size) % 3 == 0, np.arange(x.size) % 3 == 1], [l, u], x).astype(dtype)
  naive = p + (x - p)
  assert np.any((naive < l) | (naive > u))  # the case to handle
  d = np.asarray(jax.jit(_landing_update)(p, x, l, u))
  y = p + d  # what optax.apply_updates computes
  assert np.all((y >= l) & (y <= u))
  np.testing.assert_array_equal(y == x, naive == x)  # exact wherever x - p was
  assert np.all((d != 0) | (x == p))  # never stuck at p (the last resort) in this sample


@pytest.mark.rounding
@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_updates_stays_in_bounds_under_jit_and_vmap(dtype):
  opt = lbfgsb(jnp.asarray(_LOWER, dtype), jnp.asarray(_UPPER, dtype), memory_size=4)
  lower, upper = np.asarray(_LOWER, dtype), np.asarray(_UPPER, dtype)
  x0, c = _starts(dtype)

  @jax.jit
  @jax.vmap
  def trajectories(x0, c):
    def body(carry, _):
      params, state = carry
      value, grad = jax.value_and_grad(_quadratic)(params, c)
      updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=_quadratic, c=c)
      params = optax.apply_updates(params, updates)
      return (params, state), (params, state.landed, state.solver.termination)

    return lax.scan(body, (x0, opt.init(x0)), length=12)[1]

  xs, landed, termination = jax.tree.map(np.asarray, trajectories(x0, c))
  assert xs.dtype == dtype
  inside = (xs >= lower) & (xs <= upper)
  assert np.all(inside[0::2]) and np.all(inside[:, 1:]), "an update left the box"
  # From params far outside, the first update lands within rounding of params
  # (the box may hold no p + d at all, e.g. a fixed 1/3 from -4796); the next one inside.
  miss = np.maximum(lower - xs[:, 0], 0) + np.maximum(xs[:, 0] - upper, 0)
  assert np.all(miss <= 2 * np.finfo(dtype).eps * np.abs(np.asarray(x0)))
  assert np.all(xs[:, 1:, 8] == dtype(1 / 3))  # the fixed variable
  np.testing.assert_array_equal(xs, landed)  # apply_updates lands where update says: the solve continues
  assert np.all(termination[:, -1] != Termination.RUNNING)  # every lane converged ...
  assert np.all(termination[:, -1] <= Termination.CONVERGED_FTOL)  # ... normally

  if dtype == jnp.float64:  # one lane of the batch, as a plain loop with a jitted update
    lane = 1  # starts outside the box
    trajectory = _run(opt, _quadratic, x0[lane], 12, c=c[lane])
    np.testing.assert_allclose(np.stack([p for p, _ in trajectory]), xs[lane], rtol=1e-12, atol=0)
    state = trajectory[0][1]
    init_state = opt.init(x0[lane])
    assert jax.tree.structure(init_state) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(init_state), jax.tree.leaves(state)):
      assert (a.dtype, a.shape, a.weak_type) == (b.dtype, b.shape, b.weak_type)


# ---------------------------------------------------------------- the user story


def _mlp(dtype):
  """The hidden layers 784 -> 32 tanh -> 16 tanh of a small MLP with fixed random weights."""
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  w1 = jax.random.normal(k1, (784, 32), dtype) / 28.0
  b1 = 0.1 * jax.random.normal(k3, (32,), dtype)
  w2 = jax.random.normal(k2, (32, 16), dtype) / jnp.sqrt(jnp.asarray(32.0, dtype))

  def hidden(image):  # pixels in [0, 255], scaled to [0, 1]
    return jnp.tanh(jnp.tanh(image.reshape(784) / 255.0 @ w1 + b1) @ w2)

  return hidden


def test_maximize_a_hidden_unit_over_an_image():
  # In float32, as a user would; the doctest of lbfgsb runs a float64 variant.
  dtype = jnp.float32
  hidden = _mlp(dtype)
  unit = 5  # from -0.095 to about 0.99 in 6 iterations (converged)

  def f(image):
    return -hidden(image)[unit]

  inside = np.zeros((28, 28), bool)
  inside[2:-2, 2:-2] = True
  upper = jnp.asarray(np.where(inside, 255.0, 0.0), dtype)  # lower == upper == 0 on the frame
  opt = lbfgsb(lower=0.0, upper=upper)
  image0 = jnp.asarray(np.where(inside, np.random.default_rng(0).uniform(0, 255, (28, 28)), 0.0), dtype)
  k = 8

  # As in training code: the updates inside one jitted scan. (A plain Python
  # loop of updates takes the same steps: test_apply_updates_stays_in_bounds_under_jit_and_vmap.)
  images = np.asarray(jax.jit(lambda image: _scan(opt, f, image, k, lambda image, updates, state: image))(image0))
  assert images.dtype == dtype
  assert np.all((images >= 0) & (images <= 255))
  assert np.all(images[:, ~inside] == 0)
  activations = np.asarray(jax.vmap(lambda im: hidden(im)[unit])(jnp.asarray(images)))
  assert np.all(np.diff(activations) >= 0)  # L-BFGS-B never increases f
  assert activations[0] > float(hidden(image0)[unit]) and activations[-1] > 0.98


# ---------------------------------------------------------------- half precision: a float32 master copy

HALF = [jnp.bfloat16, jnp.float16]


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_input_against_a_float32_network_under_jit_and_vmap(dtype):
  hidden, unit = _mlp(jnp.float32), 5

  def f(image):  # the float32 network evaluated at the half-precision image
    return -hidden(image.astype(jnp.float32))[unit]

  inside = np.zeros((28, 28), bool)
  inside[2:-2, 2:-2] = True
  upper = np.where(inside, 255.0, 0.0)
  # x_scale: the first step has unit length, far below bfloat16's spacing (0.5 to 1) at [0, 255].
  opt = lbfgsb(lower=0.0, upper=upper, x_scale="auto")
  images0 = jnp.asarray(np.where(inside, np.random.default_rng(0).uniform(0, 255, (2, 28, 28)), 0.0), dtype)

  def record(image, updates, state):
    assert updates.dtype == state.grad.dtype == dtype and state.solver.x.dtype == jnp.float32
    return image, jnp.clip(state.solver.x * state.scale, 0.0, upper.ravel()), state.landed, state.solver.f

  images, masters, landed, fs = jax.jit(jax.vmap(lambda image: _scan(opt, f, image, 10, record)))(images0)
  assert images.dtype == dtype
  wide = np.asarray(images.astype(jnp.float32)).reshape(2, 10, -1)
  assert np.all((wide >= 0) & (wide <= upper.ravel())) and np.all(wide[..., ~inside.ravel()] == 0)
  np.testing.assert_array_equal(wide, landed)  # where the next update continues from the float32 master
  # params + updates is the master iterate rounded to the dtype, except where a
  # step's own rounding (a half-precision d, an ulp of |d|) cannot reach it.
  target = np.asarray(masters.astype(dtype).astype(jnp.float32))
  before = np.concatenate([np.asarray(images0.astype(jnp.float32)).reshape(2, 1, -1), wide[:, :-1]], axis=1)
  assert np.mean(wide == target) > 0.98  # 98.97% (bfloat16), all but far jumps
  assert np.all(np.abs(wide - target) <= 2.0 ** -7 * (np.abs(target - before) + np.abs(target)))
  # value_fn is evaluated at half-precision params: the solver's f is f there, never rising.
  np.testing.assert_allclose(fs, jax.vmap(jax.vmap(f))(images), atol=1e-3)
  assert np.all(np.diff(np.asarray(fs), axis=1) <= 0) and np.all(np.asarray(fs)[:, -1] < -0.98)


@pytest.mark.parametrize("dtype", HALF + DTYPES)
def test_state_and_updates_keep_their_dtypes_under_cond(dtype):
  # optax's test_state_shape_dtype_shard_stability: a step, or none, chosen by lax.cond.
  def objective(x):
    return jnp.sum((x - 0.5) ** 2)

  opt = lbfgsb(lower=-1.0, upper=1.0)

  @jax.jit
  def step(params, state):
    value, grad = jax.value_and_grad(objective)(params)
    value = value.astype(jnp.float16 if dtype != jnp.float16 else jnp.float32)  # another dtype, as optax's test
    cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
    updates, state = lax.cond(
        cond, lambda: opt.update(grad, state, params, value=value, grad=grad, value_fn=objective),
        lambda: (params, state))
    return optax.apply_updates(params, updates), state

  params = jnp.array([1.0, 2.0, -1.5], dtype)
  state = opt.init(params)
  for _ in range(2):
    params, new_state = step(params, state)
    assert params.dtype == dtype
    state = lax.cond(jax.random.randint(jax.random.key(0), (), 0, 2) == 0, lambda: state, lambda: new_state)  # noqa: B023
  chex.assert_trees_all_equal_shapes_and_dtypes(state, opt.init(params))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_gradient_accumulation_with_multisteps(dtype):
  # optax's test_gradient_accumulation: MultiSteps returns zeros until its k-th step.
  def fun(x):
    return jnp.sum(x ** 2)

  opt = optax.MultiSteps(lbfgsb(), every_k_schedule=4)
  params = jnp.array([1.0, 2.0], dtype)
  grads = jax.grad(fun)(params)
  state = jax.jit(opt.init)(params)
  updates, _ = jax.jit(functools.partial(opt.update, value_fn=fun))(grads, state, params, value=fun(params), grad=grads)
  chex.assert_trees_all_equal(updates, jnp.zeros_like(grads))


def test_minimize_refuses_half_precision():
  with pytest.raises(TypeError, match="x0 has dtype bfloat16; L-BFGS-B needs float32 or float64"):
    minimize(jnp.sum, jnp.zeros(2, jnp.bfloat16))


# ---------------------------------------------------------------- errors


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="lbfgsb: memory_size must be >= 1, got 0"):
    lbfgsb(memory_size=0)
  with pytest.raises(ValueError, match="gtol must be >= 0"):
    lbfgsb(gtol=-1.0)
  with pytest.raises(ValueError, match=r"lower\[1\] = .*2.0.* > upper\[1\]"):
    lbfgsb(lower=jnp.array([0.0, 2.0]), upper=1.0).init(jnp.zeros(2))
  with pytest.raises(TypeError, match=r"params has leaves of dtypes \['float32', 'float64'\]; L-BFGS-B solves in one"):
    lbfgsb().init({"a": jnp.zeros(2, jnp.float32), "b": jnp.zeros(2, jnp.float64)})
