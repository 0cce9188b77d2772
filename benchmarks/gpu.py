"""The whole device check in one command: large MINPACK-2 problems on an accelerator, then the tests.

Usage (from the repository root; no install step needed)::

    PYTHONPATH=. python benchmarks/gpu.py --out OUT          # on the device machine, <= 8 min
    PYTHONPATH=. python benchmarks/gpu.py --smoke --out /tmp/g   # same code paths, tiny sizes, CPU, < 2 min

For EPT, PJB and MSA over a plate at n = 10^4, 10^5 and 10^6 (grids 100x100,
316x316, 1000x1000), in float64 and float32, it runs (issue 15):

- ours: ``jax_lbfgsb.minimize`` with SciPy's defaults (first call = compile +
  run, then the median of steady runs);
- jaxopt.LBFGSB (when installed; its ``tol`` is SciPy's ``gtol``, no ftol test);
- optax.lbfgs on the *unbounded* variant of the problem (it has no bounds),
  stopped by SciPy's two tests;
- SciPy's L-BFGS-B on the host CPU, float64, stopped after ``--scipy-cap``
  seconds (time per iteration from the iterations it made), its objective the
  jitted ``value_and_grad`` called on NumPy arrays (``run.jax_fun_and_grad``).

Per row: nit, nfev, f re-evaluated in float64 and its distance to the
reference (the published f* where known, else SciPy's converged f), the first
call, the steady time per solve, per iteration, per iteration beyond f+g, the
bound violation and the device. Then the test suite once on the device
(``pytest -q -x`` with a time cap). Writes ``RESULTS_gpu.md`` and
``RESULTS_gpu.json`` into ``--out``; a global ``--budget`` skips the rows left
when time runs out (with a note), so the command always finishes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (sets float64 on, pins BLAS threads)

jax, np = bench.jax, bench.np
problems, ROOT = bench.problems, bench.ROOT

FULL_GRIDS = (1000, 316, 100)  # largest first: the targets are at n = 10^6
SMOKE_GRIDS = (12,)
DTYPES = (np.float64, np.float32)
OPTS = dict(maxcor=10, ftol=2.220446049250313e-09, gtol=1e-5, maxiter=15000, maxfun=15000, maxls=20)


def _problem(name: str, k: int):
  if name == "EPT":
    return problems.ept(k, k)
  if name == "PJB":
    return problems.pjb(k, k)
  return problems.msa(k, k, bmx=k // 2, bmy=k // 2, height=0.1)


def _unbounded(p):
  return p._replace(lower=np.full_like(p.lower, -np.inf), upper=np.full_like(p.upper, np.inf))


def run_scipy_capped(q, fun_and_grad, cap_s: float):
  """SciPy's L-BFGS-B in float64 on the host, stopped after ``cap_s`` seconds."""
  fun_and_grad(q.x0)  # compile outside the timing
  t0 = time.perf_counter()

  def stop_at_cap(intermediate_result):
    if time.perf_counter() - t0 > cap_s:
      raise StopIteration

  res = bench.scipy.optimize.minimize(
      fun_and_grad, q.x0.astype(np.float64), jac=True, method="L-BFGS-B",
      bounds=bench.scipy.optimize.Bounds(q.p.lower, q.p.upper), callback=stop_at_cap,
      options={k: OPTS[k] for k in ("maxcor", "ftol", "gtol", "maxiter", "maxfun", "maxls")})
  wall = time.perf_counter() - t0
  f, projg, violation = bench._quality(q, res.x)
  stop = "capped" if res.status == 99 else ("converged", "limit", "other")[min(int(res.status), 2)]
  return bench.Run(int(res.nit), int(res.nfev), f, projg, violation, stop, None, wall)


def _row(problem, k, dtype, solver, r, t_fg, f_ref) -> dict:
  per_iter = r.time_s / r.nit if r.nit and r.time_s is not None else None
  beyond = (r.time_s - r.nfev * t_fg) / r.nit if per_iter is not None and t_fg is not None else None
  return dict(
      problem=problem, n=k * k, grid=f"{k}x{k}", dtype=np.dtype(dtype).name, solver=solver, nit=r.nit,
      nfev=r.nfev, f=r.f, df=None if r.f is None or f_ref is None else r.f - f_ref, first_s=r.first_s,
      solve_s=r.time_s, ms_per_iter=None if per_iter is None else per_iter * 1e3,
      ms_beyond_fg=None if beyond is None else beyond * 1e3, violation=r.violation, stop=r.stop, error=r.error,
  )


