"""Every notebook in notebooks/ runs top to bottom without a cell error (docs/design.md §2: executed in CI).

The notebooks are committed with the outputs of a full run; here they run in their quick mode
(GSPN_NOTEBOOK_QUICK=1: a few training steps), which exercises every cell in CI's time budget."""

from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/*.ipynb found"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits it: figures render off screen
    monkeypatch.setenv("GSPN_NOTEBOOK_QUICK", "1")
    notebook = nbformat.read(path, as_version=4)
    # "python3" is ipykernel's kernel, started with this interpreter; a failing cell raises CellExecutionError.
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=120,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
