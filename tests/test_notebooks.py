"""The notebooks run top to bottom in a real kernel, so they cannot rot, and are
stored with their outputs (``python notebooks/execute.py``), so they read on a code host."""

import os
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def assert_executed(notebook):
  """Every code cell ran, in order, without an error, and shows something."""
  cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
  for cell in cells:
    assert cell.outputs and all(output.output_type != "error" for output in cell.outputs), cell.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
  notebook = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  # Most of the time is compiling: XLA's lowest backend optimization level
  # compiles about twice as fast.
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
  client.execute(env={**os.environ, "XLA_FLAGS": flags})  # raises CellExecutionError on any failing cell
  assert_executed(notebook)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_executed(path):
  assert_executed(nbformat.read(path, as_version=4))


def test_the_three_notebooks_exist():
  assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "workbench", "input_maximization"}
