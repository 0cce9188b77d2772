"""Steady-state time of two source trees, interleaved: does a change slow the solver down?

For each tree, a child process (``PYTHONPATH`` = the tree) compiles once and
then times, medians of ``--repeats`` calls each ended with ``block_until_ready``:

- ``single``: ``minimize`` of a bounded chained Rosenbrock, n = 10, top level;
- ``jit(vmap) 64``: ``jax.jit(jax.vmap(minimize))`` over 64 starting points of it;
- ``minimize_batch 256``: 256 of them (random starts) through ``minimize_batch``;
- ``ept/pjb/msa 300x300``: MINPACK-2's problems, n = 90,000, ``maxiter=40``:
  time per iteration.

The children run alternately (tree A, tree B, tree A, ...), ``--rounds`` each,
and the table gives each case's median over rounds and the ratio B / A.
Writes ``benchmarks/RESULTS_steady.md``. Usage::

    python benchmarks/steady.py --trees /path/to/before /path/to/after [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _child(repeats: int) -> dict[str, float]:
  import jax
  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  import numpy as np

  from jax_lbfgsb import minimize, minimize_batch, problems

  def rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

  def median_time(call) -> float:
    jax.block_until_ready(call())
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(call())
      times.append(time.perf_counter() - t0)
    return statistics.median(times)

  box = dict(bounds=(-1.5, 0.8))
  x0 = jnp.asarray(np.resize([-1.2, 1.0], 10))
  rng = np.random.default_rng(0)
  starts = jnp.asarray(x0 + rng.uniform(-0.2, 0.2, (256, 10)))
  vmapped = jax.jit(jax.vmap(lambda z: minimize(rosen, z, **box).x))
  out = {
      "single": median_time(lambda: minimize(rosen, x0, **box).x),
      "jit(vmap) 64": median_time(lambda: vmapped(starts[:64])),
      "minimize_batch 256": median_time(lambda: minimize_batch(rosen, starts, bounds=(-1.5, 0.8)).x),
  }
  for p in (problems.ept(300, 300), problems.pjb(300, 300), problems.msa(300, 300)):
    res = minimize(p.fun, jnp.asarray(p.x0), bounds=(p.lower, p.upper), options=dict(maxiter=40))
    nit = int(res.nit)
    out[f"{p.name.split('_')[0]} 300x300, per iteration"] = median_time(
        lambda p=p: minimize(p.fun, jnp.asarray(p.x0), bounds=(p.lower, p.upper), options=dict(maxiter=40)).x) / nit
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--trees", nargs=2, type=Path, help="the two source trees, before and after")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS_steady.md")
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(_child(args.repeats)))
    return
  runs: dict[Path, list[dict[str, float]]] = {tree: [] for tree in args.trees}
  for _ in range(args.rounds):
    for tree in args.trees:  # interleaved
      env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
      done = subprocess.run([sys.executable, __file__, "--child", "--repeats", str(args.repeats)],
                            env=env, capture_output=True, text=True, check=True, cwd=tree)
      runs[tree].append(json.loads(done.stdout.strip().splitlines()[-1]))
  a, b = args.trees
  med = {tree: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for tree, rs in runs.items()}
  uname = os.uname()
  lines = [
      "# Steady-state time, before and after",
      "",
      f"`python benchmarks/steady.py --trees {a.name} {b.name} --rounds {args.rounds}`: medians over"
      f" {args.rounds} interleaved rounds (a child process per tree and round) of {args.repeats} timed calls.",
      f"Machine: {uname.machine}, {os.cpu_count()} cores; load before the run: {os.getloadavg()[0]:.2f}.",
      "",
      f"| case | {a.name} (ms) | {b.name} (ms) | {b.name} / {a.name} |",
      "|---|---:|---:|---:|",
  ]
  for k in med[a]:
    lines.append(f"| {k} | {1e3 * med[a][k]:.3f} | {1e3 * med[b][k]:.3f} | {med[b][k] / med[a][k]:.2f} |")
  print("\n".join(lines))
  args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