def benchmark(grids, budget_s: float, scipy_cap: float, repeats: int, notes: list) -> list[dict]:
  rows, start = [], time.perf_counter()
  for k in grids:
    for name in ("EPT", "PJB", "MSA"):
      p = _problem(name, k)
      scipy_f = None
      for dtype in DTYPES:
        if time.perf_counter() - start > budget_s:
          notes.append(f"budget of {budget_s:.0f} s spent: skipped {name} {k}x{k} {np.dtype(dtype).name}")
          continue
        q = bench._prepare(p, dtype)
        t_fg = bench.fg_loop_time(q, loops=10)
        if dtype == np.float64:  # SciPy once per problem, in float64
          fun_and_grad = bench.jax_fun_and_grad(p.fun)
          scipy = run_scipy_capped(q, fun_and_grad, scipy_cap)
          scipy_f = scipy.f if scipy.stop == "converged" else None
        f_ref = p.f_opt if p.f_opt is not None else scipy_f
        ours = bench.run_ours(q, OPTS, repeats)
        rows.append(_row(name, k, dtype, "ours", ours, t_fg, f_ref))
        if bench.jaxopt is not None and ours.nit:
          jaxopt_run = bench.run_jaxopt(q, OPTS, repeats, bench.JAXOPT_ITER_FACTOR * ours.nit + 100)
          rows.append(_row(name, k, dtype, "jaxopt", jaxopt_run, t_fg, f_ref))
        optax_run = bench.run_optax(bench._prepare(_unbounded(p), dtype), OPTS, repeats)
        rows.append(_row(name, k, dtype, "optax (unbounded)", optax_run, t_fg, None))
        if dtype == np.float64:
          rows.append(_row(name, k, dtype, "SciPy (host)", scipy, bench.call_time(fun_and_grad, q.x0), f_ref))
      if bench.jaxopt is None and k == grids[0]:
        notes.append("jaxopt is not installed: its rows are skipped.")
  return rows


def run_tests(cap_s: float, smoke: bool) -> str:
  """The suite once on this device: its summary line (or why there is none)."""
  targets = ["tests/test_dcsrch.py"] if smoke else ["jax_lbfgsb", "tests"]
  cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *targets]
  try:
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=cap_s)
  except subprocess.TimeoutExpired:
    return f"`{' '.join(cmd[2:])}`: stopped at the {cap_s:.0f} s cap"
  lines = [line for line in out.stdout.splitlines() if line.strip()]
  return f"`{' '.join(cmd[2:])}` (rc {out.returncode}): {lines[-1] if lines else out.stderr[-300:]}"


def _cell(v, spec: str = ".3g") -> str:
  return "—" if v is None else (v if isinstance(v, str) else format(v, spec))


def targets(rows: list[dict]) -> list[str]:
  """Issue 15's targets at n = 10^6, where measured."""
  get = lambda **kw: [r for r in rows if all(r[k] == v for k, v in kw.items())]  # noqa: E731
  out = []
  for name in ("EPT", "PJB", "MSA"):
    ours64 = get(problem=name, n=10**6, dtype="float64", solver="ours")
    ours32 = get(problem=name, n=10**6, dtype="float32", solver="ours")
    sp = get(problem=name, n=10**6, solver="SciPy (host)")
    if not ours64:
      continue
    o = ours64[0]
    line = f"- {name} n=10^6 float64: {_cell(o['ms_per_iter'])} ms/iter (target <= 0.5)"
    if sp and sp[0]["ms_per_iter"] and o["solve_s"]:
      speedup = sp[0]["ms_per_iter"] * 1e-3 * o["nit"] / o["solve_s"]  # SciPy's rate over our nit
      line += f"; solve {speedup:.0f}x SciPy's host rate over the same nit (target >= 300)"
    if o["df"] is not None and o["f"]:
      line += f"; |f - f_ref|/|f_ref| = {abs(o['df']) / max(abs(o['f']), 1e-300):.1e} (target 1e-8)"
    if ours32 and ours32[0]["f"] is not None and o["f"]:
      line += f"; float32 f within {abs(ours32[0]['f'] - o['f']) / abs(o['f']):.1e} of float64 (target 1e-5)"
    out.append(line)
  return out or ["- n = 10^6 not measured in this run."]


