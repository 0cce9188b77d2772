"""Sequential control flow in a solve: ``while`` loops and data-dependent ``cond``s per platform.

On a GPU every ``while`` trip and every ``cond`` reads a predicate on the
host; under ``vmap`` a ``cond`` runs both branches and a loop runs to its
slowest lane. This counts them in the program a bounded Rosenbrock solve
lowers to, for each platform as ``lax.platform_dependent`` resolves there
(only the platform's branch is compiled), from the jaxpr: no GPU needed.

Columns: ``while`` ops in all (the main loop included) and ``cond``/``switch``
ops inside the main loop whose predicate is data (a platform's constant
choice does not count), single solve and ``jax.vmap`` of 4.

Usage: ``python benchmarks/control_flow.py [--out benchmarks/RESULTS_control_flow.md]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from jax_lbfgsb import minimize  # noqa: E402


def rosen(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _subjaxprs(eqn):
  for param in eqn.params.values():
    for sub in param if isinstance(param, (tuple, list)) else [param]:
      inner = getattr(sub, "jaxpr", sub)
      if hasattr(inner, "eqns"):
        yield inner


def count(jaxpr, platform: str, in_loop: bool = False, chosen=None) -> tuple[int, int]:
  """``(whiles, data-dependent conds inside a while)`` as ``platform`` compiles ``jaxpr``."""
  chosen = {} if chosen is None else chosen  # platform_index outputs -> the branch taken
  whiles = conds = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "platform_index":
      groups = eqn.params["platforms"]
      index = next((i for i, g in enumerate(groups) if g is not None and platform in g), None)
      chosen[eqn.outvars[0]] = len(groups) - 1 if index is None else index
      continue
    if name == "cond":
      index = eqn.invars[0]
      branches = eqn.params["branches"]
      if index in chosen:  # a platform's choice: only that branch is compiled
        w, c = count(branches[chosen[index]].jaxpr, platform, in_loop, chosen)
        whiles, conds = whiles + w, conds + c
        continue
      conds += in_loop
    whiles += name == "while"
    for sub in _subjaxprs(eqn):
      w, c = count(sub, platform, in_loop or name == "while", chosen)
      whiles, conds = whiles + w, conds + c
  return whiles, conds


def table() -> str:
  lines = ["| n | platform | single: while / cond in loop | vmap(4): while / cond in loop |", "|---|---|---|---|"]
  for n in (10, 300):
    solve = lambda x0: minimize(rosen, x0, bounds=(-1.5, 0.8)).x  # noqa: E731
    single = jax.make_jaxpr(solve)(jnp.zeros(n)).jaxpr
    batched = jax.make_jaxpr(jax.vmap(solve))(jnp.zeros((4, n))).jaxpr
    for platform in ("cpu", "cuda"):
      (w1, c1), (w2, c2) = count(single, platform), count(batched, platform)
      lines.append(f"| {n} | {platform} | {w1} / {c1} | {w2} / {c2} |")
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=Path, default=None)
  args = parser.parse_args(argv)
  text = table()
  print(text)
  if args.out is not None:
    args.out.write_text(text + "\n")


if __name__ == "__main__":
  main(sys.argv[1:])
