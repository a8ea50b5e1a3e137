"""Every notebook runs headless, top to bottom, with small parameters."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]-*.ipynb"))
SMALL = {"events": 20_000, "duration": 8}  # plus workdir: the test's tmp_path


def parameter_names(source: str) -> set[str]:
    """Names assigned (``name = …``) at the top level of a parameters cell."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_parameter_names():
    assert parameter_names('events = 200_000  # simulated\nwindow: str = "2s"\nprint(x)') == {"events", "window"}


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), path


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    defined = parameter_names(params.source)
    overrides = {k: v for k, v in {**SMALL, "workdir": str(tmp_path)}.items() if k in defined}
    params.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
