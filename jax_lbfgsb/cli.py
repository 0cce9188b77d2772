"""The ``jax-lbfgsb`` command line: ``jax-lbfgsb demo``.

Host-side only: argparse and printing live here, never on the jitted path.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence


def _demo(args: argparse.Namespace) -> int:
  import jax

  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  import numpy as np

  from jax_lbfgsb import minimize

  def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

  n = args.n
  x0 = jnp.asarray(np.resize([-1.2, 1.0], n))
  lower, upper = -1.5, 0.8
  print(f"Rosenbrock, n = {n}, bounds [{lower}, {upper}], x0 = (-1.2, 1, -1.2, ...)")
  t0 = time.perf_counter()
  res = minimize(rosenbrock, x0, bounds=(lower, upper))
  res.x.block_until_ready()
  t1 = time.perf_counter()
  res = minimize(rosenbrock, x0, bounds=(lower, upper))
  res.x.block_until_ready()
  t2 = time.perf_counter()
  with np.printoptions(precision=6, suppress=True, linewidth=100):
    print(f"x       = {np.asarray(res.x)}")
  print(f"f       = {float(res.fun):.10e}")
  print(f"nit     = {int(res.nit)}")
  print(f"nfev    = {int(res.nfev)}")
  print(f"status  = {int(res.status)} (success: {bool(res.success)})")
  print(f"message = {res.message}")
  print(f"time    = {t1 - t0:.3f} s first call (with compile), {t2 - t1:.4f} s second call")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``jax-lbfgsb`` console script."""
  parser = argparse.ArgumentParser(prog="jax-lbfgsb", description="L-BFGS-B in JAX.")
  sub = parser.add_subparsers(dest="command", required=True)
  demo = sub.add_parser("demo", help="solve a bounded Rosenbrock problem and print the result")
  demo.add_argument("--n", type=int, default=10, help="number of variables (default 10, at least 2)")
  demo.set_defaults(func=_demo)
  args = parser.parse_args(argv)
  if args.command == "demo" and args.n < 2:
    parser.error("--n must be at least 2")
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
