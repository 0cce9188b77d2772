"""Batched solves against loops of SciPy's L-BFGS-B, on a uniform and a skewed batch.

Usage (from the repository root)::

    python benchmarks/batch.py [--batch 512] [--n 10] [--repeats 5] [--lanes 8,32,64,128]
                               [--out benchmarks/RESULTS_batch.md]

Problems: bounded chained Rosenbrock functions ``sum 100 (x_{i+1} - x_i^2)^2 +
(a - x_i)^2`` with ``n`` variables and a box per problem, in two batches:

- uniform: ``--batch`` problems, ``a ~ U(0.5, 1)``, ``lower ~ U(-2, 0)`` and
  ``upper ~ U(0.25, 2)`` per variable, ``x0 ~ U(lower, upper)`` (seed 0);
- skewed: ``--batch - 1`` problems in boxes of width 0.1 around a random
  centre in ``[-1, 1]^n`` that stop within a few iterations (seed 1), and,
  last, one from the standard start ``(-1.2, 1, ...)`` with ``a = 0.5`` in
  ``[-2, 2]^n`` that needs about 75.

Solvers, all with SciPy's default options:

- SciPy loop: ``scipy.optimize.minimize(fun_and_grad, x0[i], args=(a[i],),
  jac=True, method="L-BFGS-B", bounds=Bounds(lower[i], upper[i]))`` per problem,
  ``fun_and_grad`` a jitted ``jax.value_and_grad`` called on NumPy arrays
  (``run.jax_fun_and_grad``: no device operation of its own; the reference);
- SciPy-NumPy loop: the same with f and g written in NumPy
  (``numpy_objectives.rosen_fg``);
- a loop of ``minimize`` per problem (the single solves every other solver is
  checked against);
- ``jax.jit(jax.vmap(minimize))``, with XLA:CPU's default emitters and with its
  classic ones (``compiler_options``, on CPU);
- ``jax.jit(minimize_batch)`` when ``jax_lbfgsb`` has it (classic emitters on CPU),
  with its default lane count and with each of ``--lanes``.

Each batch starts from empty caches (``jax.clear_caches()``): a warm-up round
gives every solver's first call (with compile), then ``--repeats`` rounds time
every solver once each, interleaved; steady state is their median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (x64 on, BLAS pinned, the report writer)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402

import jax_lbfgsb  # noqa: E402
import numpy_objectives  # noqa: E402
from jax_lbfgsb import minimize  # noqa: E402

# XLA:CPU compiles the solver ~2x faster with its classic emitters (same run time).
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False}
SCIPY = "SciPy loop"


def rosen_a(x, a):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (a - x[:-1]) ** 2)


class Batch(NamedTuple):
  name: str
  x0: np.ndarray  # (batch, n)
  a: np.ndarray  # (batch,)
  lower: np.ndarray  # (batch, n)
  upper: np.ndarray  # (batch, n)


def uniform_batch(batch: int, n: int) -> Batch:
  rng = np.random.default_rng(0)
  lower, upper = rng.uniform(-2.0, 0.0, (batch, n)), rng.uniform(0.25, 2.0, (batch, n))
  return Batch("uniform", rng.uniform(lower, upper), rng.uniform(0.5, 1.0, batch), lower, upper)


def skewed_batch(batch: int, n: int) -> Batch:
  rng = np.random.default_rng(1)
  centre = rng.uniform(-1.0, 1.0, (batch, n))
  lower, upper = centre - 0.05, centre + 0.05
  x0, a = rng.uniform(lower, upper), rng.uniform(0.5, 1.0, batch)
  lower[-1], upper[-1], a[-1] = -2.0, 2.0, 0.5
  x0[-1] = np.where(np.arange(n) % 2 == 0, -1.2, 1.0)
  return Batch("skewed", x0, a, lower, upper)


def _scipy_loop(fun_and_grad: Callable, b: Batch) -> list:
  return [scipy.optimize.minimize(fun_and_grad, b.x0[i], args=(b.a[i],), jac=True, method="L-BFGS-B",
                                  bounds=scipy.optimize.Bounds(b.lower[i], b.upper[i]))
          for i in range(len(b.a))]


def solvers(b: Batch, lanes: list[int]) -> tuple[dict[str, Callable[[], object]], dict[str, Callable]]:
  """The calls to time on ``b`` (each returns its results, ready) and the SciPy objectives;
  ``minimize_batch`` with its default lane count and with each of ``lanes``."""
  objectives = {SCIPY: bench.jax_fun_and_grad(rosen_a),
                "SciPy-NumPy loop": bench.numpy_fun_and_grad(numpy_objectives.rosen_fg)}
  arrays = tuple(jnp.asarray(v) for v in (b.x0, b.a, b.lower, b.upper))
  calls = {name: (lambda fg=fg: _scipy_loop(fg, b)) for name, fg in objectives.items()}
  calls["loop of minimize"] = lambda: jax.block_until_ready(
      [minimize(rosen_a, b.x0[i], args=(b.a[i],), bounds=(b.lower[i], b.upper[i])) for i in range(len(b.a))])

  def one(x0, a, lo, hi):
    return minimize(rosen_a, x0, args=(a,), bounds=(lo, hi))

  def add(name, fun, **jit_options):
    solve = jax.jit(fun, **jit_options)
    calls[name] = lambda: jax.block_until_ready(solve(*arrays))

  cpu = jax.default_backend() == "cpu"
  add("jit(vmap(minimize))", jax.vmap(one))
  if cpu:
    add(f"jit(vmap(minimize)), compiler_options={FAST_COMPILE}", jax.vmap(one), compiler_options=FAST_COMPILE)
  if hasattr(jax_lbfgsb, "minimize_batch"):
    for count in [None, *lanes]:
      add("jit(minimize_batch" + (f", lanes={count})" if count else ")")
          + (f", compiler_options={FAST_COMPILE}" if cpu and not count else ""),
          lambda x0, a, lo, hi, count=count: jax_lbfgsb.minimize_batch(rosen_a, x0, args=(a,), bounds=(lo, hi),
                                                                        lanes=count),
          compiler_options=FAST_COMPILE if cpu else None)
  return calls, objectives


def time_interleaved(calls: dict[str, Callable[[], object]], repeats: int):
  """First call of each, then ``repeats`` rounds timing each once: (first s, median s, results) by name."""
  first, out = {}, {}
  for name, call in calls.items():
    t0 = time.perf_counter()
    out[name] = call()
    first[name] = time.perf_counter() - t0
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      t0 = time.perf_counter()
      call()
      times[name].append(time.perf_counter() - t0)
  return first, {name: statistics.median(t) for name, t in times.items()}, out


def per_problem(out) -> dict[str, np.ndarray]:
  """nit, nfev, f and x per problem, from a list of results or one batched result."""
  if isinstance(out, list):
    return {k: np.stack([np.asarray(getattr(r, k)) for r in out]) for k in ("nit", "nfev", "fun", "x")}
  return {k: np.asarray(getattr(out, k)) for k in ("nit", "nfev", "fun", "x")}


def run_batch(b: Batch, repeats: int, lanes: list[int]) -> tuple[list[str], list[str]]:
  """Times every solver on ``b``: its table rows and its summary line."""
  jax.clear_caches()
  calls, objectives = solvers(b, lanes)
  first, steady, out = time_interleaved(calls, repeats)
  eval_us = {name: bench.call_time(fg, b.x0[0], b.a[0]) * 1e6 for name, fg in objectives.items()}
  res = {name: per_problem(o) for name, o in out.items()}
  ref = res["loop of minimize"]
  rows = []
  for name in calls:
    r = res[name]
    same = int(np.sum((r["nit"] == ref["nit"]) & (r["nfev"] == ref["nfev"])))
    df = np.max(np.abs(r["fun"] - ref["fun"]) / np.maximum(np.abs(ref["fun"]), np.finfo(np.float64).tiny))
    violation = max(float(np.max(b.lower - r["x"])), float(np.max(r["x"] - b.upper)), 0.0)
    us_eval = f"{eval_us[name]:.1f}" if name in eval_us else "—"
    rows.append(f"| {b.name} | {name} | {first[name]:.3f} | {steady[name]:.4f} | {steady[SCIPY] / steady[name]:.1f}x"
                f" | {steady[SCIPY] / first[name]:.1f}x | {steady[name] / np.sum(r['nit']) * 1e6:.2f} | {us_eval}"
                f" | {same}/{len(b.a)} | {df:.1e} | {violation:.0e} |")
    print(rows[-1], file=sys.stderr, flush=True)
  nit, scipy_nit = ref["nit"], res[SCIPY]["nit"]
  line = (f"- {b.name}: {len(b.a)} problems, n = {b.x0.shape[1]}; nit per problem (single solves) mean"
          f" {nit.mean():.1f}, median {np.median(nit):g}, max {nit.max()}, sum {nit.sum()} (SciPy: mean"
          f" {scipy_nit.mean():.1f}, max {scipy_nit.max()}, sum {scipy_nit.sum()}).")
  return rows, [line]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=512)
  parser.add_argument("--n", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--lanes", default="8,32,64,128",
                      help="lane counts of minimize_batch timed besides its default (comma-separated; '' for none)")
  parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_batch.md"))
  args = parser.parse_args()
  lanes = [int(v) for v in args.lanes.split(",") if v]

  rows, summary = [], []
  for make in (uniform_batch, skewed_batch):
    batch_rows, batch_summary = run_batch(make(args.batch, args.n), args.repeats, lanes)
    rows += batch_rows
    summary += batch_summary
  note = ("" if hasattr(jax_lbfgsb, "minimize_batch")
          else "- jax_lbfgsb.minimize_batch is not in this version: its rows are skipped.")
  print(note or "minimize_batch timed", file=sys.stderr)
  bench.write_markdown(args.out, [
      "# Batched solves: loops of SciPy's L-BFGS-B, a loop of minimize, jit(vmap(minimize)), minimize_batch",
      "",
      "Command:",
      "",
      "```",
      f"python benchmarks/batch.py --batch {args.batch} --n {args.n} --repeats {args.repeats} --lanes '{args.lanes}'",
      "```",
      "",
      f"- {bench.machine_line()} Backend {jax.default_backend()}; scipy {scipy.__version__}; BLAS threads"
      f" {os.environ['OPENBLAS_NUM_THREADS']}.",
      *summary,
      "- Bounded chained Rosenbrock `sum 100 (x_{i+1} - x_i^2)^2 + (a - x_i)^2`, a box per problem. uniform:"
      " a ~ U(0.5, 1), lower ~ U(-2, 0), upper ~ U(0.25, 2), x0 ~ U(box). skewed: boxes of width 0.1 around"
      " random centres in [-1, 1]^n, and last one problem from (-1.2, 1, ...) with a = 0.5 in [-2, 2]^n.",
      "- SciPy loop: SciPy's L-BFGS-B per problem on a jitted `jax.value_and_grad` called on NumPy arrays"
      " (f as a float, g by `np.asarray`; no device operation of its own); SciPy-NumPy loop: f and g written"
      " in NumPy. All solvers use SciPy's default options.",
      f"- Each batch starts from empty caches; first call = the warm-up run, with compile; steady = median"
      f" of {args.repeats} rounds that time every solver once each, interleaved. SciPy loop / this: its"
      " steady time over this solver's steady time, and over this solver's first call (\"with compile\")."
      " us / problem-iteration = steady time / sum of nit over the batch; f+g us = one host call of the"
      " SciPy objective. same nit, nfev = problems with the nit and nfev of the loop of single `minimize`"
      " solves; max rel. f diff against those solves; bound viol. = max over x of l - x and x - u.",
      *([note] if note else []),
      "",
      "| batch | solver | first call s | steady s | SciPy loop / this, steady | SciPy loop / this, with compile"
      " | us / problem-iteration | f+g us | same nit, nfev as minimize | max rel. f diff | bound viol. |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
      *rows,
  ])


if __name__ == "__main__":
  main()
