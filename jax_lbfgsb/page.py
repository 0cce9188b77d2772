"""The interactive L-BFGS-B page as a local web page: ``jax-lbfgsb page``.

::

  jax-lbfgsb page [--host 127.0.0.1] [--port 8765] [--open] [--workers 2] [--time-limit 60]

``GET /`` is the input form: the 14 functions of the classic page (and the
other predefined problems of ``jax-lbfgsb list``) with their descriptions and
sizes, or your own ``f(x(1..n))`` in the safe language of
:mod:`jax_lbfgsb.expr`; ``x0``; ``eps``, ``delta``, ``kappa``, ``m`` and
``iprint``; two variables and a radius for the contour plot. ``GET /solve``
answers with the results page (CPU and wall time, the termination reason,
f, x, the gradient, nit and nfev, the two half-log plots, the contour plot,
the iprint text) below the form, still filled in; ``GET /solve.json`` with
what ``jax-lbfgsb solve --preset page --json`` prints for the same fields.
Query parameters: ``function`` (a name or number of ``jax-lbfgsb list``, or
``expr``), ``expr``, ``n``, ``x0``, ``eps``, ``delta``, ``kappa``, ``m``,
``iprint``, ``contour`` (``i,j``, empty for none) and ``radius``; a blank
one takes the page preset's default (:data:`DEFAULTS` fills the form).

The fields go through the command's own input layer
(:func:`jax_lbfgsb.cli.problem_from`, :func:`~jax_lbfgsb.cli.options_from`,
:func:`~jax_lbfgsb.cli.contour_from`), so the page and ``jax-lbfgsb solve
NAME --preset page`` solve the same problem with the same options. Bad input
gets HTTP 400 and the :class:`~jax_lbfgsb._options.FieldError` message naming the
field and its rule.

Limits, so that one request cannot take the machine: at most
:data:`MAX_N` variables, ``m <=`` :data:`MAX_M`, an expression of at most
:data:`MAX_EXPR` characters, the page preset's ``maxiter`` 4000 and
``maxfun`` 40000, and a wall-clock limit per solve (``--time-limit``, 60 s;
compilation included). Solves run in separate worker processes (``--workers``,
two), never on the request thread: the page answers while they run, and a
solve past its limit is stopped by ending its process (a new one takes its
place). A worker keeps its compiled solves, so solving the same function again
skips compilation; workers share a JAX compilation cache in the page's
temporary folder, the only place anything is written. User text is parsed by
:mod:`jax_lbfgsb.expr`, never evaluated as Python.

Host-side only: Flask (the ``page`` extra) is imported by :func:`create_app`
alone; the workers and the jitted path never import it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import webbrowser
from pathlib import Path
from typing import Any, Mapping

from jax_lbfgsb import cli

__all__ = ["DEFAULTS", "FIELDS", "Solver", "create_app", "inputs", "serve"]

MAX_N = 1000  # variables
MAX_M = 20  # correction pairs kept
MAX_EXPR = 2000  # characters of an expression
MAX_FIELD = 20000  # characters of any other field (x0 of MAX_N values)
MAX_IPRINT = 200_000  # characters of iprint text kept
TIME_LIMIT = 60.0  # seconds of wall clock per solve, compilation included
OWN = "expr"  # the `function` that means: solve the expression
FIELDS = ("function", "expr", "n", "x0", "eps", "delta", "kappa", "m", "iprint", "contour", "radius")
# The form as first shown: the page preset's values (m blank: min(n/2 + 1, 10)).
DEFAULTS = {"function": "helical_valley", "expr": "", "n": "", "x0": "", "eps": "1e-07", "delta": "0.01",
            "kappa": "0.9", "m": "", "iprint": "0", "contour": "1,2", "radius": "1"}
# What a blank field means (the form's placeholders).
BLANK = {"n": "the function's own", "x0": "the function's own", "eps": "1e-07", "delta": "0.01", "kappa": "0.9",
         "m": "min(n/2+1, 10)", "iprint": "-1", "contour": "none", "radius": "1"}
RULES = {
    "function": "a name or number from the list, or expr for your own f below",
    "expr": f"your own f(x(1..n)), at most {MAX_EXPR} characters (see the accepted forms)",
    "n": f"number of variables, 1..{MAX_N}; blank: the function's own (for expr: the count of x0, else the"
         " largest index)",
    "x0": "start: v1,...,vn or one value for all; blank: the function's own (zeros for expr)",
    "eps": "stop when ||proj g||_2 <= eps (1 + |f|) or ||x - x_prev||_2 <= eps (||x||_2 + 1); eps >= 0",
    "delta": "line search sufficient decrease; 0 < delta < kappa < 1",
    "kappa": "line search curvature; 0 < delta < kappa < 1",
    "m": f"correction pairs kept, 1..{MAX_M}; blank: min(n/2 + 1, 10)",
    "iprint": "Fortran progress output: -1 none, 0 summary, k every k iterations, 99 every iteration",
    "contour": "two variables i,j (1-based) for the contour plot around the best point; blank: no contour",
    "radius": "half-width of the contour window; > 0",
}


def _number(text: Mapping[str, str], field: str, kind: type, default: Any = None) -> Any:
  """The field as an int or float; blank: ``default``."""
  if not text[field]:
    return default
  try:
    return kind(text[field])
  except ValueError:
    what = "an integer" if kind is int else "a number"
    raise cli.FieldError(field, "{%s}: expected %s, got {0!r}" % (field, what), text[field]) from None


def inputs(fields: Mapping[str, str]):
  """The problem, ``minimize`` options and contour ``(i, j, radius)`` (or None) of the page's fields.

  ``fields`` maps the names of :data:`FIELDS` to text; a missing or blank one
  takes its default. The page preset applies, as ``jax-lbfgsb solve --preset page``.

  Raises:
    jax_lbfgsb._options.FieldError: naming the field and its rule.

  Example:
    >>> p, options, contour = inputs({"function": "rosenbrock", "x0": "-1.2,1", "contour": "1,2"})
    >>> p.name, options["maxcor"], options["pgtol_rel"], contour
    ('rosenbrock_2', 2, 1e-07, (1, 2, 1.0))
    >>> inputs({"function": "rosenbrock", "delta": "0.95"})
    Traceback (most recent call last):
    ...
    jax_lbfgsb._options.FieldError: delta and kappa must satisfy 0 < delta < kappa < 1; got 0.95, 0.9
  """
  text = {field: str(fields.get(field) or "").strip() for field in FIELDS}
  for field, value in text.items():
    limit = MAX_EXPR if field == "expr" else MAX_FIELD
    if len(value) > limit:
      raise cli.FieldError(field, "{%s} must be at most {0} characters here, got {1}" % field, limit, len(value))
  function, expr = text["function"] or None, text["expr"] or None
  if function == OWN or (function is None and expr is not None):
    if expr is None:
      raise cli.FieldError("expr", "{expr}: type your own f(x(1..n)), e.g. (1-x(1))^2 + 100*(x(2)-x(1)^2)^2")
    function = None
  elif function is None:
    raise cli.FieldError("function", "{function}: choose a function, or %s and type your own f" % OWN)
  else:
    expr = None
  p = cli.problem_from(function, expr, n=_number(text, "n", int), x0=text["x0"] or None, max_n=MAX_N)
  m = _number(text, "m", int)
  if m is not None and m > MAX_M:
    raise cli.FieldError("m", "{m} must be <= {0} here, got {1}", MAX_M, m)
  floats = {field: _number(text, field, float) for field in ("eps", "delta", "kappa")}
  options = cli.options_from("page", p.x0.size, _number(text, "iprint", int, -1), m=m, **floats)
  contour = None
  if text["contour"]:
    try:
      i, j = (int(v) for v in text["contour"].split(","))
    except ValueError:
      raise cli.FieldError("contour", "{contour}: expected two indices i,j such as 1,2, got {0!r}",
                           text["contour"]) from None
    contour = cli.contour_from((i, j), _number(text, "radius", float, 1.0), p.x0.size)
  return p, options, contour


def message(err: cli.FieldError) -> str:
  """The error's text, starting with the field's name."""
  text = str(err)
  return text if text.startswith(err.field) else f"{err.field}: {text}"


class _Capped(io.StringIO):
  """A text stream that keeps its first ``limit`` characters and says how many more it dropped."""

  def __init__(self, limit: int):
    super().__init__()
    self.limit, self.dropped = limit, 0

  def write(self, text: str) -> int:
    room = max(self.limit - self.tell(), 0)
    self.dropped += max(len(text) - room, 0)
    return super().write(text[:room]) + max(len(text) - room, 0)

  def text(self) -> str:
    more = f"\n... ({self.dropped} more characters not kept)\n" if self.dropped else ""
    return self.getvalue() + more


def _answer(job: Mapping, folder: str) -> dict:
  """A worker's reply to one job: ``{"result", "problem", "iprint", "report", "images"}``, or
  ``{"error", "field"}`` for bad input (HTTP 400), or ``{"error", "status"}``."""
  from jax_lbfgsb.report import diagnose, report

  try:
    p, options, contour = inputs(job["fields"])
    iprint = _Capped(MAX_IPRINT)
    result, timing = cli._run(p, options, iprint_to=iprint, progress=False)
    notes = diagnose(result, p.lower, p.upper, p.x0)
    images = {}
    if job["plots"]:
      with tempfile.TemporaryDirectory(dir=folder) as plots:
        for path in map(Path, cli._plots(p, result, plots, contour)):
          images[path.stem] = base64.b64encode(path.read_bytes()).decode("ascii")
  except cli.FieldError as err:
    return {"error": message(err), "field": err.field}
  except Exception as err:  # a solve that fails says why, and the worker goes on
    return {"error": f"the solve failed: {type(err).__name__}: {err}", "status": 500}
  return {
      "result": cli.result_dict(p, result, timing, notes, []), "iprint": iprint.text(), "images": images,
      "problem": {"name": p.name, "description": p.description, "n": int(p.x0.size),
                  "f_opt": None if p.f_opt is None else float(p.f_opt)},
      "report": report(result, problem=p, timing=timing, max_rows=40),
  }


def _worker(fd: int, folder: str) -> None:
  """A solving process: answers the jobs that come on the socket ``fd`` until it closes."""
  from multiprocessing.connection import Connection

  conn = Connection(fd)
  while True:
    try:
      job = conn.recv()
    except (EOFError, OSError):
      return
    conn.send(_answer(job, folder))


class _Process:
  """A worker process and the server's end of its socket.

  A fresh interpreter (``subprocess``, not ``multiprocessing``: no fork of a
  process that runs JAX's threads, and no re-import of the caller's main
  module), in a session of its own so that Ctrl-C reaches the server alone,
  which ends the workers; a worker whose server is gone reads EOF and exits.
  Its JAX compilation cache (shared by the workers) and matplotlib's font
  cache (unless ``MPLCONFIGDIR`` is set) are in ``folder``.
  """

  def __init__(self, folder: str):
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    package_root = str(Path(cli.__file__).resolve().parents[1])  # this jax_lbfgsb, installed or not
    env = {"MPLCONFIGDIR": os.path.join(folder, "matplotlib"), **os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
           "JAX_COMPILATION_CACHE_DIR": os.path.join(folder, "compiled"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}  # the solves, not small ops
    code = f"from jax_lbfgsb.page import _worker; _worker({theirs.fileno()}, {folder!r})"
    with theirs:
      self.process = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()], env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
    self.conn = Connection(ours.detach())

  def ask(self, job: Mapping, timeout: float) -> dict | None:
    """The worker's reply, or None when it took longer than ``timeout`` seconds."""
    self.conn.send(job)
    return self.conn.recv() if self.conn.poll(timeout) else None

  def alive(self) -> bool:
    return self.process.poll() is None

  def stop(self) -> None:
    self.process.kill()
    self.process.wait()
    self.conn.close()


