"""Run a report notebook with parameters (papermill) and render it as HTML without code (nbconvert).

The notebook's cell tagged ``parameters`` holds the defaults; papermill injects the
given values after it. The HTML keeps the outputs only — no input cells, no prompts,
no stderr — and loads nothing from the network (a template of our own drops
require.js, MathJax and Mermaid from Jupyter's ``lab`` template). When a cell
raises, :func:`run_report` raises :class:`~workbench.reports.errors.NotebookError`
naming the cell (its number among the notebook's code cells, as stored), the
exception type and its message, and keeps the executed notebook beside the output
as ``<name>.failed.ipynb``.

Secrets never pass as parameters: papermill writes parameters into the output
notebook. A parameter whose name looks like a secret is refused; notebooks read
secrets from the environment.

Examples
--------
>>> check_parameters({"start": "2024-01-01", "lake": "data/lake"})
>>> check_parameters({"db_password": "hunter2"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: report parameter 'db_password' looks like a secret (its name contains 'password'): ...
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from workbench.errors import ConfigError
from workbench.reports.errors import NotebookError, ReportError
from workbench.reports.offline import loader_urls, network_references
from workbench.storage.atomic import atomic_write

__all__ = ["SECRET_WORDS", "check_parameters", "parameter_names", "parse_value", "render_html", "run_report"]

#: Parameter names containing one of these (any case) are refused.
SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "key", "credential", "private", "cookie")
_TEMPLATES = Path(__file__).parent / "templates"


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Refuse parameters whose names look like secrets (they would be written into the output)."""
    for name in parameters:
        lowered = name.lower()
        word = next((w for w in SECRET_WORDS if w in lowered), None)
        if word is not None:
            raise ConfigError(
                f"report parameter {name!r} looks like a secret (its name contains {word!r}): parameters are "
                "written into the output notebook; let the notebook read it from the environment "
                f"(os.environ[{name.upper()!r}])"
            )
        if not name.isidentifier():
            raise ConfigError(f"report parameter {name!r}: must be a Python identifier")


def parse_value(text: str) -> Any:
    """A command-line parameter value: YAML scalars and lists, anything else stays a string.

    >>> parse_value("20000"), parse_value("0.5"), parse_value("true"), parse_value("[a, b]")
    (20000, 0.5, True, ['a', 'b'])
    >>> parse_value("2024-01-01T00:00:00+00:00"), parse_value("data/lake")
    ('2024-01-01T00:00:00+00:00', 'data/lake')
    """
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None or isinstance(value, bool | int | float | str):
        return text if value is None else value
    if isinstance(value, list) and all(isinstance(v, bool | int | float | str) for v in value):
        return value
    return text  # dates, mappings …: the notebook parses the string


def parameter_names(source: str) -> set[str]:
    """Names a parameters cell assigns at its top level.

    >>> sorted(parameter_names('start = 1; events: int = 5; print(start)'))
    ['events', 'start']
    """
    import ast

    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _write(f: BinaryIO, text: str) -> None:
    f.write(text.encode("utf-8"))


def _code_cell_number(nb: Any, index: int) -> int | None:
    """1-based number among the stored notebook's code cells (papermill's injected cell not counted)."""
    # papermill's error banners are added after the failure; its cell index does not count them
    cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    number = 0
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or "injected-parameters" in cell.metadata.get("tags", []):
            continue
        number += 1
        if i == index:
            return number
    return None


def render_html(nb: Any, *, title: str | None = None) -> str:
    """The executed notebook ``nb`` as an offline HTML page of its outputs (no code, no stderr)."""
    import copy

    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                o
                for o in cell.get("outputs", [])
                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
    if title:
        nb.metadata["title"] = title
    exporter = HTMLExporter(
        template_name="offline",
        extra_template_basedirs=[str(_TEMPLATES)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    page, _ = exporter.from_notebook_node(nb)
    remaining = network_references(page) + loader_urls(page)
    if remaining:
        raise ReportError(f"report {title or ''!r}: the HTML would load {remaining[:5]} from the network")
    return page


def run_report(
    notebook: str | Path,
    out: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel: str = "python3",
    timeout: float = 600.0,
    cwd: str | Path | None = None,
    keep_notebook: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Execute ``notebook`` with ``parameters`` and write its outputs as HTML to ``out``.

    Parameters
    ----------
    notebook
        A notebook with a cell tagged ``parameters``.
    out
        HTML file to write (its folder is created).
    parameters
        Values injected after the parameters cell; names must not look like secrets.
    kernel
        Jupyter kernel name.
    timeout
        Seconds a single cell may run.
    cwd
        Working folder of the kernel (default: the notebook's folder).
    keep_notebook
        Also keep the executed notebook as ``<out>.ipynb``.
    progress
        Show papermill's progress bar (cells run) on stderr.

    Returns
    -------
    dict
        ``html`` (path), ``notebook`` (path or None), ``seconds``, ``cells`` (code cells run).

    Raises
    ------
    NotebookError
        A cell raised: the cell number, exception type and message, and the executed
        notebook kept as ``<out>.failed.ipynb``.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook, out = Path(notebook), Path(out)
    if not notebook.is_file():
        raise ConfigError(f"report: no notebook at {str(notebook)!r}")
    if out.suffix.lower() != ".html":
        raise ConfigError(f"report {notebook.name}: --out must be an .html file, not {str(out)!r}")
    params = dict(parameters or {})
    check_parameters(params)
    stored = nbformat.read(notebook, as_version=4)
    cell = next((c for c in stored.cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        raise ConfigError(f"report {notebook.name}: no cell is tagged 'parameters'")
    known = parameter_names(cell.source)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"report {notebook.name}: unknown parameter(s) {unknown}; its parameters: {sorted(known)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    executed = out.with_suffix(".ipynb")
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            parameters=params,
            kernel_name=kernel,
            cwd=str(cwd or notebook.parent),
            progress_bar=progress,
            log_output=False,
            execution_timeout=int(timeout),
            request_save_on_cell_execute=False,
        )
    except PapermillExecutionError as exc:
        failed = out.with_suffix(".failed.ipynb")
        if executed.exists():
            executed.replace(failed)
        ran = nbformat.read(failed, as_version=4) if failed.exists() else None
        cell = _code_cell_number(ran, exc.cell_index) if ran is not None else None
        raise NotebookError(
            notebook.name, cell=cell, ename=exc.ename, evalue=str(exc.evalue).strip(), output=str(failed)
        ) from None
    nb = nbformat.read(executed, as_version=4)
    page = render_html(nb, title=notebook.stem)
    atomic_write(out, lambda f: _write(f, page))
    if not keep_notebook:
        executed.unlink()
    return {
        "html": str(out),
        "notebook": str(executed) if keep_notebook else None,
        "seconds": round(time.perf_counter() - t0, 2),
        "cells": sum(1 for c in nb.cells if c.cell_type == "code"),
    }
