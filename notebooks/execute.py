"""Runs the notebooks top to bottom and stores them with their outputs, so that they read on a code host.

  python notebooks/execute.py                      # every notebooks/*.ipynb
  python notebooks/execute.py notebooks/quickstart.ipynb

Each runs in a fresh kernel in a temporary folder (the files it writes go
there). Needs the ``notebooks`` extra: ``pip install -e ".[notebooks]"``.
"""

import argparse
import tempfile
from pathlib import Path

import nbclient
import nbformat


def execute(path: Path) -> None:
  """Executes the notebook at ``path`` and writes it back with its outputs."""
  notebook = nbformat.read(path, as_version=4)
  with tempfile.TemporaryDirectory() as folder:
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": folder}}).execute()
  nbformat.write(notebook, path)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description="Execute notebooks in place, storing their outputs.")
  parser.add_argument("notebooks", nargs="*", type=Path, default=sorted(Path(__file__).parent.glob("*.ipynb")))
  for path in parser.parse_args(argv).notebooks:
    print(f"executing {path}", flush=True)
    execute(path)


if __name__ == "__main__":
  main()
