"""Test configuration: float64 available (SciPy parity needs it), explicit dtypes everywhere."""

import os

import jax
import pytest

# The CLI's persistent compilation cache stays off in tests run in-process
# (tests/test_cli.py turns it on for its console-script run, in a temp folder).
os.environ.setdefault("JAX_LBFGSB_CACHE_DIR", "")

# Compile time is most of the suite's time. XLA:CPU's classic fusion emitters
# compile the solver about 1.6x faster (minimize uses them itself at top
# level); here they apply to every compile, nested jit and vmap included, and
# to the notebooks' and CLI's subprocesses. JAX_LBFGSB_TEST_EMITTERS=default
# keeps XLA's default emitters: .ci/run's second pass (the rounding-sensitive
# tests under another instruction set) runs that way, so the default path
# that users' jit and vmap get is tested too.
if os.environ.get("JAX_LBFGSB_TEST_EMITTERS", "classic") == "classic":
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_use_fusion_emitters=false".strip()

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """JAX's caches are emptied after each test file, so that a test process
  does not hold every program compiled in the run (peak memory)."""
  yield
  jax.clear_caches()
