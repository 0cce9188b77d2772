"""Trajectory parity with SciPy's L-BFGS-B on the cases of ``tests/parity_cases.py``.

Usage (from the repository root)::

    python benchmarks/parity.py

Prints a markdown table: our nit/nfev and SciPy's, and the largest relative
difference ``max|x_k - x_k^scipy| / max|x_k^scipy|`` over the first 10 iterates
(ours obtained by stopping after k iterations), in float64.
"""

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from parity_cases import CASES, scipy_run  # noqa: E402

from jax_lbfgsb import minimize  # noqa: E402


def main() -> None:
  print("| problem | n | ours nit / nfev | SciPy nit / nfev | max rel. diff, first 10 iterates | ours / SciPy message |")
  print("|---|---|---|---|---|---|")
  for case_id, _, maxcor, _ in CASES:
    p, ref, iterates = scipy_run(case_id)
    x0, bounds = jnp.asarray(p.x0), (jnp.asarray(p.lower), jnp.asarray(p.upper))
    res = minimize(p.fun, x0, bounds=bounds, maxcor=maxcor)
    diff = 0.0
    for k, x_ref in enumerate(iterates[:10], start=1):
      x_k = np.asarray(minimize(p.fun, x0, bounds=bounds, maxcor=maxcor, maxiter=k).x)
      diff = max(diff, float(np.max(np.abs(x_k - x_ref)) / max(np.max(np.abs(x_ref)), 1e-300)))
    same = res.message == ref.message
    print(f"| {case_id} | {p.x0.size} | {int(res.nit)} / {int(res.nfev)} | {ref.nit} / {ref.nfev} |"
          f" {diff:.1e} | {'same' if same else res.message[:30] + ' / ' + ref.message} |")


if __name__ == "__main__":
  main()
