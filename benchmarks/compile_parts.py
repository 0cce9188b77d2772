"""What the compile of a solve spends, part by part: XLA:CPU kernels and compile time.

Each part of one iteration is compiled on its own, as a program never seen
before in the process (a fresh constant per round), for a bounded problem with
n = 10 and m = 10 (the compile benchmark's size), with XLA:CPU's default fusion
emitters (what a solve inside the caller's ``jax.jit`` gets) and the classic
ones (what ``minimize`` uses at top level). Counted in the optimized HLO:
fusions (each one kernel that XLA emits and LLVM compiles) and custom calls
(LAPACK). Rows:

- ``Cauchy point``: ``_cauchy.cauchy_point`` (the breakpoint walk);
- ``Cauchy point + subspace step``: with the reduced gradient, ``formk`` and the subspace minimization;
- ``line search``: ``dcsrch`` in its ``while`` loop with the trial points and tests (f: a quadratic);
- ``memory update``: ``matupd`` and ``formt`` (the Cholesky factor of ``T``);
- ``whole solve, user jit``: ``jax.jit(lambda x0: minimize(rosen, x0, bounds=...).x)``;
- ``optax.lbfgs``: its update in a jitted ``lax.while_loop`` (``benchmarks/run.py``), for scale.

Writes ``benchmarks/RESULTS_compile_parts.md``. Usage: ``python benchmarks/compile_parts.py [--rounds 3]``.
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

from jax_lbfgsb import _solver, minimize  # noqa: E402
from jax_lbfgsb._cauchy import cauchy_point  # noqa: E402
from jax_lbfgsb._compact import init_memory, update_memory  # noqa: E402

N = M = 10
CLASSIC = {"xla_cpu_use_fusion_emitters": False}
OPTS = dict(maxcor=M, gtol=1e-5, ftol=2.220446049250313e-09, maxiter=15000)


def rosen(coef):
  def f(x):
    return jnp.sum(coef * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
  return f


def parts():
  """``name -> (make(salt) -> (function, args))``: each part as a jittable function of arrays."""
  x, g = jnp.zeros(N), jnp.linspace(-1.0, 1.0, N)
  l, u = -jnp.ones(N), jnp.ones(N)
  box = _solver.Box.of(l, u)
  memory = init_memory(N, M, jnp.float64)
  options = _solver.Options(*(jnp.asarray(v, jnp.int32 if isinstance(v, int) else jnp.float64)
                              for v in (2.2e-9, 1e-5, 100, 100, 20, 1e-3, 0.9, 0.0, 0.0)))

  def salted(salt, fn):
    return lambda *a: (fn(*a), jnp.float64(salt))  # a new constant: a new program

  def cauchy(salt):
    return salted(salt, lambda x, g, mem: cauchy_point(x, g, l, u, box.fixed, mem)), (x, g, memory)

  def subspace(salt):
    def fn(x, g, mem):
      gcp = cauchy_point(x, g, l, u, box.fixed, mem)
      return _solver._subspace_step(x, g, l, u, gcp, mem, None, 1)
    return salted(salt, fn), (x, g, memory)

  def line_search(salt):
    def fg(y):
      return jnp.sum((y - 0.5) ** 2), 2.0 * (y - 0.5)

    def fn(x, d):
      state = _solver.init(fg, x, box, options, M)
      return _solver._line_search(fg, state, d, x + d, box, options, jnp.zeros((), bool))
    return salted(salt, fn), (x, -g)

  def memory_update(salt):
    def fn(mem, s, y):
      return update_memory(mem, s, y, jnp.vdot(s, y), jnp.vdot(s, s), jnp.ones((), bool))
    return salted(salt, fn), (memory, g, 2.0 * g)

  def whole(salt):
    return (lambda x0: minimize(rosen(100.0 + salt), x0, bounds=(-1.5, 0.8)).x), (jnp.asarray(np.resize([-1.2, 1.0], N)),)

  def optax_lbfgs(salt):
    return bench._optax_solve(rosen(100.0 + salt), OPTS), (jnp.asarray(np.resize([-1.2, 1.0], N)),)

  return {"Cauchy point": cauchy, "Cauchy point + subspace step": subspace, "line search": line_search,
          "memory update": memory_update, "whole solve, user jit": whole, "optax.lbfgs": optax_lbfgs}


def measure(make, salt: float) -> dict[str, float]:
  fn, args = make(salt)
  lowered = jax.jit(fn).trace(*args).lower()
  t0 = time.perf_counter()
  compiled = lowered.compile()
  t1 = time.perf_counter()
  lowered.compile(CLASSIC)
  t2 = time.perf_counter()
  text = compiled.as_text()
  return {"default": t1 - t0, "classic": t2 - t1, "fusions": text.count(" fusion("),
          "custom": text.count(" custom-call("), "while": text.count(" while(")}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS_compile_parts.md")
  args = parser.parse_args(argv)
  makers = parts()
  rows: dict[str, list[dict[str, float]]] = {name: [] for name in makers}
  for k in range(args.rounds):
    for name, make in makers.items():  # interleaved
      rows[name].append(measure(make, 1e-3 * (k + 1) + 1e-6 * np.random.default_rng().random()))
  lines = [
      "# What the compile of a solve spends, part by part",
      "",
      f"`python benchmarks/compile_parts.py --rounds {args.rounds}`: n = m = {N}; compile seconds are medians"
      f" of {args.rounds} interleaved rounds, each on a program not compiled before (see the script's docstring).",
      bench.machine_line(),
      "",
      "| part | fusions (kernels) | LAPACK calls | while | compile s, default emitters | compile s, classic |",
      "|---|---:|---:|---:|---:|---:|",
  ]
  for name, runs in rows.items():
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    lines.append(f"| {name} | {med['fusions']:.0f} | {med['custom']:.0f} | {med['while']:.0f}"
                 f" | {med['default']:.2f} | {med['classic']:.2f} |")
  bench.write_markdown(args.out, lines)


if __name__ == "__main__":
  main()