def report(rows, notes, tests_line, command, elapsed) -> str:
  dev = jax.devices()[0]
  lines = [
      "# GPU benchmark (issue 15)", "",
      f"Generated by `{command}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC in"
      f" {elapsed:.0f} s. Device: {dev.platform} {dev.device_kind} ({len(jax.devices())} device(s));"
      f" jax {jax.__version__}; SciPy {bench.scipy.__version__} on the host CPU.", "",
      "f is re-evaluated in float64; df = f - f_ref (published f* where known, else SciPy's converged f);"
      " optax runs the unbounded variant (no df). Times: first call (compile + run), steady solve,"
      " per iteration, and per iteration beyond nfev/nit evaluations of f+g.", "",
      "| problem | n | dtype | solver | nit | nfev | f | df | first s | solve s | ms/iter | ms/iter beyond f+g"
      " | violation | stop |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['problem']} {r['grid']} | {r['n']} | {r['dtype']} | {r['solver']} | {_cell(r['nit'], 'd')} |"
        f" {_cell(r['nfev'], 'd')} | {_cell(r['f'], '.10g')} | {_cell(r['df'], '.1e')} | {_cell(r['first_s'])} |"
        f" {_cell(r['solve_s'])} | {_cell(r['ms_per_iter'])} | {_cell(r['ms_beyond_fg'])} |"
        f" {_cell(r['violation'], '.1e')} | {r['stop'] or r['error']} |")
  lines += ["", "## Targets", *targets(rows), "", "## Test suite on this device", "", tests_line]
  if notes:
    lines += ["", "## Notes", *(f"- {n}" for n in notes)]
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", type=Path, default=ROOT / "benchmarks", help="folder for RESULTS_gpu.md/.json")
  ap.add_argument("--smoke", action="store_true", help="tiny sizes on any backend (< 2 min), same code paths")
  ap.add_argument("--budget", type=float, default=None, help="seconds for the benchmark rows (270; smoke 60)")
  ap.add_argument("--scipy-cap", type=float, default=None, help="seconds per SciPy solve (10; smoke 2)")
  ap.add_argument("--tests-cap", type=float, default=None, help="seconds for the test suite (180; smoke 60)")
  ap.add_argument("--repeats", type=int, default=2, help="steady runs per solve after the first call")
  args = ap.parse_args(argv)
  smoke = args.smoke
  budget = args.budget if args.budget is not None else (60.0 if smoke else 270.0)
  scipy_cap = args.scipy_cap if args.scipy_cap is not None else (2.0 if smoke else 10.0)
  tests_cap = args.tests_cap if args.tests_cap is not None else (60.0 if smoke else 180.0)
  t0, notes = time.perf_counter(), []
  rows = benchmark(SMOKE_GRIDS if smoke else FULL_GRIDS, budget, scipy_cap, args.repeats, notes)
  tests_line = run_tests(tests_cap, smoke)
  command = "python benchmarks/gpu.py" + (" --smoke" if smoke else "")
  text = report(rows, notes, tests_line, command, time.perf_counter() - t0)
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "RESULTS_gpu.md").write_text(text)
  (args.out / "RESULTS_gpu.json").write_text(json.dumps(
      dict(device=str(jax.devices()[0].device_kind), rows=rows, notes=notes, tests=tests_line), indent=1))
  print(text)
  failed = [f"{r['problem']} {r['grid']} {r['dtype']} {r['solver']}: {r['error']}" for r in rows if r["error"]]
  if failed or "(rc 0)" not in tests_line:  # the results are written either way
    print("FAILED:", *failed, tests_line, sep="\n  ", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
