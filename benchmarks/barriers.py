"""Barrier problems: a NaN region inside the box, crossed within the default ``maxls``.

Usage (from the repository root)::

    python benchmarks/barriers.py [--cases 150] [--out benchmarks/RESULTS_barriers.md]

Random problems ``a0 (x0 - c0)^2 + a1 (x1 - c1)^2 - k log(x1 - t)`` (or ``- k
sqrt(x1 - t)``) in float64, with a box around the origin, ``t`` inside it (so
``f`` is NaN for ``x1 < t`` within the box) and feasible random starts
(``x1 > t``); seed 7. Each is solved with the default options and with
``maxls=400, maxiter=5000`` (the reference: a line search with room to step
back from the NaN region as often as it likes). The table counts the
terminations and compares the default solves' ``f`` with the reference's.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import run as bench  # noqa: E402
from jax_lbfgsb import Termination, minimize  # noqa: E402


def barrier(x, p):
  a0, a1, c0, c1, k, t, use_log = (p[i] for i in range(7))
  quadratic = a0 * (x[0] - c0) ** 2 + a1 * (x[1] - c1) ** 2
  return quadratic - k * jnp.where(use_log > 0, jnp.log(x[1] - t), jnp.sqrt(x[1] - t))


def cases(count: int, seed: int = 7):
  """``(x0, params, lower, upper)`` of each random problem."""
  rng = np.random.default_rng(seed)
  for _ in range(count):
    lower, upper = rng.uniform(-10, -1, 2), rng.uniform(1, 10, 2)
    t = rng.uniform(lower[1], 0.5 * (lower[1] + upper[1]))
    params = np.array([rng.uniform(0.01, 2), rng.uniform(0.01, 2), rng.uniform(-1000, 1000), rng.uniform(-10, 10),
                       10 ** rng.uniform(-3, 0), t, rng.integers(0, 2)], float)
    x0 = np.array([rng.uniform(lower[0], upper[0]), rng.uniform(t + 1e-3, upper[1])])
    yield x0, params, lower, upper


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", type=int, default=150)
  parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_barriers.md"))
  args = parser.parse_args()
  default = jax.jit(lambda x0, p, lo, hi: minimize(barrier, x0, args=(p,), bounds=(lo, hi)))
  reference = jax.jit(lambda x0, p, lo, hi: minimize(barrier, x0, args=(p,), bounds=(lo, hi), maxls=400,
                                                     maxiter=5000))
  ends = {"default": collections.Counter(), "maxls=400": collections.Counter()}
  rel = []
  for x0, p, lo, hi in cases(args.cases):
    ours, ref = default(x0, p, lo, hi), reference(x0, p, lo, hi)
    ends["default"][Termination(int(ours.termination)).name] += 1
    ends["maxls=400"][Termination(int(ref.termination)).name] += 1
    if int(ours.status) == 0 and int(ref.status) == 0:
      rel.append((float(ours.fun) - float(ref.fun)) / max(abs(float(ref.fun)), 1.0))
  rel = np.asarray(rel)
  names = sorted(set(ends["default"]) | set(ends["maxls=400"]))
  rows = ["| options | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
  rows += [f"| {k} | " + " | ".join(str(c[name]) for name in names) + " |" for k, c in ends.items()]
  summary = (f"- Both converged on {rel.size} of {args.cases}: (f_default - f_reference) / max(|f_reference|, 1)"
             f" median {np.median(rel):.1e}, min {rel.min():.1e}, max {rel.max():.1e}; the default is lower in"
             f" {int(np.sum(rel < -1e-12))} and higher by more than 1e-9 in {int(np.sum(rel > 1e-9))}.")
  bench.write_markdown(args.out, [
      "# Barrier problems: a NaN region inside the box", "", "Command:", "", "```",
      f"python benchmarks/barriers.py --cases {args.cases}", "```", "", f"- {bench.machine_line()}",
      "- " + " ".join(__doc__.split("\n\n")[3].split()), "", *rows, "", summary,
  ])


if __name__ == "__main__":
  main()
