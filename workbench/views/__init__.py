"""Presentation: live Panel/HoloViews views over a running pipeline (the only layer that imports panel).

:class:`Feed` is computed once per process and does not import Panel; the views
read it, each browser session (or notebook) on its own document. Names are
imported lazily, so ``workbench.feeds.feed`` stays usable headless.

Examples
--------
>>> import workbench.views as views
>>> views.Feed.__module__
'workbench.feeds.feed'
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "AlertDetail": "workbench.views.alerts",
    "AlertTimeline": "workbench.views.alerts",
    "AlertsTable": "workbench.views.alerts",
    "AuditView": "workbench.views.audit",
    "Dashboard": "workbench.views.dashboard",
    "DeadLetters": "workbench.views.tables",
    "EntityHeatmap": "workbench.views.heatmap",
    "Feed": "workbench.feeds.feed",
    "KpiCards": "workbench.views.kpis",
    "Kpis": "workbench.feeds.feed",
    "LatestWindows": "workbench.views.tables",
    "Leaderboard": "workbench.views.scores",
    "LiveFrame": "workbench.feeds.live",
    "LiveView": "workbench.views.base",
    "MetricSeries": "workbench.views.series",
    "PipelineView": "workbench.views.graph",
    "RunHistoryView": "workbench.views.runs",
    "ScoreBoard": "workbench.views.board",
    "ScoreView": "workbench.views.scores",
    "Subscription": "workbench.feeds.feed",
    "anomaly_marks": "workbench.views.anomaly",
    "crossings": "workbench.views.anomaly",
    "notebook": "workbench.views.notebook",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