class Solver:
  """Solves the page's fields in ``workers`` processes, each solve under a wall-clock limit.

  :meth:`solve` waits for a free worker (at most ``time_limit`` seconds), hands
  it the job and waits at most ``time_limit`` seconds for the reply; a worker
  past the limit is ended and replaced. The most recently used free worker
  goes first, so a repeated solve finds its compiled program. Everything is
  written in :attr:`folder`, a temporary folder that :meth:`close` removes.
  """

  def __init__(self, workers: int = 2, time_limit: float = TIME_LIMIT):
    if workers < 1 or not time_limit > 0:
      raise ValueError(f"Solver: need workers >= 1 and time_limit > 0; got {workers}, {time_limit}")
    self.time_limit, self.workers = float(time_limit), workers
    self._temp = tempfile.TemporaryDirectory(prefix="jax_lbfgsb_page_")
    self.folder = self._temp.name
    self._lock = threading.Lock()
    self._running: set[_Process] = set()
    self._idle: queue.LifoQueue = queue.LifoQueue()
    self._closed = False
    for _ in range(workers):
      self._idle.put(self._start())

  def _start(self) -> _Process:
    with self._lock:
      if self._closed:
        raise RuntimeError("Solver: closed")
      worker = _Process(self.folder)
      self._running.add(worker)
      return worker

  def _stop(self, worker: _Process) -> None:
    with self._lock:
      self._running.discard(worker)
    worker.stop()

  def solve(self, fields: Mapping[str, str], plots: bool = True) -> dict:
    """A worker's reply for ``fields`` (see :func:`_answer`); ``{"error", "status"}`` when no
    worker was free in time (503), the solve passed the time limit (504) or its process died (500)."""
    try:
      worker = self._idle.get(timeout=self.time_limit)
    except queue.Empty:
      return {"error": f"all {self.workers} solving processes stayed busy for {self.time_limit:g} s;"
                       " try again in a moment", "status": 503}
    reply = None
    try:
      reply = worker.ask({"fields": {key: fields.get(key, "") for key in FIELDS}, "plots": plots}, self.time_limit)
      if reply is None:
        reply = {"error": f"the solve took longer than the time limit of {self.time_limit:g} s (compilation"
                          " included) and was stopped; try fewer variables or a larger eps", "status": 504}
    except (EOFError, OSError):
      reply = {"error": "the solving process ended unexpectedly (out of memory?); a new one was started",
               "status": 500}
    finally:
      if reply is None or reply.get("status") == 504 or not worker.alive():
        self._stop(worker)
        with contextlib.suppress(RuntimeError):
          worker = self._start()
      if not self._closed:
        self._idle.put(worker)
    return reply

  def close(self) -> None:
    """Ends the workers and removes the temporary folder."""
    with self._lock:
      self._closed = True
      workers, self._running = list(self._running), set()
    for worker in workers:
      worker.stop()
    self._temp.cleanup()


