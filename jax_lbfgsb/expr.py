"""A safe expression language for objectives typed as text, compiled to JAX.

``parse("sum(100*(x(i+1)-x(i)^2)^2 + (1-x(i))^2, i, 1, n-1)", n=4)`` gives an
:class:`Expression` whose ``fun(x)`` is a pure ``jax.numpy`` function of a 1-D
array ``x`` of length ``n``: jit-, vmap- and grad-able, computed in
``x.dtype``. This is the "type your own f" box of the classic interactive
L-BFGS-B pages, without ever handing the text to Python's ``eval``: the text is
parsed with :mod:`ast` and only the nodes of the grammar below are translated.

Grammar (maths/Fortran style; spaces and newlines are free)::

  expr   := expr ("+" | "-") expr | expr ("*" | "/") expr
          | expr ("^" | "**") expr        power: right-associative and tighter
          | ("-" | "+") expr                than unary minus: -x(1)^2 = -(x(1)^2)
          | "(" expr ")" | number | "pi" | "e" | "n" | index
          | "x(" int ")" | "x[" int "]"   the variables x(1) ... x(n)
          | f "(" expr ")"                f: sin cos tan asin acos atan sinh
                                             cosh tanh exp log log10 sqrt abs
          | "atan2(" expr "," expr ")"
          | ("min" | "max") "(" expr "," expr {"," expr} ")"
          | ("sum" | "prod") "(" expr "," index "," int "," int ")"
          | ("sum" | "prod") "(" expr "," index "=" int ".." int ")"
  int    := an expr of integers, n and sum indices, using + - * ^, exact "/"
            and abs/min/max; worked out when parsing
  number := 3 | 2.5 | .5 | 1e-3 | 1d-3 | 1D3     (Fortran "d" exponents too)

``sum(body, i, lo, hi)``, or ``sum(body, i=lo..hi)``, adds ``body`` for
``i = lo, ..., hi`` (``prod`` multiplies); ``lo > hi`` gives the empty sum 0
(product 1). The index ``i`` is
an integer inside the body, in ``x(2*i-1)`` as in arithmetic. Sums are
vectorized: the body is evaluated once over the array of all ``i``, gathering
``x`` at precomputed indices, so ``n = 10^4`` stays fast under ``jax.jit``.
Nested sums broadcast, one axis per index; a sum whose inner bounds depend on
its index (``sum(sum(x(i)*x(j), j, i+1, n), i, 1, n-1)``) is unrolled instead.

Every ``x`` index is checked against ``1..n`` when parsing, and every mistake
raises :class:`ExpressionError` with a caret under the offending text.
:func:`infer_n` finds ``n`` from the text itself: its largest ``x`` index,
when the text does not use ``n``.

Example:
  >>> import jax.numpy as jnp
  >>> from jax_lbfgsb.expr import ExpressionError, parse
  >>> rosen = parse("sum(100*(x(i+1)-x(i)^2)^2 + (1-x(i))^2, i, 1, n-1)", n=4)
  >>> float(rosen.fun(jnp.ones(4)))
  0.0
  >>> rosen.variables_used
  (1, 2, 3, 4)
  >>> float(parse("sum((x(i)-i)^2, i=1..n)", n=3).fun(jnp.array([1.0, 2.0, 3.0])))
  0.0
  >>> try:
  ...   parse("x(1) + foo(x(2))", n=2)
  ... except ExpressionError as err:
  ...   print(err)  # doctest: +ELLIPSIS
  unknown function `foo`; the functions are sin, cos, tan, ..., min, max, sum, prod
    x(1) + foo(x(2))
           ^^^
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import math
import re
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Expression", "ExpressionError", "infer_n", "parse"]


def _fold(binary: Callable) -> Callable:
  return lambda *args: functools.reduce(binary, args)


_FUNCTIONS = {
    "sin": jnp.sin, "cos": jnp.cos, "tan": jnp.tan, "asin": jnp.arcsin, "acos": jnp.arccos,
    "atan": jnp.arctan, "sinh": jnp.sinh, "cosh": jnp.cosh, "tanh": jnp.tanh, "exp": jnp.exp,
    "log": jnp.log, "log10": jnp.log10, "sqrt": jnp.sqrt, "abs": jnp.abs,
    "atan2": jnp.arctan2, "min": _fold(jnp.minimum), "max": _fold(jnp.maximum),
}
_INT_FUNCTIONS = {"abs": np.abs, "min": _fold(np.minimum), "max": _fold(np.maximum)}
# name -> (reduction over the last axis, how to repeat a term that does not depend on the index)
_REDUCTIONS = {"sum": (jnp.sum, jnp.multiply), "prod": (jnp.prod, jnp.power)}
_ARITY = {  # name -> (fewest, most) arguments; None: no limit
    **{name: (1, 1) for name in _FUNCTIONS}, "atan2": (2, 2), "min": (2, None), "max": (2, None),
    "sum": (4, 4), "prod": (4, 4), "x": (1, 1),
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_CALLABLE = (*_FUNCTIONS, *_REDUCTIONS)
_RESERVED = frozenset(("x", "n", *_CONSTANTS, *_CALLABLE))

_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant, ast.Subscript,
    ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd,
)
_DESCRIPTIONS = {
    ast.Attribute: "attribute access", ast.Lambda: "lambda", ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension", ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension", ast.Compare: "a comparison", ast.BoolOp: "`and`/`or`",
    ast.IfExp: "`if`/`else`", ast.List: "a list", ast.Tuple: "a tuple", ast.Set: "a set",
    ast.Dict: "a dict", ast.Starred: "a starred argument", ast.Slice: "a slice",
    ast.NamedExpr: "`:=`", ast.JoinedStr: "an f-string", ast.keyword: "a keyword argument",
    ast.Mod: "`%`", ast.FloorDiv: "`//`", ast.MatMult: "`@`", ast.LShift: "`<<`",
    ast.RShift: "`>>`", ast.BitOr: "`|`", ast.BitAnd: "`&`", ast.Invert: "`~`", ast.Not: "`not`",
}
_INT_OPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.floor_divide,
            ast.Pow: np.power}
_FLOAT_OPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
              ast.Pow: np.power}
_REAL_OPS = {ast.Add: jnp.add, ast.Sub: jnp.subtract, ast.Mult: jnp.multiply, ast.Div: jnp.divide,
             ast.Pow: jnp.power}
_INT_LIMIT = 2.0**62  # integer arithmetic beyond this becomes floating point
_MAX_TERMS = 10**8  # terms of all nested sums together
_MAX_UNROLLED = 10**5  # copies of a body made by unrolled sums
_FORTRAN_EXPONENT = re.compile(r"(?<![\w.])(\d+\.?\d*|\.\d+)[dD](?=[+-]?\d)")
_REDUCTION_PAREN = re.compile(r"(?<![\w.])(sum|prod)\s*\(")
_INFER_N = 2**62  # the n that parses a text using no n: every index >= 1 is in range


def _usage(name: str) -> str:
  """The accepted forms of a sum (or product), for error messages."""
  return f"{name}(body, i, lo, hi) or {name}(body, i=lo..hi)"


class ExpressionError(ValueError):
  """A mistake in an expression; the message ends with the text and a caret line under the mistake.

  Attributes:
    text: the expression as typed.
    start: where the mistake starts in ``text`` (0-based).
    end: where it ends (exclusive).

  Example:
    >>> print(ExpressionError("unknown name `y`", "x(1) + y", 7, 8))
    unknown name `y`
      x(1) + y
             ^
  """

  def __init__(self, message: str, text: str, start: int, end: int):
    self.text, self.start, self.end = text, start, end
    super().__init__(f"{message}\n{_caret_lines(text, start, end)}")


def _caret_lines(text: str, start: int, end: int) -> str:
  """The line of ``text`` holding ``start``, and carets under ``start:end`` (cut at the line's end)."""
  first = text.rfind("\n", 0, start) + 1
  last = text.find("\n", start)
  last = len(text) if last < 0 else last
  line = "".join(" " if c.isspace() else c for c in text[first:last])
  return f"  {line}\n  {' ' * (start - first)}{'^' * max(1, min(end, last) - start)}"


class _Source(NamedTuple):
  """The user's text and the Python text given to :func:`ast.parse`, with a map between them."""

  text: str
  code: str
  origin: tuple[int, ...]  # origin[k]: position in `text` of code[k]; one more entry for the end

  def error(self, message: str, start: int, end: int) -> ExpressionError:
    """An error for ``code[start:end]``, pointing into the user's text."""
    start = min(max(start, 0), len(self.code))
    end = max(min(end, len(self.code)), start + 1)
    return ExpressionError(message, self.text, self.origin[start], self.origin[end - 1] + 1)

  def at(self, node: ast.AST, message: str) -> ExpressionError:
    return self.error(message, node.col_offset, node.end_col_offset)


def _translate(text: str) -> _Source:
  """Python text for ``text``, position by position: ``^`` -> ``**``, ``1d3`` -> ``1e3``, one line,
  and ``sum(body, i=lo..hi)`` -> ``sum(body, i, lo, hi)``."""
  code = _FORTRAN_EXPONENT.sub(lambda m: m[1] + "e", text)
  pieces = ["**" if c == "^" else " " if c.isspace() else c for c in _ranges(code)]
  origin = [i for i, piece in enumerate(pieces) for _ in piece] + [len(text)]
  skip = len(text) - len(text.lstrip())  # ast.parse rejects leading spaces as an indent
  return _Source(text, "".join(pieces)[skip:], tuple(origin[skip:]))


def _ranges(code: str) -> str:
  """``code`` with each ``i=lo..hi`` of a sum or prod as ``i, lo, hi``, character for character.

  Example:
    >>> _ranges("sum(x(i), i = 1..n-1)")
    'sum(x(i), i , 1, n-1)'
  """
  reductions = {m.end() - 1 for m in _REDUCTION_PAREN.finditer(code)}
  chars = list(code)
  open_ = [(False, None)]  # per open bracket: (a sum's or prod's?, where its current argument's "=" is)
  for k, c in enumerate(code):
    if c in "([":
      open_.append((k in reductions, None))
    elif c in ")]" and len(open_) > 1:
      open_.pop()
    elif c == ",":
      open_[-1] = (open_[-1][0], None)
    elif c == "=" and code[k - 1:k] not in ("=", "<", ">", "!", ":") and code[k + 1:k + 2] != "=":
      open_[-1] = (open_[-1][0], k)
    elif code[k:k + 2] == ".." and "." not in code[k - 1:k] + code[k + 2:k + 3] and open_[-1][0] \
        and open_[-1][1] is not None:
      chars[open_[-1][1]], chars[k], chars[k + 1] = ",", ",", " "
      open_[-1] = (True, None)
  return "".join(chars)


def _enclosing_reduction(code: str, position: int) -> str | None:
  """``"sum"`` or ``"prod"`` when ``code[position]`` is inside (or opens or closes) one's
  parentheses, else None."""
  reductions = {m.end() - 1: m[1] for m in _REDUCTION_PAREN.finditer(code)}
  open_ = []
  for k, c in enumerate(code[:position + 1]):
    if c in "([":
      open_.append(reductions.get(k))
    elif c in ")]" and open_ and k < position:
      open_.pop()
  return next((name for name in reversed(open_) if name), None)


class _Int(NamedTuple):
  """An exact integer value known when parsing: a number, ``n``, or a sum index (int64 array)."""

  value: np.ndarray


class _Real(NamedTuple):
  """A value computed from ``x``: ``fn(x)`` is a scalar or an array with one axis per sum."""

  fn: Callable[[jax.Array], jax.Array]


_Value = Union[_Int, _Real]


class _Scope(NamedTuple):
  """What a node is compiled in: the sum indices bound around it and the shared bookkeeping."""

  n: int
  source: _Source
  used: set  # 1-based x indices seen so far
  index: dict  # name -> int64 values; vectorized indices have `rank` axes, unrolled ones none
  rank: int  # number of vectorized sums around the node
  terms: int  # product of the term counts of the sums around the node
  unrolled: int  # product of the term counts of the unrolled sums around the node


def _constant(value: float) -> _Real:
  return _Real(lambda x: jnp.asarray(value, x.dtype))


def _real(value: _Value) -> Callable[[jax.Array], jax.Array]:
  if isinstance(value, _Real):
    return value.fn
  return _constant(value.value).fn


def _number(value: int | float) -> _Value:
  if isinstance(value, int) and abs(value) < _INT_LIMIT:
    return _Int(np.asarray(value, np.int64))
  return _constant(float(value) if value < 2**1023 else math.inf)  # Python ints have no limit


def _int_binop(op: type, a: np.ndarray, b: np.ndarray) -> _Value:
  """``a op b`` exactly when the result is an integer that fits, else in floating point."""
  with np.errstate(all="ignore"):
    approx = _FLOAT_OPS[op](a.astype(float), b.astype(float))
    exact = bool(np.all(np.abs(approx) < _INT_LIMIT))
    if op is ast.Div:
      exact = exact and bool(np.all(b != 0)) and not np.any(a % np.where(b == 0, 1, b))
    if op is ast.Pow:
      exact = exact and bool(np.all(b >= 0))
    return _Int(_INT_OPS[op](a, b)) if exact else _constant(approx)


def _suggest(kind: str, name: str, known: tuple[str, ...]) -> str:
  close = difflib.get_close_matches(name, known, n=1)
  if close:
    return f"unknown {kind} `{name}` (did you mean `{close[0]}`?)"
  return f"unknown {kind} `{name}`; the {kind}s are {', '.join(known)}"


def _validate(node: ast.AST, parent: ast.AST, source: _Source) -> None:
  """Rejects, before anything is compiled, every node outside the grammar's few node types."""
  if isinstance(node, ast.Constant) and type(node.value) not in (int, float):
    raise source.at(node, f"{type(node.value).__name__} constants are not allowed, only numbers")
  if isinstance(node, ast.Call) and node.keywords:
    if isinstance(node.func, ast.Name) and node.func.id in _REDUCTIONS:
      raise source.at(node.keywords[0], f"a keyword argument is not allowed; write {_usage(node.func.id)}")
    node = node.keywords[0]  # reported below: keywords are not in _ALLOWED
  if not isinstance(node, _ALLOWED):
    where = node if hasattr(node, "col_offset") else parent
    description = _DESCRIPTIONS.get(type(node), f"`{type(node).__name__}`")
    if isinstance(parent, ast.BinOp) and where is parent:
      raise _operator_error(parent, f"{description} is not allowed", source)
    raise source.at(where, f"{description} is not allowed")
  for child in ast.iter_child_nodes(node):
    _validate(child, node, source)


def _operator_error(node: ast.BinOp, message: str, source: _Source) -> ExpressionError:
  """An error pointing at the operator of ``node``, between its operands."""
  gap = source.code[node.left.end_col_offset:node.right.col_offset]
  symbol = gap.strip(" ()")
  start = node.left.end_col_offset + gap.find(symbol) if symbol else node.col_offset
  return source.error(message, start, start + len(symbol))


def _compile(node: ast.AST, scope: _Scope) -> _Value:
  """The value of a validated node, as an exact integer or a function of ``x``."""
  if isinstance(node, ast.Constant):
    return _number(node.value)
  if isinstance(node, ast.Name):
    return _name(node, scope)
  if isinstance(node, ast.UnaryOp):
    value = _compile(node.operand, scope)
    if isinstance(node.op, ast.UAdd):
      return value
    if isinstance(value, _Int):
      return _Int(-value.value)
    return _Real(lambda x: -value.fn(x))
  if isinstance(node, ast.BinOp):
    return _binop(node, scope)
  if isinstance(node, ast.Subscript):
    if not (isinstance(node.value, ast.Name) and node.value.id == "x"):
      raise scope.source.at(node.value, "only x can be indexed, as in x[1]")
    return _variable(node.slice, scope)
  return _call(node, scope)


def _name(node: ast.Name, scope: _Scope) -> _Value:
  name = node.id
  if name in scope.index:
    return _Int(scope.index[name])
  if name == "n":
    return _Int(np.asarray(scope.n, np.int64))
  if name in _CONSTANTS:
    return _constant(_CONSTANTS[name])
  if name == "x":
    raise scope.source.at(node, f"`x` needs an index, as in x(1) ... x({scope.n})")
  if name in _CALLABLE:
    raise scope.source.at(node, f"`{name}` is a function: call it, as in {name}(...)")
  raise scope.source.at(node, _suggest("name", name, ("x", "n", *_CONSTANTS, *scope.index)))


def _binop(node: ast.BinOp, scope: _Scope) -> _Value:
  a, b, op = _compile(node.left, scope), _compile(node.right, scope), type(node.op)
  if isinstance(a, _Int) and isinstance(b, _Int):
    return _int_binop(op, a.value, b.value)
  f = _real(a)
  if op is ast.Pow and isinstance(b, _Int) and b.value.ndim == 0:
    k = int(b.value)  # an integer power: exact, and fine for negative bases
    return _Real(lambda x: f(x) ** k)
  g, fn = _real(b), _REAL_OPS[op]
  return _Real(lambda x: fn(f(x), g(x)))


def _call(node: ast.Call, scope: _Scope) -> _Value:
  if not isinstance(node.func, ast.Name):
    raise scope.source.at(node.func, "only named functions can be called, as in sin(x(1))")
  name = node.func.id
  if name not in _ARITY:
    if name in scope.index or name in ("n", *_CONSTANTS):
      raise scope.source.at(node.func, f"`{name}` is not a function")
    raise scope.source.at(node.func, _suggest("function", name, _CALLABLE))
  low, high = _ARITY[name]
  if not low <= len(node.args) <= (high or len(node.args)):
    count = f"{low} argument{'s' * (low > 1)}" if low == high else f"at least {low} arguments"
    usage = f" ({_usage(name)})" if name in _REDUCTIONS else ""
    raise scope.source.at(node, f"`{name}` takes {count}{usage}, got {len(node.args)}")
  if name == "x":
    return _variable(node.args[0], scope)
  if name in _REDUCTIONS:
    return _reduction(node, scope)
  args = [_compile(arg, scope) for arg in node.args]
  if name in _INT_FUNCTIONS and all(isinstance(arg, _Int) for arg in args):
    return _Int(_INT_FUNCTIONS[name](*(arg.value for arg in args)))
  fns, fn = [_real(arg) for arg in args], _FUNCTIONS[name]
  return _Real(lambda x: fn(*(f(x) for f in fns)))


def _variable(node: ast.AST, scope: _Scope) -> _Real:
  """``x`` at the index ``node``, checked against ``1..n`` for every value of the sum indices."""
  index = _compile(node, scope)
  if not isinstance(index, _Int):
    raise scope.source.at(node, "an index of x must be an integer: integers, n and sum indices")
  values = index.value
  bad = (values < 1) | (values > scope.n)
  if bad.any():
    names = sorted({m.id for m in ast.walk(node) if isinstance(m, ast.Name) and m.id in scope.index})
    arrays = np.broadcast_arrays(values, *(scope.index[name] for name in names))
    at = tuple(np.argwhere(np.broadcast_to(bad, arrays[0].shape))[0])
    where = ", ".join(f"{name} = {array[at]}" for name, array in zip(names, arrays[1:]))
    where = f" (at {where})" if where else ""
    raise scope.source.at(
        node, f"index out of range: x({arrays[0][at]}){where}, but x has indices 1..{scope.n}")
  scope.used.update(np.unique(values).tolist())
  return _Real(_gatherer(values - 1))


def _gatherer(index: np.ndarray) -> Callable[[jax.Array], jax.Array]:
  """``x -> x[index]`` for 0-based ``index``; a strided slice when it is an arithmetic progression."""
  if index.ndim == 0:
    k = int(index)
    return lambda x: x[k]
  flat = index.ravel()
  step = int(flat[1] - flat[0]) if flat.size > 1 else 1
  if flat.size and step > 0 and np.array_equal(flat, flat[0] + step * np.arange(flat.size)):
    start, stop, shape = int(flat[0]), int(flat[-1]) + 1, index.shape
    return lambda x: x[start:stop:step].reshape(shape)
  return lambda x: x[index]


def _reduction(node: ast.Call, scope: _Scope) -> _Real:
  """``sum``/``prod``: vectorized over a new trailing axis, or unrolled if inner bounds need it."""
  name, (body, var, lo, hi) = node.func.id, node.args
  if not isinstance(var, ast.Name):
    raise scope.source.at(var, f"the second argument of {name} must be a name, as in {name}(x(i), i, 1, n)"
                          f" or {name}(x(i), i=1..n)")
  if var.id in _RESERVED or var.id in scope.index:
    taken = "an enclosing sum's index" if var.id in scope.index else "a reserved name"
    raise scope.source.at(var, f"`{var.id}` cannot be a sum index: it is {taken}")
  first, last = _bound(lo, scope), _bound(hi, scope)
  count = max(last - first + 1, 0)
  if count == 0:
    return _constant(float(name == "prod"))
  terms = scope.terms * count
  if terms > _MAX_TERMS:
    raise scope.source.at(node, f"too many terms ({terms:,}); nested sums may have {_MAX_TERMS:,}")
  values = np.arange(first, last + 1, dtype=np.int64)
  reduce, repeat = _REDUCTIONS[name]
  if _bounds_mention(body, var.id):
    unrolled = scope.unrolled * count
    if unrolled > _MAX_UNROLLED:
      raise scope.source.at(node, f"an inner sum's bounds depend on `{var.id}`, so this {name} is"
                            f" unrolled, into {unrolled:,} copies; at most {_MAX_UNROLLED:,} are allowed")
    fns = [_real(_compile(body, scope._replace(
        index={**scope.index, var.id: values[k]}, terms=terms, unrolled=unrolled))) for k in range(count)]
    return _Real(lambda x: reduce(jnp.stack(jnp.broadcast_arrays(*(f(x) for f in fns)), axis=-1), axis=-1))
  index = {key: value[..., None] if value.ndim else value for key, value in scope.index.items()}
  index[var.id] = values.reshape((1,) * scope.rank + (count,))
  fn = _real(_compile(body, scope._replace(index=index, rank=scope.rank + 1, terms=terms)))

  def reduced(x):
    body_values = fn(x)
    if body_values.ndim and body_values.shape[-1] == count:
      return reduce(body_values, axis=-1)
    return repeat(body_values[..., 0] if body_values.ndim else body_values, count)  # no use of the index

  return _Real(reduced)


def _bound(node: ast.AST, scope: _Scope) -> int:
  value = _compile(node, scope)
  if not isinstance(value, _Int) or value.value.ndim:
    raise scope.source.at(node, "a sum bound must be an integer: integers, n and enclosing sum indices")
  return int(value.value)


def _bounds_mention(body: ast.AST, name: str) -> bool:
  """Whether a sum inside ``body`` has a bound that uses the index ``name``."""
  return any(
      isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _REDUCTIONS
      and any(isinstance(m, ast.Name) and m.id == name for bound in node.args[2:] for m in ast.walk(bound))
      for node in ast.walk(body)
  )


@dataclasses.dataclass(frozen=True)
class Expression:
  """A parsed objective; equal (and hashing equal) for the same text and ``n``.

  Attributes:
    text: the expression as typed.
    n: the number of variables.
    variables_used: the 1-based indices of the ``x`` entries it reads, sorted.

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> f = parse("x(1)^2 + 3*x(3)", n=3)
    >>> f.variables_used
    (1, 3)
    >>> jax.grad(f.fun)(jnp.array([2.0, 5.0, 1.0])).tolist()
    [4.0, 0.0, 3.0]
  """

  text: str
  n: int
  variables_used: tuple[int, ...]
  _fn: Callable[[jax.Array], jax.Array] = dataclasses.field(repr=False, compare=False)

  def fun(self, x: jax.Array) -> jax.Array:
    """The value at ``x``, a 1-D array of length ``n``; a scalar of ``x``'s float dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> parse("sum(x(i)^2, i, 1, n)", n=3).fun(jnp.array([1.0, 2.0, 3.0], jnp.float32))
      Array(14., dtype=float32)
    """
    x = jnp.asarray(x)
    if x.shape != (self.n,):
      raise ValueError(f"expected x of shape ({self.n},), got {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.inexact):
      x = x.astype(jnp.result_type(float))
    return self._fn(x)


def parse(text: str, n: int) -> Expression:
  """Parses ``text``, an objective of ``x(1) ... x(n)`` in the grammar of this module.

  Args:
    text: the expression, e.g. ``"sum(100*(x(i+1)-x(i)^2)^2 + (1-x(i))^2, i, 1, n-1)"``.
    n: the number of variables, an int >= 1.

  Returns:
    The :class:`Expression`; its ``fun`` is a pure JAX function of ``x``.

  Raises:
    ExpressionError: for a syntax error, an unknown name or function, a
      construct outside the grammar, a wrong number of arguments, an ``x``
      index outside ``1..n``, a non-integer index or sum bound, or empty text.
    ValueError: if ``n`` is not a positive int.

  Example:
    >>> import jax.numpy as jnp
    >>> f = parse("sum(100*(x(2*i)-x(2*i-1)^2)^2 + (1-x(2*i-1))^2, i, 1, n/2)", n=4)
    >>> print(f"{float(f.fun(jnp.array([-1.2, 1.0, -1.2, 1.0]))):.4f}")
    48.4000
    >>> try:
    ...   parse("x(1) + x(n+1)", n=3)
    ... except ExpressionError as err:
    ...   print(err)
    index out of range: x(4), but x has indices 1..3
      x(1) + x(n+1)
               ^^^
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"n must be an int >= 1; got {n!r}.")
  source, tree = _checked_tree(text)
  used = set()
  try:
    fn = _real(_compile(tree.body, _Scope(int(n), source, used, {}, 0, 1, 1)))
  except RecursionError:
    raise ExpressionError("the expression is nested too deeply", text, 0, len(text)) from None
  return Expression(text, int(n), tuple(sorted(used)), fn)


def infer_n(text: str) -> int:
  """The number of variables of ``text``: its largest ``x`` index, found without knowing ``n``.

  Indices inside sums count with the sums' bounds, which must then be
  constants (``sum(x(i)^2, i=1..5)`` reads ``x(5)``).

  Raises:
    ExpressionError: for any mistake :func:`parse` reports, and when ``n``
      cannot be inferred: ``text`` uses ``n``, or reads no ``x``.

  Example:
    >>> infer_n("(1-x(1))^2 + 100*(x(2)-x(1)^2)^2"), infer_n("sum((x(i)-i)^2, i=1..5)")
    (2, 5)
  """
  source, tree = _checked_tree(text)
  called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
  for node in ast.walk(tree):
    if isinstance(node, ast.Name) and node.id == "n" and id(node) not in called:
      raise source.at(node, "n cannot be inferred from an expression that uses n itself")
  used = parse(text, _INFER_N).variables_used
  if not used:
    raise ExpressionError("n cannot be inferred from an expression that reads no x", text, 0, len(text))
  return used[-1]


def _checked_tree(text: str) -> tuple[_Source, ast.Expression]:
  """``text`` translated, and its syntax tree checked against the grammar's node types."""
  if not text.strip():
    raise ExpressionError("the expression is empty", text, 0, len(text))
  for k, c in enumerate(text):
    if not (c.isascii() and (c.isprintable() or c.isspace())):
      raise ExpressionError(f"unexpected character {c!r}", text, k, k + 1)
  source = _translate(text)
  tree = _syntax_tree(source)
  try:
    _validate(tree, tree, source)
  except RecursionError:
    raise ExpressionError("the expression is nested too deeply", text, 0, len(text)) from None
  return source, tree


def _syntax_tree(source: _Source) -> ast.Expression:
  """Python's syntax tree of ``source.code``; nothing in it is evaluated."""
  try:
    return ast.parse(source.code, mode="eval")
  except SyntaxError as err:
    start = err.offset - 1 if err.lineno == 1 and err.offset else len(source.code)
    message = f"syntax error: {err.msg}"
    reduction = _enclosing_reduction(source.code, start)
    if reduction:
      message += f" (inside {reduction}: write {_usage(reduction)})"
    raise source.error(message, start, start + 1) from None
  except (RecursionError, MemoryError):  # how CPython's parser fails on deep nesting
    raise ExpressionError("the expression is nested too deeply", source.text, 0, len(source.text)) from None
