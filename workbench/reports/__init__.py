"""Reports: static exports of views and apps, report notebooks run with parameters.

Names are imported lazily: :func:`export` needs Panel, the notebook runner and the
frozen feeds do not.

Examples
--------
>>> import workbench.reports as reports
>>> reports.run_report.__module__
'workbench.reports.notebook'
"""

from __future__ import annotations

import importlib
from typing import Any

#: Views ``workbench export --view`` knows (see :func:`~workbench.reports.export.build_view`).
VIEWS = ("dashboard", "series", "heatmap", "kpis", "latest", "dead-letters", "pipeline", "monitor")

_WHERE = {
    "ExportError": "errors",
    "NotebookError": "errors",
    "ReportError": "errors",
    "build_view": "export",
    "export": "export",
    "export_html": "export",
    "lake_feed": "frozen",
    "make_offline": "offline",
    "network_references": "offline",
    "run_report": "notebook",
    "screenshot": "screenshot",
    "simulated_feed": "frozen",
}

__all__ = sorted([*_WHERE, "VIEWS"])


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'workbench.reports' has no attribute {name!r}")
    return getattr(importlib.import_module(f"workbench.reports.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