def _grammar() -> str:
  """The accepted forms of an expression: the grammar and the paragraph on sums of :mod:`jax_lbfgsb.expr`."""
  from jax_lbfgsb import expr

  doc = expr.__doc__
  start = doc.index("::\n", doc.index("Grammar")) + 3
  end = doc.index("\n\n", doc.index("``sum(body", start))
  grammar, sums = doc[start:end].strip("\n").split("\n\n", 1)
  return textwrap.dedent(grammar) + "\n\n" + textwrap.fill(" ".join(sums.replace("``", "").split()), 78)


def _functions() -> list[dict]:
  """The rows of ``jax-lbfgsb list``: number, name, n, f*, description, whether one of the page's 14."""
  from jax_lbfgsb import problems

  rows = []
  for number, name in enumerate(cli._catalog(), start=1):
    p = problems.get(name, **cli._DEFAULT_PARAMS.get(name, {}))
    rows.append({"number": number, "name": name, "n": int(p.x0.size), "description": p.description,
                 "f_opt": "unknown" if p.f_opt is None else f"{p.f_opt:.6g}", "page": name in problems.CORE14})
  return rows


def create_app(workers: int = 2, time_limit: float = TIME_LIMIT):
  """The Flask app of the page; ``app.extensions["jax_lbfgsb"]`` is its :class:`Solver`, which
  the caller closes (:func:`serve` does) to end the workers and remove the temporary folder."""
  from flask import Flask, Response, render_template, request

  app = Flask(__name__)
  solver = Solver(workers, time_limit)
  app.extensions["jax_lbfgsb"] = solver
  shown = {"functions": _functions(), "grammar": _grammar(), "rules": RULES, "blank": BLANK, "own": OWN,
           "limits": {"n": MAX_N, "m": MAX_M, "expr": MAX_EXPR, "time": time_limit, "workers": workers}}

  def fields() -> dict:
    return {key: request.args.get(key, "") for key in FIELDS}

  @app.get("/")
  def form():
    return render_template("page.html", form=DEFAULTS, reply=None, **shown)

  @app.get("/favicon.ico")
  def favicon():
    return "", 204

  @app.get("/solve")
  def solve():
    given = fields()
    reply = solver.solve(given)
    status = reply.get("status", 400 if "field" in reply else 200)
    return render_template("page.html", form=given, reply=reply, query=request.query_string.decode(), **shown), status

  @app.get("/solve.json")
  def solve_json():
    reply = solver.solve(fields(), plots=False)
    if "result" in reply:
      return Response(json.dumps(reply["result"], indent=2), mimetype="application/json")
    body = {"error": reply["error"], "field": reply.get("field")}
    return Response(json.dumps(body, indent=2), status=reply.get("status", 400), mimetype="application/json")

  return app


def serve(host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False, workers: int = 2,
          time_limit: float = TIME_LIMIT) -> None:
  """Serves the page on ``http://host:port/`` until Ctrl-C or SIGTERM (threaded: the page answers
  while solves run); then ends the workers and removes the temporary folder."""
  from werkzeug.serving import make_server

  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: stop cleanly
  app = create_app(workers, time_limit)
  try:
    server = make_server(host, port, app, threaded=True)
    url = f"http://{f'[{host}]' if ':' in host else host}:{server.server_port}/"
    print(f"jax-lbfgsb page on {url} (Ctrl-C stops it)", flush=True)
    if open_browser:
      webbrowser.open(url)
    server.serve_forever()  # returns on Ctrl-C
  finally:
    app.extensions["jax_lbfgsb"].close()
  print("jax-lbfgsb page stopped", file=sys.stderr)
