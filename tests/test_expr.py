"""Tests for jax_lbfgsb.expr: values against NumPy oracles, gradients, dtypes, jit/vmap, errors, safety."""

import ast
import builtins
import math
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jax_lbfgsb.expr import Expression, ExpressionError, infer_n, parse  # noqa: E402

ROSEN_CHAINED = "sum(100*(x(i+1)-x(i)^2)^2 + (1-x(i))^2, i, 1, n-1)"
ROSEN_EXTENDED = "sum(100*(x(2*i)-x(2*i-1)^2)^2 + (1-x(2*i-1))^2, i, 1, n/2)"
TRIGONOMETRIC = "sum((n - sum(cos(x(j)), j, 1, n) + i*(1 - cos(x(i))) - sin(x(i)))^2, i, 1, n)"

# ----------------------------------------------------------------------------
# Oracles: plain loops over 0-based NumPy arrays.
# ----------------------------------------------------------------------------


def np_rosen_chained(x):
  return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def np_rosen_extended(x):
  return sum(100 * (x[2 * i + 1] - x[2 * i] ** 2) ** 2 + (1 - x[2 * i]) ** 2 for i in range(len(x) // 2))


def np_trigonometric(x):
  n = len(x)
  return sum((n - np.cos(x).sum() + (i + 1) * (1 - np.cos(x[i])) - np.sin(x[i])) ** 2 for i in range(n))


def np_pairs(x):
  return sum(x[i] * x[j] for i in range(len(x)) for j in range(i + 1, len(x)))


def np_triple(x):
  n = len(x)
  return sum(x[i] * x[j] * x[k] for i in range(n) for j in range(n) for k in range(j + 1))


def np_spread(x):
  return sum((x[i] - x[j]) ** 2 for i in range(len(x)) for j in range(len(x)))


CASES = [  # (text, n, oracle of the 0-based array x)
    (ROSEN_CHAINED, 2, np_rosen_chained),
    (ROSEN_CHAINED, 7, np_rosen_chained),
    (ROSEN_EXTENDED, 6, np_rosen_extended),
    (TRIGONOMETRIC, 5, np_trigonometric),
    ("sum(sum(x(i)*x(j), j, i+1, n), i, 1, n-1)", 5, np_pairs),
    ("sum(sum(sum(x(i)*x(j)*x(k), k, 1, j), j, 1, n), i, 1, n)", 4, np_triple),
    ("sum(sum((x(i)-x(j))^2, j, 1, n), i, 1, n)", 4, np_spread),
    ("sum(i*x[i]^2, i, 1, n)", 4, lambda x: sum((i + 1) * x[i] ** 2 for i in range(len(x)))),
    ("sum(x(n+1-i)*i, i, 1, n)", 4, lambda x: sum(x[::-1] * np.arange(1, 5))),
    ("sum(x(i)^2, i, 2, 1) + prod(x(i), i, 3, 2)", 3, lambda x: 1.0),
    ("prod(1 + x(i)^2, i, 1, n)", 3, lambda x: np.prod(1 + x**2)),
    ("sum(7, i, 1, n) + prod(2, i, 1, n) * x(1)", 3, lambda x: 21 + 8 * x[0]),
    ("sum(x(min(i+1, n)) * max(i, 2), i, 1, n)", 3, lambda x: 2 * x[1] + 2 * x[2] + 3 * x[2]),
    ("((x(1) + (x(2)*(3 - x(3)))) / (2 + ((x(1)))))", 3, lambda x: (x[0] + x[1] * (3 - x[2])) / (2 + x[0])),
    ("-x(1)^2", 1, lambda x: -(x[0] ** 2)),
    ("-x(1)**2 + (-x(2))^2 - -x(3)", 3, lambda x: -(x[0] ** 2) + x[1] ** 2 + x[2]),
    ("2^3^2 * x(1) + 2^-1 + x(2)^-2", 2, lambda x: 512 * x[0] + 0.5 + x[1] ** -2.0),
    ("x(1)/x(2)/x(3) - x(1)-x(2)-x(3)", 3, lambda x: x[0] / x[1] / x[2] - x[0] - x[1] - x[2]),
    ("1d-3*x(1) + 2.5D2*x(2) + 1e1 + .5d0 + 3.D1 + 7d+0", 2, lambda x: 1e-3 * x[0] + 250 * x[1] + 47.5),
    ("n*pi*x(1) + e", 4, lambda x: 4 * math.pi * x[0] + math.e),
    ("3/2 * x(1) + 4/2 + 7/0*0 + x(2)^0.5", 2, lambda x: 1.5 * x[0] + 2 + np.nan + np.sqrt(x[1])),
    (
        "sin(x(1)) + cos(x(2)) + tan(x(3)) + asin(x(1)/4) + acos(x(2)/4) + atan(x(3))"
        " + sinh(x(1)) + cosh(x(2)) + tanh(x(3)) + exp(x(1)) + log(x(2)) + log10(x(3))"
        " + sqrt(x(1)) + abs(-x(2)) + atan2(x(1), -x(3)) + min(x(1), x(2), x(3)) + max(x(1), x(2))",
        3,
        lambda x: (np.sin(x[0]) + np.cos(x[1]) + np.tan(x[2]) + np.arcsin(x[0] / 4) + np.arccos(x[1] / 4)
                   + np.arctan(x[2]) + np.sinh(x[0]) + np.cosh(x[1]) + np.tanh(x[2]) + np.exp(x[0])
                   + np.log(x[1]) + np.log10(x[2]) + np.sqrt(x[0]) + abs(x[1])
                   + np.arctan2(x[0], -x[2]) + x.min() + max(x[0], x[1])),
    ),
    ("  x(1)\n  + x(2)\t* 2\n", 2, lambda x: x[0] + 2 * x[1]),
]


def _point(n, seed=0):
  return np.random.default_rng(seed).uniform(0.5, 1.5, n)


@pytest.mark.parametrize("text,n,oracle", CASES, ids=[c[0][:40] for c in CASES])
def test_values_match_numpy(text, n, oracle):
  x = _point(n)
  with np.errstate(all="ignore"):
    expected = oracle(x)
  np.testing.assert_allclose(jax.jit(parse(text, n).fun)(jnp.asarray(x)), expected, rtol=1e-13)


@pytest.mark.parametrize("text,n", [(ROSEN_CHAINED, 5), (ROSEN_EXTENDED, 4), (TRIGONOMETRIC, 4),
                                    ("sum(sum(x(i)*x(j), j, i+1, n), i, 1, n-1)", 4),
                                    ("exp(-x(1)^2) * atan2(x(2), x(3)) + max(x(1), x(2)^3) / sqrt(x(3))", 3),
                                    ("prod(x(i)^i, i, 1, n) + log10(sum(x(i)^2, i, 1, n))", 3)])
def test_gradient_matches_central_differences(text, n):
  f, x, h = parse(text, n).fun, _point(n, seed=1), 1e-6
  values = jax.jit(jax.vmap(f))(jnp.asarray(np.concatenate([x + h * np.eye(n), x - h * np.eye(n)])))
  fd = (values[:n] - values[n:]) / (2 * h)
  np.testing.assert_allclose(jax.jit(jax.grad(f))(jnp.asarray(x)), fd, rtol=1e-6, atol=1e-8)


def test_gradient_of_negative_base_integer_power_is_finite():
  g = jax.grad(parse("x(1)^3 + x(1)^2", 1).fun)(jnp.array([-2.0]))
  np.testing.assert_allclose(g, [3 * 4 - 4])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize(
    "text", [ROSEN_CHAINED, TRIGONOMETRIC, "pi", "n", "sum(sum(x(i)*x(j), j, i, n), i, 1, n)"])
def test_result_dtype_follows_x(text, dtype):
  x = jax.ShapeDtypeStruct((3,), dtype)
  assert jax.eval_shape(parse(text, 3).fun, x) == jax.ShapeDtypeStruct((), dtype)
  assert jax.eval_shape(jax.grad(parse(text + " + x(1)", 3).fun), x) == x


def test_float32_value():
  x = _point(5)
  f = jax.jit(parse(ROSEN_CHAINED, 5).fun)
  out = f(jnp.asarray(x, jnp.float32))
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, np_rosen_chained(x), rtol=1e-5)


def test_integer_x_is_promoted_to_float():
  assert jnp.issubdtype(parse("x(1)/2", 1).fun(jnp.array([3])).dtype, jnp.floating)


@pytest.mark.rounding
@pytest.mark.parametrize("text", [ROSEN_CHAINED, TRIGONOMETRIC, "sum(sum(x(i)*x(j), j, i+1, n), i, 1, n-1)"])
def test_jit_and_vmap(text):
  f = parse(text, 4).fun
  xs = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)))
  jitted = jax.jit(f)
  expected = np.array([jitted(x) for x in xs])
  np.testing.assert_allclose(f(xs[0]), expected[0], rtol=1e-14)
  np.testing.assert_allclose(jax.vmap(f)(xs), expected, rtol=1e-14)
  np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(f)))(xs)[1], jax.grad(f)(xs[1]), rtol=1e-14)


