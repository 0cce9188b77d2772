"""The ``jax-lbfgsb`` command line: the classic interactive L-BFGS-B page in a terminal.

::

  jax-lbfgsb list                                   the predefined functions
  jax-lbfgsb solve NAME|NUMBER [options]            solve one of them
  jax-lbfgsb solve --expr "TEXT" [--n N] [options]  solve your own f(x(1..n))
  jax-lbfgsb demo [--out DIR]                       bounded Rosenbrock: report, iprint table, 3 plots
  jax-lbfgsb page [--port 8765] [--open]            the same as a web page (jax_lbfgsb.page; needs flask)
  jax-lbfgsb --version

``solve`` prints the report of :func:`jax_lbfgsb.report.report` (termination
reason, f, nit, nfev, CPU/wall/compile times, every x(i) and g(i), bound
activity, diagnosis), or JSON with ``--json``, and writes the plots with
``--plots DIR``. Two presets set the stopping rule and defaults (see
:data:`PRESET_RULES`, also shown by ``jax-lbfgsb solve --help``):

* ``scipy`` (default): ``minimize``'s own defaults; ``--eps`` is ``gtol``.
* ``page``: the page's rules, stop when ``||proj g||_2 <= eps (1 + |f|)``, or
  ``||x - x_prev||_2 <= eps (||x||_2 + 1)``, or f decreased by at most 1e-12
  relative, ``(f_prev - f) / max(|f_prev|, |f|, 1) <= ftol``; eps 1e-7, ftol
  1e-12, maxiter 4000, maxfun 40000, m = min(n/2 + 1, 10), delta 0.01, kappa 0.9.

``--expr`` without ``--n`` takes n from ``--x0`` when that lists several
values, else from the expression's largest index (:func:`jax_lbfgsb.expr.infer_n`).
Bounds given with ``--lower``/``--upper`` that change a predefined problem
make it another problem: its description says so, and its known f* is
dropped unless the factory knows f* for those bounds.

Compiled solves are kept in JAX's persistent compilation cache (see
:func:`_compilation_cache`), so a repeated ``jax-lbfgsb solve NAME`` skips
compilation. Host-side only: argparse and printing live here, never on the
jitted path.
Bad arguments exit with status 2 and an argparse-style one-line reason,
before any solve. The input layer (:func:`problem_from`, :func:`options_from`,
:func:`contour_from`, :func:`result_dict`) takes plain values and raises
:class:`FieldError`, so that the page (:mod:`jax_lbfgsb.page`) validates
and answers exactly as the command does. When the reader of stdout goes away (``| head``), the rest
of the output is dropped quietly and the exit status is 141, as for a
command killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import importlib.util
import inspect
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from jax_lbfgsb._options import DEFAULTS, FieldError, check_options

_PRESETS = {  # m=None: min(n // 2 + 1, 10)
    "scipy": dict(eps=DEFAULTS.gtol, ftol=DEFAULTS.ftol, m=DEFAULTS.maxcor, delta=DEFAULTS.ls_ftol,
                  kappa=DEFAULTS.ls_gtol, maxiter=DEFAULTS.maxiter, maxfun=DEFAULTS.maxfun),
    "page": dict(eps=1e-7, ftol=1e-12, m=None, delta=0.01, kappa=0.9, maxiter=4000, maxfun=40000),
}
PRESET_RULES = """\
presets (the stopping rules and defaults; the flags above override them):
  scipy  minimize's defaults: stop when max_i |proj g_i| <= eps (1e-5), or when
         (f_prev - f) / max(|f_prev|, |f|, 1) <= ftol (2.2e-9); maxiter 15000,
         maxfun 15000, m 10, delta 1e-3, kappa 0.9
  page   the classic page's rules: stop when ||proj g||_2 <= eps (1 + |f|), or
         ||x - x_prev||_2 <= eps (||x||_2 + 1), or f decreased by at most 1e-12
         relative, (f_prev - f) / max(|f_prev|, |f|, 1) <= ftol (1e-12);
         eps 1e-7, maxiter 4000, maxfun 40000, m = min(n/2 + 1, 10),
         delta 0.01, kappa 0.9"""
# The fields that set minimize's options, by the options' names.
_FIELD_NAMES = {"maxcor": "m", "ls_ftol": "delta", "ls_gtol": "kappa", "gtol": "eps", "pgtol_rel": "eps",
                "xtol_rel": "eps"}
# Factories without defaults for every argument get these in `list` and `solve`.
_DEFAULT_PARAMS = {"ept": {"nx": 10, "ny": 10}, "pjb": {"nx": 10, "ny": 10}, "nnls": {"m": 30, "n": 10}}
DEMO_DIR = "jax_lbfgsb_demo"


def _flag(field: str) -> str:
  """How the command line spells a field: ``--x0``; the problem is the positional NAME."""
  return {"function": "NAME", "contour": "--contour I J"}.get(field, f"--{field}")


@contextlib.contextmanager
def _parser_errors(parser: argparse.ArgumentParser):
  """A :class:`FieldError` raised in the block becomes ``parser.error`` (exit status 2)."""
  try:
    yield
  except FieldError as err:
    parser.error(err.spelled(_flag))


def _catalog() -> list[str]:
  """The predefined problems in ``list`` order: the page's 14 first, then the others."""
  from jax_lbfgsb import problems

  return list(problems.CORE14) + [name for name in problems.PROBLEMS if name not in problems.CORE14]


