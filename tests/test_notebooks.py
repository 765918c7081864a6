"""The notebooks execute from top to bottom, and are committed with their outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _ids(path: Path) -> str:
    return path.stem


def test_the_notebooks_exist():
    names = {path.name for path in NOTEBOOKS}
    assert {"01_optimizers_in_action.ipynb", "03_training_loop.ipynb"} <= names


# Executed only with OPTIM_FN_SLOW_NOTEBOOKS=1: 35 s alone, 2-3 minutes beside the rest
# of the suite on two cores, which would take `make test` past its 15 minutes. Its
# committed outputs are still checked below.
SLOW_NOTEBOOKS = {"06_matrix_optimizers"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_executes(path, monkeypatch):
    if path.stem in SLOW_NOTEBOOKS and not os.environ.get("OPTIM_FN_SLOW_NOTEBOOKS"):
        pytest.skip("a slow notebook: set OPTIM_FN_SLOW_NOTEBOOKS=1 to execute it")
    path_var = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{path_var}" if path_var else str(ROOT))
    # The kernel's inline backend renders figures to PNG without a display.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on failure
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert errors == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_is_committed_with_its_outputs(path):
    # GitHub renders the stored outputs: a notebook saved without them shows no plots.
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code)
    images = [
        o for cell in code for o in cell.outputs
        if o.output_type == "display_data" and "image/png" in o.get("data", {})
    ]
    assert images, f"{path.name} has no stored plots; execute it and save it with outputs"
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