def test_large_n_is_vectorized_and_fast():
  n = 10**4
  start = time.perf_counter()
  e = parse(ROSEN_CHAINED, n)
  value, grad = jax.jit(jax.value_and_grad(e.fun))(jnp.full(n, 0.5))
  jax.block_until_ready(grad)
  elapsed = time.perf_counter() - start
  np.testing.assert_allclose(value, (n - 1) * (100 * 0.25**2 + 0.25))
  assert elapsed < 5.0, elapsed
  assert len(jax.make_jaxpr(e.fun)(jnp.zeros(n)).eqns) < 40  # no per-term unrolling


def test_variables_used_and_equality():
  assert parse("x(3) + x[1]^2", 5).variables_used == (1, 3)
  assert parse(ROSEN_EXTENDED, 6).variables_used == (1, 2, 3, 4, 5, 6)
  assert parse("sum(x(2*i-1), i, 1, n/2)", 6).variables_used == (1, 3, 5)
  assert parse("sum(x(i), i, 1, 0) + pi", 6).variables_used == ()
  a, b = parse(ROSEN_CHAINED, 4), parse(ROSEN_CHAINED, 4)
  assert isinstance(a, Expression) and a == b and hash(a) == hash(b) and a != parse(ROSEN_CHAINED, 5)
  assert (a.text, a.n) == (ROSEN_CHAINED, 4)


