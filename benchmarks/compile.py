"""First-call (compile) cost of a bounded solve, against optax.lbfgs, and a new closure of the same code.

Every measurement compiles a program never seen before in the process: the
objective is a bounded chained Rosenbrock (n = 10) whose coefficient is a
Python float literal that changes per measurement (a new jaxpr, so no cache
can answer). Rows, interleaved over ``--rounds`` rounds in one process:

- ``top level``: ``minimize(f, x0, bounds=...)``;
- ``user jit``: ``jax.jit(lambda x0: minimize(f, x0, bounds=...).x)``, as in training code;
- ``jit(vmap)``: a batch of 8 starting points in one ``jax.jit(jax.vmap(...))``;
- ``closure, first call`` and ``new closure, same code``: ``minimize(lambda
  x: g(x, a), x0, ...)``, then again with a new lambda over a new array ``a``;
- ``optax.lbfgs``: its update in a jitted ``lax.while_loop`` with SciPy's
  stopping tests (``benchmarks/run.py``), unbounded, on the same objective.

Writes ``benchmarks/RESULTS_compile.md``. Usage: ``python benchmarks/compile.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (x64 on, BLAS pinned, optax's loop)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jax_lbfgsb import minimize  # noqa: E402

N, BATCH = 10, 8
OPTS = dict(maxcor=10, gtol=1e-5, ftol=2.220446049250313e-09, maxiter=15000)


def objective(coef: float):
  """A chained Rosenbrock with ``coef`` baked in as a literal: a new program per ``coef``."""
  def f(x):
    return jnp.sum(coef * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
  return f


def timed(call) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(call())
  return time.perf_counter() - t0


def measure(coef: float) -> dict[str, float]:
  f = objective(coef)
  x0 = jnp.asarray(np.resize([-1.2, 1.0], N))
  x0s = x0 + 0.01 * jnp.arange(BATCH, dtype=x0.dtype)[:, None]
  box = dict(bounds=(-1.5, 0.8))
  row = {
      "top level": timed(lambda: minimize(f, x0, **box).x),
      "user jit": timed(lambda: jax.jit(lambda z: minimize(objective(coef + 1e-7), z, **box).x)(x0)),
      "jit(vmap)": timed(lambda: jax.jit(jax.vmap(lambda z: minimize(objective(coef + 2e-7), z, **box).x))(x0s)),
  }

  def g(x, a):
    return objective(coef + 3e-7)(x) + jnp.sum((x - a) ** 2)

  row["closure, first call"] = timed(lambda: minimize(lambda x: g(x, x0), x0, **box).x)
  a = x0 + 0.5
  row["new closure, same code"] = timed(lambda: minimize(lambda x: g(x, a), x0, **box).x)
  row["optax.lbfgs"] = timed(lambda: bench._optax_solve(objective(coef + 4e-7), OPTS)(x0)[0])
  return row


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS_compile.md")
  args = parser.parse_args(argv)
  rows = [measure(100.0 + k * 1e-3) for k in range(args.rounds)]
  med = {name: statistics.median(r[name] for r in rows) for name in rows[0]}
  optax_s = med["optax.lbfgs"]
  lines = [
      "# First call (compile) of a bounded Rosenbrock n=10",
      "",
      f"`python benchmarks/compile.py --rounds {args.rounds}`; median of {args.rounds} interleaved rounds,"
      " each on a program not compiled before in the process (see the script's docstring).",
      bench.machine_line(),
      "",
      "| call | first call (s) | vs optax.lbfgs |",
      "|---|---:|---:|",
  ]
  for name, value in med.items():
    lines.append(f"| {name} | {value:.3f} | {value / optax_s:.2f}x |")
  bench.write_markdown(args.out, lines)


if __name__ == "__main__":
  main()
