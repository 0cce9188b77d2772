"""Benchmark jax_lbfgsb.minimize against scipy.optimize.minimize(method="L-BFGS-B").

Usage (from the repository root)::

    python benchmarks/run.py            # all problems, writes benchmarks/RESULTS.md
    python benchmarks/run.py --quick    # small problems, < 2 min, writes RESULTS_quick.md
    python benchmarks/run.py --out FILE --repeats 5 --only ept

Both solvers run in float64 with the same options (SciPy's defaults unless
changed) on the problems of :mod:`jax_lbfgsb.problems`. SciPy gets ``f`` and
``g`` from a jitted ``jax.value_and_grad(fun)`` converted to NumPy float64, so
both sides use the same objective code. For ours the script reports the first
call (compile + run) and the steady-state time (median of ``--repeats`` runs
after one warm-up, each ended with ``.block_until_ready()``); for SciPy the
median of ``--repeats`` runs after one warm-up (so the jit of ``value_and_grad``
is not timed). The ratio ours/SciPy uses the steady-state times of one run of
this script.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple

# SciPy's L-BFGS-B makes many tiny BLAS calls. With OpenBLAS's thread pool
# competing against XLA's on a few cores, measured SciPy times were 5-20x slower
# (helical valley: 2.7 ms with 1 thread, 12-64 ms with the default). Pin BLAS to
# one thread unless the caller chose otherwise; the report records the setting.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from jax_lbfgsb import minimize as _minimize  # noqa: E402
from jax_lbfgsb import problems  # noqa: E402


# (label, factory, kwargs, in --quick)
CASES: list[tuple[str, Callable[..., Any], dict, bool]] = [
    ("Rosenbrock", problems.rosenbrock, {"n": 2}, True),
    ("Rosenbrock box [-1.5, 0.8]", problems.rosenbrock,
     {"n": 10, "lower": -1.5, "upper": 0.8}, True),
    ("driver1", problems.driver1, {"n": 25}, True),
    ("Helical valley", problems.helical_valley, {}, True),
    ("Box 3-D", problems.box_3d, {}, False),
    ("Watson", problems.watson, {"n": 6}, True),
    ("Brown badly scaled", problems.brown_badly_scaled, {}, True),
    ("Extended Powell", problems.extended_powell, {"n": 12}, False),
    ("Wood", problems.wood, {}, True),
    ("Chebyquad", problems.chebyquad, {"n": 8}, True),
    ("EPT 50x50", problems.ept, {"nx": 50, "ny": 50}, False),
    ("EPT 100x100", problems.ept, {"nx": 100, "ny": 100}, False),
    ("PJB 50x50", problems.pjb, {"nx": 50, "ny": 50}, False),
    ("PJB 100x100", problems.pjb, {"nx": 100, "ny": 100}, False),
    ("NNLS 2000x1000", problems.nnls, {"m": 2000, "n": 1000}, False),
]


class Run(NamedTuple):
  nit: int | None = None
  nfev: int | None = None
  f: float | None = None
  status: int | None = None
  first_s: float | None = None  # ours only: first call, compile + run
  time_s: float | None = None  # steady state, median
  error: str | None = None


def _median_time(call: Callable[[], Any], repeats: int, min_total: float = 0.5,
                 max_repeats: int = 100) -> tuple[float, Any]:
  """Median wall time of ``call()``: at least ``repeats`` runs, more (up to
  ``max_repeats``) until ``min_total`` seconds have been spent, so that
  millisecond-scale solves are not timed from three noisy samples."""
  times, out = [], None
  while len(times) < repeats or (sum(times) < min_total and len(times) < max_repeats):
    t0 = time.perf_counter()
    out = call()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), out


def run_ours(p, options: dict, repeats: int) -> Run:
  x0 = jnp.asarray(p.x0, dtype=jnp.float64)
  bounds = (p.lower, p.upper)

  def call():
    res = _minimize(p.fun, x0, bounds=bounds, **options)
    res.x.block_until_ready()
    return res

  try:
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    call()  # warm-up
    steady, res = _median_time(call, repeats)
  except Exception as exc:
    traceback.print_exc()
    return Run(error=f"{type(exc).__name__}: {exc}")
  return Run(nit=int(res.nit), nfev=int(res.nfev), f=float(res.fun), status=int(res.status),
             first_s=first, time_s=steady)


def run_scipy(p, options: dict, repeats: int) -> Run:
  value_and_grad = jax.jit(jax.value_and_grad(p.fun))

  def fun_and_grad(x):
    f, g = value_and_grad(jnp.asarray(x, dtype=jnp.float64))
    return float(f), np.asarray(g, dtype=np.float64)

  bounds = scipy.optimize.Bounds(p.lower, p.upper)

  def call():
    return scipy.optimize.minimize(fun_and_grad, p.x0, jac=True, method="L-BFGS-B",
                                   bounds=bounds, options=options)

  try:
    call()  # warm-up, compiles value_and_grad
    steady, res = _median_time(call, repeats)
  except Exception as exc:
    traceback.print_exc()
    return Run(error=f"{type(exc).__name__}: {exc}")
  return Run(nit=int(res.nit), nfev=int(res.nfev), f=float(res.fun), status=int(res.status),
             time_s=steady)


def _fmt_counts(r: Run) -> str:
  return "n/a" if r.error else f"{r.nit} / {r.nfev}"


def _fmt_f(r: Run) -> str:
  return "n/a" if r.error else f"{r.f:.10g}"


def _fmt_s(t: float | None) -> str:
  if t is None:
    return "n/a"
  return f"{t:.3g}" if t >= 1e-3 else f"{t:.2e}"


def _ratio(ours: Run, ref: Run) -> float | None:
  if ours.error or ref.error or not ours.time_s or not ref.time_s:
    return None
  return ours.time_s / ref.time_s


def machine_info() -> list[str]:
  try:
    import jaxlib

    jaxlib_version = jaxlib.__version__
  except Exception:
    jaxlib_version = "?"
  devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
  return [
      f"- Platform: {platform.platform()}; "
      f"processor: {platform.processor() or platform.machine()}; "
      f"os.cpu_count(): {os.cpu_count()}",
      f"- Python {platform.python_version()}; jax {jax.__version__}; jaxlib {jaxlib_version}; "
      f"scipy {scipy.__version__}; numpy {np.__version__}",
      f"- JAX default backend: {jax.default_backend()} ({devices}); x64 enabled",
      f"- OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')} "
      f"(the script pins BLAS to 1 thread unless set: SciPy's tiny BLAS calls otherwise "
      f"contend with XLA's threads)",
  ]


def build_report(rows, command: str, options: dict, repeats: int, elapsed: float) -> str:
  header = ("| problem | n | ours nit / nfev | SciPy nit / nfev | same counts | ours f | SciPy f "
            "| ours / SciPy status | first call s (compile + run) | ours s | SciPy s "
            "| ratio ours/SciPy |")
  lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
  ratios = []
  for label, p, ours, ref in rows:
    ratio = _ratio(ours, ref)
    if ratio is not None:
      ratios.append(ratio)
    if ours.error or ref.error:
      same = "n/a"
    else:
      same = "yes" if (ours.nit, ours.nfev) == (ref.nit, ref.nfev) else "no"
    status = f"{'n/a' if ours.error else ours.status} / {'n/a' if ref.error else ref.status}"
    lines.append(
        f"| {label} | {p.x0.size} | {_fmt_counts(ours)} | {_fmt_counts(ref)} | {same} "
        f"| {_fmt_f(ours)} | {_fmt_f(ref)} | {status} | {_fmt_s(ours.first_s)} "
        f"| {_fmt_s(ours.time_s)} | {_fmt_s(ref.time_s)} "
        f"| {'n/a' if ratio is None else f'{ratio:.3g}'} |"
    )
  gmean = math.exp(statistics.fmean(math.log(r) for r in ratios)) if ratios else None
  table = "\n".join(lines)
  summary = (f"Geometric-mean ratio ours/SciPy (steady state) over {len(ratios)} problems: "
             + ("n/a" if gmean is None else f"**{gmean:.3g}**"))
  errors = [f"- {label}: ours: {ours.error}" for label, _, ours, _ in rows if ours.error]
  errors += [f"- {label}: SciPy: {ref.error}" for label, _, _, ref in rows if ref.error]
  opts = ", ".join(f"{k}={v}" for k, v in options.items())
  parts = [
      "# jax_lbfgsb vs SciPy L-BFGS-B benchmark",
      "",
      "Command:",
      "",
      "```",
      command,
      "```",
      "",
      f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
      *machine_info(),
      f"- Options (both solvers): {opts}; float64; timed runs per solver: at least {repeats}, "
      f"more until 0.5 s is spent (at most 100); total run {elapsed:.0f} s",
      "",
      "Ours: `jax_lbfgsb.minimize(fun, x0, bounds=(lower, upper))`, jitted internally. "
      "\"first call\" is compile + run; \"ours s\" is the median of the steady-state calls "
      "after one warm-up, each ended with `res.x.block_until_ready()`. "
      "SciPy: `scipy.optimize.minimize(fun_and_grad, x0, jac=True, method=\"L-BFGS-B\")` "
      "with `fun_and_grad` a jitted `jax.value_and_grad(fun)` returning NumPy float64; "
      "median after one warm-up. Status is SciPy's 0 converged / 1 limit / 2 other. "
      "Ratios are measured in the same run of this script on the same machine; "
      "they are not comparable across machines.",
      "",
      table,
      "",
      summary,
  ]
  if errors:
    parts += ["", "Errors:", "", *errors]
  return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="small problems only (< 2 min)")
  parser.add_argument("--out", default=None,
                      help="markdown output (default benchmarks/RESULTS.md; "
                           "benchmarks/RESULTS_quick.md with --quick)")
  parser.add_argument("--repeats", type=int, default=3,
                      help="timed runs per solver and problem (>= 1)")
  parser.add_argument("--only", default=None,
                      help="run only problems whose label contains this text")
  parser.add_argument("--maxcor", type=int, default=10)
  parser.add_argument("--ftol", type=float, default=2.220446049250313e-09)
  parser.add_argument("--gtol", type=float, default=1e-05)
  args = parser.parse_args(argv)
  if args.repeats < 1:
    parser.error("--repeats must be >= 1")
  default_out = ROOT / "benchmarks" / ("RESULTS_quick.md" if args.quick else "RESULTS.md")
  out = Path(args.out) if args.out else default_out
  options = dict(maxcor=args.maxcor, ftol=args.ftol, gtol=args.gtol,
                 maxiter=15000, maxfun=15000, maxls=20)
  argv_used = sys.argv[1:] if argv is None else argv
  command = " ".join(["python benchmarks/run.py", *map(shlex.quote, argv_used)])

  cases = [c for c in CASES
           if (c[3] or not args.quick) and (args.only is None or args.only.lower() in c[0].lower())]
  start = time.perf_counter()
  rows = []
  for label, factory, kwargs, _ in cases:
    p = factory(**kwargs)
    print(f"{label} (n={p.x0.size}) ...", end=" ", flush=True, file=sys.stderr)
    ours = run_ours(p, options, args.repeats)
    ref = run_scipy(p, options, args.repeats)
    rows.append((label, p, ours, ref))
    print(f"ours {_fmt_counts(ours)} {_fmt_s(ours.time_s)} s, "
          f"SciPy {_fmt_counts(ref)} {_fmt_s(ref.time_s)} s",
          file=sys.stderr)
  report = build_report(rows, command, options, args.repeats, time.perf_counter() - start)
  print(report)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(report)
  print(f"wrote {out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
