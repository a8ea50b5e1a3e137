"""Presentation: live Panel/HoloViews views over a running pipeline (the only layer that imports panel).

:class:`Feed` is computed once per process and does not import Panel; the views
read it, each browser session (or notebook) on its own document. Names are
imported lazily, so ``workbench.views.feed`` stays usable headless.

Examples
--------
>>> import workbench.views as views
>>> views.Feed.__module__
'workbench.views.feed'
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "AlertDetail": "alerts",
    "AlertTimeline": "alerts",
    "AlertsTable": "alerts",
    "Dashboard": "dashboard",
    "DeadLetters": "tables",
    "EntityHeatmap": "heatmap",
    "Feed": "feed",
    "KpiCards": "kpis",
    "Kpis": "feed",
    "LatestWindows": "tables",
    "Leaderboard": "scores",
    "LiveFrame": "live",
    "LiveView": "base",
    "MetricSeries": "series",
    "PipelineView": "graph",
    "RunHistoryView": "runs",
    "ScoreBoard": "board",
    "ScoreView": "scores",
    "Subscription": "feed",
    "anomaly_marks": "anomaly",
    "crossings": "anomaly",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'workbench.views' has no attribute {name!r}")
    return getattr(importlib.import_module(f"workbench.views.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
