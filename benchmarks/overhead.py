"""Per-call cost of a small solve: ``minimize`` at top level against its compiled program.

A top-level call of ``minimize`` checks and converts its inputs on the host
(``x0``, the bounds, the options), looks up the compiled solve and builds the
result; the program itself runs the solve. This script times, interleaved in
one process in a random order, for one small bounded problem (chained Rosenbrock, n = 10, box
[-1.5, 0.8], 32 iterations) and the input forms users pass:

- ``minimize``: ``minimize(f, x0, bounds=...)`` at top level, as SciPy users call it;
- ``jitted``: the same solve inside the caller's ``jax.jit`` with ``x0`` and the
  bounds as device arrays, returning the whole result, compiled with the XLA:CPU
  emitters that ``minimize`` uses at top level (so the same kernels): the
  program's own time plus one dispatch;
- ``wrapper``: their difference, the host-side cost of a top-level call.

Writes ``benchmarks/RESULTS_overhead.md``. Usage: ``python benchmarks/overhead.py [--calls 2000]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (x64 on, BLAS pinned, the report writer)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jax_lbfgsb import minimize  # noqa: E402

N, LOWER, UPPER = 10, -1.5, 0.8


def rosen(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def forms() -> dict[str, tuple]:
  """``x0`` and ``bounds`` as users pass them (the same values in every form)."""
  x0 = np.resize([-1.2, 1.0], N)
  lo, hi = np.full(N, LOWER), np.full(N, UPPER)
  return {
      "NumPy x0, NumPy bounds (SciPy style)": (x0, (lo, hi)),
      "NumPy x0, list of (lo, hi) pairs": (x0, [(LOWER, UPPER)] * N),
      "JAX x0, scalar bounds": (jnp.asarray(x0), (LOWER, UPPER)),
      "JAX x0, JAX array bounds": (jnp.asarray(x0), (jnp.asarray(lo), jnp.asarray(hi))),
  }


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--calls", type=int, default=2000, help="timed calls per row (interleaved)")
  parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS_overhead.md")
  args = parser.parse_args(argv)

  jitted = jax.jit(lambda x0, l, u: minimize(rosen, x0, bounds=(l, u)),
                   compiler_options={"xla_cpu_use_fusion_emitters": False})
  x0_d, l_d, u_d = (jnp.asarray(a) for a in (np.resize([-1.2, 1.0], N), np.full(N, LOWER), np.full(N, UPPER)))
  calls = {"jitted": lambda: jitted(x0_d, l_d, u_d)}
  for name, (x0, bounds) in forms().items():
    calls[name] = lambda x0=x0, bounds=bounds: minimize(rosen, x0, bounds=bounds)
  reference = np.asarray(calls["jitted"]().x)
  for name, call in calls.items():  # compile, and check that every form solves the same problem
    np.testing.assert_array_equal(np.asarray(call().x), reference, err_msg=name)
  times: dict[str, list[float]] = {name: [] for name in calls}
  order = list(calls)
  for _ in range(args.calls):
    random.shuffle(order)  # no row always runs after the same one
    for name in order:
      t0 = time.perf_counter()
      jax.block_until_ready(calls[name]())
      times[name].append(time.perf_counter() - t0)
  med = {name: float(np.median(t)) * 1e6 for name, t in times.items()}
  res = minimize(rosen, x0_d, bounds=(LOWER, UPPER))
  lines = [
      "# Per-call cost of a small solve at top level",
      "",
      f"`python benchmarks/overhead.py --calls {args.calls}`: median of {args.calls} calls per row, interleaved in a random order;"
      f" chained Rosenbrock n = {N} in [{LOWER}, {UPPER}] ({int(res.nit)} iterations, {int(res.nfev)} evaluations).",
      bench.machine_line(),
      "",
      "| call | us per call | wrapper (minus jitted) us |",
      "|---|---:|---:|",
      f"| jitted (inside the caller's jax.jit, device arrays) | {med['jitted']:.0f} | - |",
  ]
  for name in forms():
    lines.append(f"| minimize, {name} | {med[name]:.0f} | {med[name] - med['jitted']:.0f} |")
  bench.write_markdown(args.out, lines)


if __name__ == "__main__":
  main()
