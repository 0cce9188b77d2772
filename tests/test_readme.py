"""The README's ```python blocks run as pasted: in order, in one fresh Python process.

``python tests/test_readme.py`` runs them (what the test does, in a subprocess:
conftest's float64 and other settings do not leak into the README's code).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def python_blocks(text):
  """``(line, source)`` of each ```python block; ``line`` is the README line of its first source line."""
  return [(text.count("\n", 0, m.start(1)) + 1, m.group(1))
          for m in re.finditer(r"^```python\n(.*?)^```$", text, re.S | re.M)]


def run_blocks():
  """Executes the blocks in order in one namespace, as a reader pasting them would."""
  namespace = {"__name__": "__main__"}
  for line, source in python_blocks(README.read_text()):
    # Padded so that a traceback names the README's own line.
    exec(compile("\n" * (line - 1) + source, str(README), "exec"), namespace)


def test_python_blocks_run_in_order():
  text = README.read_text()
  assert len(python_blocks(text)) == text.count("```python") > 0  # every block found
  # The blocks' dozen compiles are most of the time: XLA's lowest backend
  # optimization level compiles them about twice as fast.
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
  run = subprocess.run([sys.executable, "-W", "error", __file__], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "XLA_FLAGS": flags})
  assert run.returncode == 0, run.stderr
  assert "CONVERGED_PGTOL CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL" in run.stdout.splitlines()  # as commented


if __name__ == "__main__":
  run_blocks()
