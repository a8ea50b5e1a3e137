"""Errors of reports, exports and scheduled runs (under the one root, ``WorkbenchError``).

The tree::

    WorkbenchError
    └── ReportError          a report or an export cannot be produced
        ├── ExportError      a static export would not be self-contained, or cannot be rendered
        └── NotebookError    a cell of a report notebook raised (names the cell, the type and the message)
"""

from __future__ import annotations

from workbench.errors import WorkbenchError

__all__ = ["ExportError", "NotebookError", "ReportError"]


class ReportError(WorkbenchError):
    """A report or an export cannot be produced."""


class ExportError(ReportError):
    """A static export would load something from the network, or cannot be rendered."""


class NotebookError(ReportError):
    """A cell of a report notebook raised.

    Examples
    --------
    >>> err = NotebookError("daily-report.ipynb", cell=7, ename="KeyError", evalue="'cpu'")
    >>> str(err)
    "daily-report.ipynb: cell 7 raised KeyError: 'cpu'"
    >>> err.cell, err.ename
    (7, 'KeyError')
    """

    def __init__(self, notebook: str, *, cell: int | None, ename: str, evalue: str, output: str | None = None):
        where = f"cell {cell}" if cell is not None else "a cell"
        super().__init__(f"{notebook}: {where} raised {ename}: {evalue}")
        self.notebook = notebook
        self.cell = cell
        self.ename = ename
        self.evalue = evalue
        self.output = output