def _history_length(n: int) -> int:
  """Iterations recorded for the plots: 1000, fewer for large n (at most ~10^7 floats)."""
  return max(2, min(1000, 10**7 // n))


def _list(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
  from jax_lbfgsb import problems

  print(f"{'#':>3}  {'name':<22} {'n':>5}  {'f*':<13} description")
  for number, name in enumerate(_catalog(), start=1):
    p = problems.get(name, **_DEFAULT_PARAMS.get(name, {}))
    f_opt = "unknown" if p.f_opt is None else f"{p.f_opt:.6g}"
    print(f"{number:>3}  {name:<22} {p.x0.size:>5}  {f_opt:<13} {p.description}")
  print("\nSolve one with `jax-lbfgsb solve NAME` (or its number); `--n N` or `--param KEY=VALUE`"
        " change its size and settings where the factory takes them.")
  return 0


def floats(field: str, text: str, n: int, none: float = float("nan")) -> np.ndarray:
  """``v1,v2,...`` (or one value for all n) as a float64 array; ``inf``, ``-inf`` and ``none`` allowed.

  Example:
    >>> floats("x0", "-1.2, 1", 2).tolist(), floats("lower", "none", 2, none=-np.inf).tolist()
    ([-1.2, 1.0], [-inf, -inf])
  """
  try:
    values = [none if v.strip().lower() == "none" else float(v) for v in text.split(",")]
  except ValueError:
    raise FieldError(field, "{%s}: expected comma-separated numbers, got {0!r}" % field, text) from None
  if len(values) not in (1, n):
    raise FieldError(field, "{%s}: expected 1 or {0} values (n = {0}), got {1}" % field, n, len(values))
  return np.resize(np.asarray(values, np.float64), n)


def _params(items: Sequence[str]) -> dict:
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key.isidentifier():
      raise FieldError("param", "{param}: expected KEY=VALUE, got {0!r}", item)
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
      out[key] = lowered == "true"
      continue
    try:
      out[key] = int(value)
    except ValueError:
      try:
        out[key] = float(value)
      except ValueError:
        raise FieldError("param", "{param} {0}: expected a number or true/false, got {1!r}", key, value) from None
  return out


def _problem(parser: argparse.ArgumentParser, args: argparse.Namespace):
  """The problem to solve, with --x0, --lower and --upper applied."""
  with _parser_errors(parser):
    return problem_from(args.name, args.expr, n=args.n, x0=args.x0, lower=args.lower, upper=args.upper,
                        params=_params(args.param))


def problem_from(function: str | None = None, expr: str | None = None, *, n: int | None = None,
                 x0: str | None = None, lower: str | None = None, upper: str | None = None,
                 params: Mapping | None = None, max_n: int | None = None):
  """The :class:`~jax_lbfgsb.problems.Problem` of a solve's fields; raises :class:`FieldError`.

  Args:
    function: a name or number of :func:`_catalog` (``jax-lbfgsb list``); or None with ``expr``.
    expr: your own f in :mod:`jax_lbfgsb.expr`'s language; or None with ``function``.
    n: the number of variables (factories that take n, or ``expr``; default
      theirs, or for ``expr`` the count of a several-valued ``x0``, else the
      text's largest index).
    x0, lower, upper: ``v1,...,vn`` or one value for all, as text (``none``:
      no bound); None: the problem's.
    params: other keyword arguments of the factory.
    max_n: the most variables allowed, checked before anything of size n is built.

  Example:
    >>> p = problem_from("rosenbrock", x0="-1.2,1")
    >>> p.name, p.x0.tolist()
    ('rosenbrock_2', [-1.2, 1.0])
    >>> problem_from(expr="x(1)^2", n=3, x0="1,2")
    Traceback (most recent call last):
    ...
    jax_lbfgsb._options.FieldError: x0: expected 1 or 3 values (n = 3), got 2
  """
  if (function is None) == (expr is None):
    raise FieldError("function", "give either a problem {function} (see `jax-lbfgsb list`) or {expr} TEXT")
  if n is not None and n < 1:
    raise FieldError("n", "{n} must be >= 1, got {0}", n)
  if n is not None and max_n is not None and n > max_n:
    raise FieldError("n", "{n} must be <= {0} here, got {1}", max_n, n)
  if expr is not None:
    p, factory = _expression(expr, n, x0, params, max_n), None
  else:
    p, factory = _predefined(function, n, params)
  n = p.x0.size
  if max_n is not None and n > max_n:
    raise FieldError("function", "{function}: {0} has n = {1} variables; at most {2} here", p.name, n, max_n)
  x0 = p.x0 if x0 is None else floats("x0", x0, n)
  lower = p.lower if lower is None else floats("lower", lower, n, none=-np.inf)
  upper = p.upper if upper is None else floats("upper", upper, n, none=np.inf)
  if np.isnan(x0).any() or np.isnan(lower).any() or np.isnan(upper).any():
    raise FieldError("x0", "{x0}, {lower} and {upper} take numbers (none only in the bounds)")
  bad = np.flatnonzero(lower > upper)
  if bad.size:
    raise FieldError("lower", "lower > upper at x({0}): {1} > {2}", bad[0] + 1, lower[bad[0]], upper[bad[0]])
  if factory is not None and not (np.array_equal(lower, p.lower) and np.array_equal(upper, p.upper)):
    p = _rebounded(p, factory, lower, upper)
  return p._replace(x0=x0, lower=lower, upper=upper)


def _expression(text: str, n: int | None, x0: str | None, params: Mapping | None, max_n: int | None):
  """The ``expr`` problem; n from ``n``, else from an ``x0`` of several values, else from the text."""
  from jax_lbfgsb import problems
  from jax_lbfgsb.expr import ExpressionError, infer_n, parse

  if params:
    raise FieldError("param", "{param} applies to predefined problems, not to {expr}")
  if n is None and x0 is not None and "," in x0:
    n = len(x0.split(","))
  if n is None:
    try:
      n = infer_n(text)
    except ExpressionError as err:
      reason = str(err).splitlines()[0]
      if not reason.startswith("n cannot be inferred"):
        raise FieldError("expr", "{expr}: {0}", err) from None
      raise FieldError("expr", "{expr} needs {n} N (or {x0} v1,...,vN) here: {0}", reason) from None
  if max_n is not None and n > max_n:
    raise FieldError("n", "{n} must be <= {0} here, got {1} (from {x0} or the largest index in {expr})", max_n, n)
  try:
    expression = parse(text, n)
  except ExpressionError as err:
    raise FieldError("expr", "{expr}: {0}", err) from None
  inf = np.full(n, np.inf)
  return problems.Problem("expression", expression.fun, np.zeros(n), -inf, inf, None, text)


def _predefined(function: str, n: int | None, params: Mapping | None):
  """The predefined problem ``function`` (a name or number), and its factory with the arguments it was built with."""
  from jax_lbfgsb import problems

  catalog = _catalog()
  number = function.isdigit() and 1 <= int(function) <= len(catalog)
  name = catalog[int(function) - 1] if number else function
  if name not in problems.PROBLEMS:
    close = difflib.get_close_matches(name, list(problems.PROBLEMS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise FieldError("function", "unknown problem {0!r}{1}; `jax-lbfgsb list` shows the names and numbers",
                     function, hint)
  kwargs = {**_DEFAULT_PARAMS.get(name, {}), **(params or {})}
  if n is not None:
    kwargs["n"] = n
  accepted = inspect.signature(problems.PROBLEMS[name]).parameters
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    raise FieldError("n" if "n" in unknown else "param", "{0} takes no parameter {1}; its parameters: {2}",
                     name, ", ".join(unknown), ", ".join(accepted) or "none")
  try:
    return problems.get(name, **kwargs), functools.partial(problems.PROBLEMS[name], **kwargs)
  except ValueError as err:
    raise FieldError("n" if n is not None else "param", "{0}: {1}", name, err) from None


def _rebounded(p, factory, lower: np.ndarray, upper: np.ndarray):
  """``p`` with the bounds given, which make it another problem: the description names them,
  and f* is the factory's for those bounds where the factory takes bounds, else unknown."""
  f_opt = None
  if {"lower", "upper"} <= set(inspect.signature(factory).parameters):
    p = factory(lower=lower, upper=upper)
    f_opt = p.f_opt
  description = f"{p.description}; here with the bounds given, lower {_values(lower)}, upper {_values(upper)}"
  return p._replace(f_opt=f_opt, description=description)


def _values(values: np.ndarray, first: int = 4) -> str:
  """``-2`` when all values are equal, else ``(-2, -inf, 0, 1, ...)``."""
  if np.all(values == values[0]):
    return f"{values[0]:g}"
  shown = ", ".join(f"{v:g}" for v in values[:first])
  return f"({shown}{', ...' if values.size > first else ''})"


def _options(parser: argparse.ArgumentParser, preset: str, n: int, iprint: int, **flags) -> dict:
  """``minimize`` keyword arguments from a preset and the flags (eps, ftol, m, ...; None: the preset's)."""
  with _parser_errors(parser):
    return options_from(preset, n, iprint, **flags)


def options_from(preset: str, n: int, iprint: int, **fields) -> dict:
  """``minimize`` keyword arguments from a preset and the fields (eps, ftol, delta, kappa, m,
  maxiter, maxfun; None: the preset's); raises :class:`FieldError`.

  Example:
    >>> options_from("page", 2, -1, eps=1e-6)["pgtol_rel"], options_from("page", 2, -1)["maxcor"]
    (1e-06, 2)
  """
  pick = {key: value if fields.get(key) is None else fields[key] for key, value in _PRESETS[preset].items()}
  m = min(n // 2 + 1, 10) if pick["m"] is None else pick["m"]
  options = dict(maxcor=m, ftol=pick["ftol"], ls_ftol=pick["delta"], ls_gtol=pick["kappa"],
                 maxiter=pick["maxiter"], maxfun=pick["maxfun"])
  if preset == "page":
    options.update(gtol=0.0, pgtol_rel=pick["eps"], xtol_rel=pick["eps"])
  else:
    options.update(gtol=pick["eps"])
  check_options(_FIELD_NAMES, **options)  # minimize's rules, naming the fields
  return dict(options, iprint=iprint, history=_history_length(n))


@contextlib.contextmanager
def _progress(stream):
  """Rewrites ``solving... Ns`` on ``stream`` every second while the block runs longer than one,
  when ``stream`` is a terminal (a log file or pipe gets nothing)."""
  if not stream.isatty():
    yield
    return
  stop = threading.Event()
  start = time.perf_counter()

  def tick():
    while not stop.wait(1.0):
      stream.write(f"solving... {time.perf_counter() - start:.0f}s\r")
      stream.flush()

  thread = threading.Thread(target=tick, daemon=True)
  thread.start()
  try:
    yield
  finally:
    stop.set()
    thread.join()
    if time.perf_counter() - start >= 1.0:
      stream.write(" " * 20 + "\r")


def _run(p, options: dict, iprint_to=None, progress: bool = True):
  """Solves ``p`` in float64 with :func:`~jax_lbfgsb.report.timed_minimize` (under the progress
  line with ``progress``); the iprint output goes to ``iprint_to`` (a text stream), default stdout."""
  import jax

  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp

  from jax_lbfgsb.report import timed_minimize

  redirect = contextlib.nullcontext() if iprint_to is None else contextlib.redirect_stdout(iprint_to)
  with _progress(sys.stderr) if progress else contextlib.nullcontext(), redirect:
    return timed_minimize(p.fun, jnp.asarray(p.x0, jnp.float64), bounds=(p.lower, p.upper), **options)


def _check_plots(parser: argparse.ArgumentParser, folder: str) -> None:
  """Exits now, before the solve, if the plots could not be written into ``folder`` (created here)."""
  if importlib.util.find_spec("matplotlib") is None:
    parser.error('--plots needs matplotlib: pip install "jax-lbfgsb[plot]"')
  try:
    Path(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as err:
    parser.error(f"--plots {folder}: cannot write there ({err.strerror or err}); give a writable folder")


def _plots(p, result, folder: str, contour) -> list[str]:
  """Writes convergence.png, gradient_norm.png and, with ``contour = (i, j, r)`` (1-based), contour.png."""
  from jax_lbfgsb import plotting

  out = Path(folder)
  out.mkdir(parents=True, exist_ok=True)
  written = [out / "convergence.png", out / "gradient_norm.png"]
  plotting.plot_convergence(result.history, written[0], f_opt=p.f_opt)
  plotting.plot_gradient_norm(result.history, written[1])
  if contour is not None:
    i, j, radius = contour
    written.append(out / "contour.png")
    plotting.plot_contour(p.fun, result.x, i - 1, j - 1, radius, written[2], history=result.history,
                          bounds=(p.lower, p.upper))
  return [str(path) for path in written]


def _finite(values):
  """Floats (or a list of them) for JSON: NaN and inf become None."""
  array = np.asarray(values, np.float64)
  return np.where(np.isfinite(array), array, None).tolist()


def result_dict(p, result, timing, notes: list[str], plots: list[str]) -> dict:
  """What ``jax-lbfgsb solve --json`` prints (NaN and inf as null)."""
  from jax_lbfgsb import Termination

  return {
      "problem": p.name, "x": _finite(result.x), "fun": _finite(result.fun), "jac": _finite(result.jac),
      "nit": int(result.nit), "nfev": int(result.nfev), "status": int(result.status),
      "success": bool(result.success), "termination": Termination(int(result.termination)).name,
      "message": result.message, "diagnosis": notes, "plots": plots,
      "timing": {**timing._asdict(), "compile": timing.compile},
  }


def contour_from(contour: Sequence[int] | None, radius: float, n: int):
  """``(i, j, radius)`` (1-based) for the contour plot, or None; raises :class:`FieldError`.

  Example:
    >>> contour_from((1, 2), 0.5, 2), contour_from(None, 1.0, 2)
    ((1, 2, 0.5), None)
  """
  if contour is None:
    return None
  i, j = contour
  if not (1 <= i <= n and 1 <= j <= n) or i == j:
    raise FieldError("contour", "{contour}: need two different indices in 1..{0}, got {1} {2}", n, i, j)
  if not radius > 0:
    raise FieldError("radius", "{radius} must be > 0, got {0}", radius)
  return (i, j, radius)


def _solve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
  p = _problem(parser, args)
  n = p.x0.size
  if args.max_rows < 1:
    parser.error(f"--max-rows must be >= 1, got {args.max_rows}")
  options = _options(parser, args.preset, n, args.iprint, **{key: getattr(args, key) for key in _PRESETS["scipy"]})
  with _parser_errors(parser):
    if args.scale is not None:
      options["x_scale"] = "auto" if args.scale == "auto" else floats("scale", args.scale, n)
      if args.scale != "auto" and not np.all(options["x_scale"] > 0):
        raise FieldError("scale", "{scale}: scales must be positive numbers or 'auto', got {0}", args.scale)
    contour = contour_from(args.contour, args.radius, n)
  if args.plots or contour:
    _check_plots(parser, args.plots or ".")
  from jax_lbfgsb.report import diagnose, report

  # With --json, stdout holds the JSON alone: the iprint output goes to stderr.
  result, timing = _run(p, options, iprint_to=sys.stderr if args.json else None)
  plots = _plots(p, result, args.plots or ".", contour) if args.plots or contour else []
  if args.json:
    print(json.dumps(result_dict(p, result, timing, diagnose(result, p.lower, p.upper, p.x0), plots), indent=2))
    return 0
  print(report(result, problem=p, timing=timing, max_rows=args.max_rows))
  recorded = result.history.f.shape[0]
  if plots and int(result.nit) >= recorded:
    print(f"the plots show the first {recorded} of {int(result.nit) + 1} iterates")
  for path in plots:
    print(f"wrote {path}")
  return 0


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
  from jax_lbfgsb import problems
  from jax_lbfgsb.report import report

  if args.n < 2:
    parser.error(f"--n must be at least 2, got {args.n}")
  p = problems.rosenbrock_box(args.n)
  print(f"jax-lbfgsb demo: {p.description} [-1.5, 0.8], x0 = (-1.2, 1, -1.2, ...), SciPy's defaults\n")
  options = _options(parser, "scipy", p.x0.size, args.iprint)
  result, timing = _run(p, options)
  print()
  print(report(result, problem=p, timing=timing))
  print()
  try:
    plots = _plots(p, result, args.out, (1, 2, 0.5))
  except ImportError:
    print('the plots need matplotlib: pip install "jax-lbfgsb[plot]"')
    return 0
  for path in plots:
    print(f"wrote {path}")
  return 0


def _page(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
  if importlib.util.find_spec("flask") is None or importlib.util.find_spec("matplotlib") is None:
    parser.error('the page needs flask and matplotlib: pip install "jax-lbfgsb[page]"')
  if args.workers < 1 or not args.time_limit > 0:
    parser.error(f"--workers must be >= 1 and --time-limit > 0, got {args.workers} and {args.time_limit}")
  from jax_lbfgsb import page

  try:
    page.serve(args.host, args.port, args.open, args.workers, args.time_limit)
  except OSError as err:
    parser.error(f"--host {args.host} --port {args.port}: cannot listen there ({err.strerror or err});"
                 " choose another port, or --port 0 for a free one")
  return 0


def _parser() -> argparse.ArgumentParser:
  from jax_lbfgsb import __version__

  parser = argparse.ArgumentParser(
      prog="jax-lbfgsb", description="L-BFGS-B in JAX: the classic interactive L-BFGS-B page as a command.")
  parser.add_argument("--version", action="version", version=f"jax-lbfgsb {__version__}")
  sub = parser.add_subparsers(dest="command", required=True)

  listing = sub.add_parser("list", help="the predefined functions: name, n, f*, description")
  listing.set_defaults(func=_list, parser=listing)

  solve = sub.add_parser("solve", help="solve a predefined function or your own expression",
                         description="Solve a predefined function (NAME or its number in `list`) or --expr.",
                         epilog=PRESET_RULES, formatter_class=argparse.RawDescriptionHelpFormatter)
  solve.add_argument("name", nargs="?", help="a name or number from `jax-lbfgsb list`")
  solve.add_argument("--expr", help='your own f, e.g. "(1-x(1))^2 + 100*(x(2)-x(1)^2)^2" or'
                                    ' "sum((x(i)-i)^2, i=1..5)" (see jax_lbfgsb.expr)')
  solve.add_argument("--n", type=int, help="number of variables (predefined problems that take n, or --expr;"
                                           " for --expr, default: the largest x index)")
  solve.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="a setting of the problem's factory, e.g. --param saturate=true (repeatable)")
  solve.add_argument("--x0", help="start: v1,v2,...,vn or one value for all")
  solve.add_argument("--lower", help="lower bounds: l1,...,ln or one value; none or -inf for no bound")
  solve.add_argument("--upper", help="upper bounds: u1,...,un or one value; none or inf for no bound")
  solve.add_argument("--preset", choices=sorted(_PRESETS), default="scipy",
                     help="stopping rule and defaults: scipy (minimize's) or page (the classic page's)")
  solve.add_argument("--eps", type=float, help="tolerance: gtol (scipy) or the page's relative eps (page)")
  solve.add_argument("--ftol", type=float, help="relative-reduction tolerance (scipy 2.2e-9, page 1e-12; 0: off)")
  solve.add_argument("--delta", type=float, help="line search sufficient decrease (scipy 1e-3, page 0.01)")
  solve.add_argument("--kappa", type=float, help="line search curvature (0.9); 0 < delta < kappa < 1")
  solve.add_argument("--m", type=int, help="memory: correction pairs kept (scipy 10, page min(n/2+1, 10))")
  solve.add_argument("--maxiter", type=int, help="iteration limit (scipy 15000, page 4000)")
  solve.add_argument("--maxfun", type=int, help="evaluation limit (scipy 15000, page 40000)")
  solve.add_argument("--scale", metavar="S",
                     help="variable scales: s1,...,sn, one value for all, or auto (the solver works on x/s)")
  solve.add_argument("--iprint", type=int, default=-1,
                     help="Fortran progress output: -1 none, 0 summary, k every k iterations")
  solve.add_argument("--plots", metavar="DIR",
                     help="write convergence.png and gradient_norm.png (and contour.png) here (created)")
  solve.add_argument("--contour", type=int, nargs=2, metavar=("I", "J"),
                     help="also plot f around the best point in x(I), x(J) (1-based), the others fixed,"
                          " into --plots DIR (default .)")
  solve.add_argument("--radius", type=float, default=1.0, help="half-width of the contour window (1.0)")
  solve.add_argument("--max-rows", type=int, default=20, help="rows of the x(i), g(i) table before eliding (20)")
  solve.add_argument("--json", action="store_true", help="print the result as JSON instead of the report")
  solve.set_defaults(func=_solve, parser=solve)

  demo = sub.add_parser(
      "demo", help=f"solve a bounded Rosenbrock problem: report, iprint table, plots in ./{DEMO_DIR}/")
  demo.add_argument("--n", type=int, default=10, help="number of variables (default 10, at least 2)")
  demo.add_argument("--out", default=DEMO_DIR, help=f"folder for the three PNG plots (default ./{DEMO_DIR})")
  demo.add_argument("--iprint", type=int, default=0,
                    help="Fortran progress output: 0 the final table (default), k every k iterations")
  demo.set_defaults(func=_demo, parser=demo)

  serve = sub.add_parser(
      "page", help="the same as a local web page: the form, the results, the plots (needs the page extra)",
      description="Serve the interactive L-BFGS-B page (jax_lbfgsb.page) until Ctrl-C.")
  serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
  serve.add_argument("--port", type=int, default=8765, help="port (8765; 0: a free one)")
  serve.add_argument("--open", action="store_true", help="open the page in a web browser")
  serve.add_argument("--workers", type=int, default=2, help="solving processes, solves at a time (2)")
  serve.add_argument("--time-limit", type=float, default=60.0,
                     help="wall-clock seconds per solve, compilation included (60); a longer solve is stopped")
  serve.set_defaults(func=_page, parser=serve)
  return parser


def _glue_negative_vectors(argv: Sequence[str]) -> list[str]:
  """``--x0 -1.2,1`` as ``--x0=-1.2,1``: argparse would read ``-1.2,1`` as an option."""
  out = []
  for arg in argv:
    if out and out[-1] in ("--x0", "--lower", "--upper") and re.match(r"-(\d|\.|inf)", arg, re.IGNORECASE):
      out[-1] = f"{out[-1]}={arg}"
    else:
      out.append(arg)
  return out


def _compilation_cache() -> str | None:
  """Turns on JAX's persistent compilation cache, so that solving the same
  problem again skips compilation; returns its folder.

  The folder is ``$JAX_LBFGSB_CACHE_DIR``, else ``$XDG_CACHE_HOME/jax_lbfgsb``
  (``~/.cache/jax_lbfgsb``); ``JAX_LBFGSB_CACHE_DIR=`` (empty) turns it off, and
  a cache that JAX was already given (``JAX_COMPILATION_CACHE_DIR``) is kept.
  Library users get the same with one line before their first solve:
  ``jax.config.update("jax_compilation_cache_dir", "/path/to/cache")``. JAX
  does not cache programs with host callbacks: solves with ``--iprint`` (and
  ``demo``, which prints the iprint table) compile every time.
  """
  import os

  import jax

  if jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  folder = os.environ.get("JAX_LBFGSB_CACHE_DIR")
  if folder is None:
    folder = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jax_lbfgsb")
  if not folder:
    return None
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # the solves, not small ops
  return folder


class _ClosedPipeSafe:
  """A text stream whose reader may go away (``jax-lbfgsb ... | head``): from the first
  BrokenPipeError on, output is dropped quietly and the file descriptor points at os.devnull
  (so that Python's flush at exit does not fail either). Writes from JAX's callback thread
  (``--iprint``) go through it too, as they use ``sys.stdout``."""

  def __init__(self, stream):
    self.stream = stream
    self.closed_pipe = False

  def write(self, text: str) -> int:
    if not self.closed_pipe:
      try:
        return self.stream.write(text)
      except BrokenPipeError:
        self._drop()
    return len(text)

  def flush(self) -> None:
    if not self.closed_pipe:
      try:
        self.stream.flush()
      except BrokenPipeError:
        self._drop()

  def _drop(self) -> None:
    self.closed_pipe = True
    with contextlib.suppress(OSError, ValueError, AttributeError):
      devnull = os.open(os.devnull, os.O_WRONLY)
      os.dup2(devnull, self.stream.fileno())
      os.close(devnull)

  def __getattr__(self, name):
    return getattr(self.stream, name)


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``jax-lbfgsb`` console script; returns the exit status (141: stdout closed)."""
  streams = sys.stdout, sys.stderr
  sys.stdout, sys.stderr = out, err = _ClosedPipeSafe(sys.stdout), _ClosedPipeSafe(sys.stderr)
  try:
    args = _parser().parse_args(_glue_negative_vectors(sys.argv[1:] if argv is None else argv))
    if args.command not in ("list", "page"):  # the page's workers keep a cache of their own
      _compilation_cache()
    status = args.func(args.parser, args)
  finally:
    out.flush()
    err.flush()
    sys.stdout, sys.stderr = streams
  return 141 if out.closed_pipe else status


if __name__ == "__main__":
  sys.exit(main())