@pytest.mark.parametrize("ranged,plain", [
    ("sum((x(i)-i)^2, i=1..5)", "sum((x(i)-i)^2, i, 1, 5)"),
    ("sum(sum(x(i)*x(j), j = i+1 .. n), i=1..n-1) + prod(x(k), k=2..3)",
     "sum(sum(x(i)*x(j), j, i+1, n), i, 1, n-1) + prod(x(k), k, 2, 3)"),
])
def test_range_form_of_sums(ranged, plain):
  x = jnp.asarray(_point(5))
  a, b = parse(ranged, 5), parse(plain, 5)
  assert a.variables_used == b.variables_used and float(a.fun(x)) == float(b.fun(x))


def test_infer_n():
  assert infer_n("(1-x(1))^2 + 100*(x(2)-x(1)^2)^2") == 2
  assert infer_n("sum((x(i)-i)^2, i=1..5)") == 5
  assert infer_n("sum(sum(x(i+j), j, 1, 2), i, 1, 3) + x[4]") == 5
  for text, words, column in [("sum(x(i)^2, i, 1, n)", "n cannot be inferred from an expression that uses n", 18),
                              ("pi", "n cannot be inferred from an expression that reads no x", 0),
                              ("x(1) + foo(x(2))", "unknown function `foo`", 7)]:
    with pytest.raises(ExpressionError, match=words) as info:
      infer_n(text)
    assert info.value.start == column



# ----------------------------------------------------------------------------
# Errors: type, message, and the caret under the right column of the right line.
# ----------------------------------------------------------------------------

