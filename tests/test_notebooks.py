"""The notebooks run top to bottom in a real kernel, so they cannot rot."""

from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
  notebook = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # raises CellExecutionError on any failing cell, assertions included
  assert all(cell.get("outputs") is not None for cell in notebook.cells if cell.cell_type == "code")


def test_the_three_notebooks_exist():
  assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "workbench", "input_maximization"}
