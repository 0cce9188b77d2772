"""Kernels (XLA:CPU fusions) of a compiled bounded solve, by region of the iteration.

Compiles ``jax.jit(lambda x0: minimize(rosen, x0, bounds=(-1.5, 0.8)).x)``
(chained Rosenbrock; what ``minimize`` compiles at top level, XLA's classic
emitters, and the default ones as in a user's ``jax.jit``) and counts the
fusions of the optimized HLO, each attributed by its ``op_name`` to a region:
``init`` (outside the main loop), ``main loop`` (the pass's accept, tests and
memory update), ``Cauchy point``, ``subspace step``, ``line search`` (the
inner loop's body and condition). Below the total, the ops outside fusions
that XLA:CPU also compiles into kernels of their own: ``dot`` (a matrix-vector
product's tiled kernel, costly to compile) and the others (a lone broadcast,
reduce, divide...). Counts are deterministic: no timing, so it runs on a busy
machine too.

Usage: ``python benchmarks/kernels.py [--n 10 10000] [--out benchmarks/RESULTS_kernels.md]``.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from jax_lbfgsb import minimize  # noqa: E402

REGIONS = ("init", "main loop", "Cauchy point", "subspace step", "line search")


def rosen(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def region(op_name: str) -> str:
  path = op_name.split("/")
  if "while" not in path:
    return "init"
  inner = path[path.index("while") + 1:]
  if "jit(cauchy_point)" in inner:
    return "Cauchy point"
  if "jit(_subspace_step)" in inner:
    return "subspace step"
  if "while" in inner:
    return "line search"
  return "main loop"


def hlo(n: int, classic: bool) -> str:
  x0 = jnp.asarray(np.resize([-1.2, 1.0], n))
  lowered = jax.jit(lambda z: minimize(rosen, z, bounds=(-1.5, 0.8)).x).trace(x0).lower()
  return lowered.compile({"xla_cpu_use_fusion_emitters": False} if classic else None).as_text()


# Instructions of the entry and control-flow computations that are not kernels
# XLA:CPU compiles (copy: a copy thunk, no code generated).
_NOT_KERNELS = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "while", "conditional", "call",
                "custom-call", "fusion", "copy", "after-all", "optimization-barrier", "partition-id", "replica-id"}


def _unfused(text: str) -> collections.Counter:
  """Ops outside fusions that XLA:CPU emits as kernels of their own (``dot``: a matrix-vector
  product's tiled kernel, or a call into Eigen), in the entry and control-flow computations."""
  flow = set(re.findall(r"(?:body|condition|true_computation|false_computation)=(%[\w.\-]+)", text))
  for branches in re.findall(r"branch_computations=\{([^}]*)\}", text):
    flow.update(b.strip() for b in branches.split(","))
  found, inside = collections.Counter(), False
  for line in text.splitlines():
    head = re.match(r"(ENTRY )?(%[\w.\-]+) .*\{$", line)
    if head:
      inside = bool(head.group(1)) or head.group(2) in flow
    elif inside:
      op = re.match(r"\s+(?:ROOT )?%[\w.\-]+ = .*? ([a-z][a-z\-]*)\(", line)
      if op and op.group(1) not in _NOT_KERNELS:
        found["dot" if op.group(1) == "dot" else "other"] += 1
  return found


def count(text: str) -> dict[str, int]:
  counts = collections.Counter({name: 0 for name in REGIONS})
  for line in text.splitlines():
    if " fusion(" in line:
      m = re.search(r'op_name="([^"]*)"', line)
      counts[region(m.group(1) if m else "")] += 1
  counts["total"] = sum(counts.values())
  unfused = _unfused(text)
  counts["unfused dots"] = unfused["dot"]
  counts["other unfused ops"] = unfused["other"]
  counts["LAPACK"] = text.count(" custom-call(")
  counts["while"] = text.count(" while(")
  return counts


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, nargs="+", default=[10, 10000])
  parser.add_argument("--out", type=Path, default=None)
  args = parser.parse_args(argv)
  columns = [(n, classic) for n in args.n for classic in (True, False)]
  table = {col: count(hlo(*col)) for col in columns}
  names = [*REGIONS, "total", "unfused dots", "other unfused ops", "LAPACK", "while"]
  head = " | ".join(f"n = {n}, {'classic' if c else 'default'}" for n, c in columns)
  lines = [
      "# Kernels of a compiled bounded solve, by region",
      "",
      f"`python benchmarks/kernels.py --n {' '.join(map(str, args.n))}`: fusions in the optimized CPU HLO of"
      " `jax.jit(lambda x0: minimize(rosen, x0, bounds=(-1.5, 0.8)).x)`; jax " + jax.__version__ + ".",
      "",
      f"| region | {head} |",
      "|---|" + "---:|" * len(columns),
  ]
  for name in names:
    lines.append(f"| {name} | " + " | ".join(str(table[col][name]) for col in columns) + " |")
  print("\n".join(lines))
  if args.out:
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
  sys.exit(main())