ERRORS = [  # (text, n, words in the message, caret column, caret width)
    ("", 2, "the expression is empty", 0, 1),
    ("   \n ", 2, "the expression is empty", 0, 3),
    ("x(1) +", 2, "syntax error: invalid syntax", 6, 1),
    ("x(1) + (x(2)", 2, "syntax error: '(' was never closed", 7, 1),
    ("x(1) x(2)", 2, "syntax error", 5, 1),
    ("x(1)^ ^2", 2, "syntax error", 6, 1),
    ("2x(1)", 2, "syntax error", 0, 1),
    ("x(1) + foo(x(2))", 2, "unknown function `foo`; the functions are sin, cos", 7, 3),
    ("x(1)^2 + sine(x(2))", 2, "unknown function `sine` (did you mean `sin`?)", 9, 4),
    ("sqr(x(1))", 1, "unknown function `sqr` (did you mean `sqrt`?)", 0, 3),
    ("x(1)^2*pie", 1, "unknown name `pie` (did you mean `pi`?)", 7, 3),
    ("sum(x(ii), iii, 1, n)", 2, "unknown name `ii` (did you mean `iii`?)", 6, 2),
    ("x(1) +\n  y", 2, "unknown name `y`; the names are x, n, pi, e", 2, 1),
    ("sum(x(i), i, 1, n) + x(i)", 2, "unknown name `i`", 23, 1),
    ("x + 1", 2, "`x` needs an index, as in x(1) ... x(2)", 0, 1),
    ("sin + 1", 2, "`sin` is a function", 0, 3),
    ("pi(2)", 2, "`pi` is not a function", 0, 2),
    ("x(0)", 2, "index out of range: x(0), but x has indices 1..2", 2, 1),
    ("x(1) + x(n+1)", 3, "index out of range: x(4), but x has indices 1..3", 9, 3),
    ("x[3]", 2, "index out of range: x(3)", 2, 1),
    ("sum(x(i+1)^2, i, 1, n)", 3, "index out of range: x(4) (at i = 3), but x has indices 1..3", 6, 3),
    ("sum(x(2*i-1), i, 0, n)", 4, "index out of range: x(-1) (at i = 0)", 6, 5),
    ("sum(sum(x(i+j), j, 1, n), i, 1, n)", 2, "index out of range: x(3) (at i = 1, j = 2)", 10, 3),
    ("sum(sum(x(j), j, i, i+1), i, 1, n)", 3, "index out of range: x(4) (at j = 4)", 10, 1),
    ("x(1/2)", 2, "an index of x must be an integer", 2, 3),
    ("x(1.0)", 2, "an index of x must be an integer", 2, 3),
    ("x(x(1))", 2, "an index of x must be an integer", 2, 4),
    ("sum(x(i), i, 1, n/2)", 5, "a sum bound must be an integer", 16, 3),
    ("sum(x(i), i, 1, x(1))", 5, "a sum bound must be an integer", 16, 4),
    ("atan2(x(1))", 1, "`atan2` takes 2 arguments, got 1", 0, 11),
    ("x(1) + sin(x(1), x(1))", 1, "`sin` takes 1 argument, got 2", 7, 15),
    ("min(x(1))", 1, "`min` takes at least 2 arguments, got 1", 0, 9),
    ("sum(x(i), i, 1)", 2, "`sum` takes 4 arguments (sum(body, i, lo, hi) or sum(body, i=lo..hi)), got 3",
     0, 15),
    ("sum((x(i)-i)^2, i, 1..5)", 5,
     "syntax error: invalid syntax. Perhaps you forgot a comma? (inside sum: write sum(body, i, lo, hi) or"
     " sum(body, i=lo..hi))", 19, 1),
    ("x(1) + prod(x(i), i=1, 2)", 2, "(inside prod: write prod(body, i, lo, hi) or prod(body, i=lo..hi))", 24, 1),
    ("sum(x(i), i=1)", 2, "a keyword argument is not allowed; write sum(body, i, lo, hi) or sum(body, i=lo..hi)",
     10, 3),
    ("min(x(1), i=1..2)", 2, "syntax error", 12, 1),
    ("x(1, 2)", 2, "`x` takes 1 argument, got 2", 0, 7),
    ("sum(x(1), 2, 1, n)", 2, "must be a name, as in sum(x(i), i, 1, n) or sum(x(i), i=1..n)", 10, 1),
    ("sum(x(1), pi, 1, n)", 2, "`pi` cannot be a sum index: it is a reserved name", 10, 2),
    ("sum(sum(x(i), i, 1, n), i, 1, n)", 2, "it is an enclosing sum's index", 14, 1),
    ("x(1) % 2", 1, "`%` is not allowed", 5, 1),
    ("(x(1)) // (2)", 1, "`//` is not allowed", 7, 2),
    ("x(1) < 2", 1, "a comparison is not allowed", 0, 8),
    ("x(1) and x(1)", 1, "`and`/`or` is not allowed", 0, 13),
    ("x[1:2]", 2, "a slice is not allowed", 2, 3),
    ("sin(x=1)", 1, "a keyword argument is not allowed", 4, 3),
    ("1 + 2j", 1, "complex constants are not allowed", 4, 2),
    ("x(1) + π", 1, "unexpected character 'π'", 7, 1),
    ("-" * 10**5 + "x(1)", 1, "the expression is nested too deeply", 0, 10**5 + 4),
    ("sum(x(1), i, 1, 10^9)", 1, "too many terms (1,000,000,000)", 0, 21),
    ("sum(sum(x(j), j, 1, i), i, 1, 10^6)", 10**6, "so this sum is unrolled, into 1,000,000 copies", 0, 35),
]


