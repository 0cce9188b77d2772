"""Batched solves: one ``jit(vmap(minimize))`` against loops of single solves.

Usage (from the repository root)::

    python benchmarks/batch.py [--batch 512] [--n 10] [--out benchmarks/RESULTS_batch.md]

Problems: bounded chained Rosenbrock functions ``sum 100 (x_{i+1} - x_i^2)^2 +
(a - x_i)^2`` with ``n`` variables in the box ``[-1.5, 0.8]``, one random start
and one random ``a`` in ``[0.5, 1]`` per problem (seed 0). Solvers, in one run:
``jax.jit(jax.vmap(minimize))`` over the batch; a Python loop of single jitted
``minimize`` calls; a Python loop of SciPy's L-BFGS-B with a jitted JAX
value-and-grad. Steady state is the median of ``--repeats`` runs after a
warm-up; "first call" includes compilation.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402

from jax_lbfgsb import minimize  # noqa: E402

LOWER, UPPER = -1.5, 0.8


def rosen_a(x, a):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (a - x[:-1]) ** 2)


def _time(call, repeats):
  times = []
  out = None
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = call()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=512)
  parser.add_argument("--n", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_batch.md")))
  args = parser.parse_args()

  rng = np.random.default_rng(0)
  x0 = rng.uniform(LOWER, UPPER, (args.batch, args.n))
  a = rng.uniform(0.5, 1.0, args.batch)
  x0_j, a_j = jnp.asarray(x0), jnp.asarray(a)

  # 1. One vmapped solve.
  batched = jax.jit(jax.vmap(lambda x0, a: minimize(rosen_a, x0, args=(a,), bounds=(LOWER, UPPER))))
  t0 = time.perf_counter()
  res = batched(x0_j, a_j)
  res.x.block_until_ready()
  vmap_first = time.perf_counter() - t0
  vmap_s, res = _time(lambda: jax.block_until_ready(batched(x0_j, a_j)), args.repeats)

  # 2. A Python loop of single solves.
  def loop_ours():
    return [minimize(rosen_a, x0_j[i], args=(a_j[i],), bounds=(LOWER, UPPER)) for i in range(args.batch)]

  t0 = time.perf_counter()
  jax.block_until_ready(minimize(rosen_a, x0_j[0], args=(a_j[0],), bounds=(LOWER, UPPER)))
  loop_compile = time.perf_counter() - t0
  loop_s, singles = _time(lambda: jax.block_until_ready(loop_ours()), 1)

  # 3. A Python loop of SciPy solves.
  value_and_grad = jax.jit(jax.value_and_grad(rosen_a))

  def loop_scipy():
    out = []
    for i in range(args.batch):
      def fg(x, i=i):
        f, g = value_and_grad(jnp.asarray(x), a_j[i])
        return float(f), np.asarray(g, np.float64)
      out.append(scipy.optimize.minimize(fg, x0[i], jac=True, method="L-BFGS-B",
                                         bounds=[(LOWER, UPPER)] * args.n))
    return out

  value_and_grad(x0_j[0], a_j[0])
  scipy_s, refs = _time(loop_scipy, 1)

  same = sum(int(res.nit[i]) == refs[i].nit and int(res.nfev[i]) == refs[i].nfev for i in range(args.batch))
  max_df = max(abs(float(res.fun[i]) - refs[i].fun) for i in range(args.batch))
  lanes_equal = all(int(res.nit[i]) == int(singles[i].nit) for i in range(args.batch))
  nit = np.asarray(res.nit)

  lines = [
      "# Batched solves: jit(vmap(minimize)) vs loops of single solves",
      "",
      "Command:",
      "",
      "```",
      f"python benchmarks/batch.py --batch {args.batch} --n {args.n} --repeats {args.repeats}",
      "```",
      "",
      f"- Machine: {platform.platform()}; {os.cpu_count()} CPUs; jax {jax.__version__}"
      f" ({jax.default_backend()}); scipy {scipy.__version__}; BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}",
      f"- {args.batch} bounded chained Rosenbrock problems, n = {args.n}, box [{LOWER}, {UPPER}],"
      f" nit per problem {nit.min()}..{nit.max()} (median {int(np.median(nit))}); the batch runs"
      " until its slowest lane stops.",
      f"- Same nit/nfev as SciPy on {same}/{args.batch} problems; max |f - f_scipy| = {max_df:.2e};"
      f" every vmapped lane has its single solve's nit: {lanes_equal}.",
      "",
      "| solver | first call s (with compile) | steady state s | SciPy loop / this |",
      "|---|---|---|---|",
      f"| jit(vmap(minimize)) | {vmap_first:.3f} | {vmap_s:.4f} | {scipy_s / vmap_s:.1f}x"
      f" (with compile: {scipy_s / vmap_first:.1f}x) |",
      f"| loop of minimize | {loop_compile + loop_s:.3f} | {loop_s:.4f} | {scipy_s / loop_s:.1f}x |",
      f"| loop of SciPy L-BFGS-B | - | {scipy_s:.4f} | 1.0x |",
      "",
  ]
  text = "\n".join(lines)
  print(text)
  Path(args.out).write_text(text)


if __name__ == "__main__":
  main()