@pytest.mark.parametrize("text,n,words,column,width", ERRORS, ids=[e[0][:30] for e in ERRORS])
def test_error_message_and_caret(text, n, words, column, width):
  with pytest.raises(ExpressionError) as info:
    parse(text, n)
  err = info.value
  assert isinstance(err, ValueError)
  message, line, carets = str(err).rsplit("\n", 2)
  assert words in message
  first = text.rfind("\n", 0, err.start) + 1
  assert err.start - first == column
  assert carets == "  " + " " * column + "^" * width
  shown = text[first:].split("\n")[0]
  assert line == "  " + "".join(" " if c.isspace() else c for c in shown)


@pytest.mark.parametrize("n", [0, -1, 2.0, True, "3"])
def test_bad_n(n):
  with pytest.raises(ValueError, match="n must be an int >= 1"):
    parse("x(1)", n)


def test_wrong_shape_of_x():
  with pytest.raises(ValueError, match=r"expected x of shape \(3,\)"):
    parse("x(1)", 3).fun(jnp.ones(2))


# ----------------------------------------------------------------------------
# Safety: hostile text is rejected, and nothing is evaluated, compiled or run.
# ----------------------------------------------------------------------------

MALICIOUS = [
    "__import__('os').system('touch {tmp}/pwned')",
    "x.__class__",
    "(lambda: 1)()",
    "[i for i in range(3)]",
    "'a'*3",
    "open('{tmp}/pwned', 'w')",
    "eval('1')",
    "exec('import os')",
    "__builtins__",
    "globals()",
    "().__class__.__bases__[0].__subclasses__()",
    "getattr(x, 'real')",
    "f'{{1}}'",
    "(y := 1)",
    "x(1) if 1 else 2",
    "x(1); import os",
    "x(1)\nimport os",
    "sum(__import__('os'), i, 1, 0)",
    "sum(x(i), i, 1, 0) + exp.__globals__",
    "b'abc'",
    "{{1: 2}}",
    "...",
    "None",
    "x[::-1]",
    "min(*[1, 2])",
]


@pytest.mark.parametrize("text", MALICIOUS)
def test_malicious_input_is_rejected_without_running_anything(text, tmp_path, monkeypatch):
  calls = []

  def spy(name, real):
    def wrapped(*args, **kwargs):
      calls.append(name)
      return real(*args, **kwargs)
    return wrapped

  real_compile = builtins.compile

  def only_ast_compile(source, filename, mode, flags=0, *args, **kwargs):
    if not flags & ast.PyCF_ONLY_AST:
      calls.append("compile")
    return real_compile(source, filename, mode, flags, *args, **kwargs)

  monkeypatch.setattr(builtins, "eval", spy("eval", builtins.eval))
  monkeypatch.setattr(builtins, "exec", spy("exec", builtins.exec))
  monkeypatch.setattr(builtins, "compile", only_ast_compile)
  with pytest.raises(ExpressionError):
    parse(text.format(tmp=tmp_path), 2)
  assert calls == []
  assert list(tmp_path.iterdir()) == []
