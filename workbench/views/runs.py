"""The run history of scheduled reports: counts by status and a table of the latest runs.

It reads a :class:`~workbench.storage.runs.RunHistory` (not a live feed), at
most every ``refresh_s`` seconds on its own document, and exports like any view.

Examples
--------
>>> import tempfile
>>> from datetime import UTC, datetime
>>> from pathlib import Path
>>> from workbench.storage.runs import RunHistory
>>> h = RunHistory(Path(tempfile.mkdtemp()) / "runs.duckdb")
>>> t = datetime(2024, 1, 1, 6, tzinfo=UTC)
>>> h.finish(h.start("daily", scheduled=t, started=t), ended=t, status="failed", error="cell 3 raised KeyError: 'x'")
>>> view = RunHistoryView(h)
>>> view.refresh(); view.table.value[["job", "status"]].values.tolist(), view.counts.object.count("failed")
([['daily', 'failed']], 1)
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param
import polars as pl

from workbench.storage.runs import STATUSES, RunHistory

__all__ = ["RunHistoryView"]

_COLORS = {"ok": "#2e7d32", "failed": "#c62828", "skipped": "#b26a00", "running": "#1f4e79", "interrupted": "#6b7280"}


class RunHistoryView(pn.viewable.Viewer):
    """Scheduled runs: how many per status, and the latest ones (job, scheduled, start, end, status, output, error)."""

    job = param.Selector(  # type: ignore[var-annotated]
        default="", objects=[""], doc="Only this job (empty: every job)."
    )
    status = param.Selector(  # type: ignore[var-annotated]
        default="", objects=["", *STATUSES], doc="Only runs with this status (empty: all)."
    )
    rows = param.Integer(default=50, bounds=(5, 1000), doc="Latest runs shown.")
    refresh_s = param.Number(default=10.0, bounds=(1.0, 3600.0), doc="Seconds between reads of the history.")

    def __init__(self, history: RunHistory, **params: Any) -> None:
        super().__init__(**params)
        self.history = history
        self.counts = pn.pane.HTML("", sizing_mode="stretch_width")
        self.table = pn.widgets.Tabulator(
            None, disabled=True, show_index=False, sizing_mode="stretch_width", height=420, theme="simple"
        )
        self._callback: Any = None

    @param.depends("job", "status", "rows", watch=True)
    def refresh(self) -> None:
        """Read the history again (the jobs offered, the counts, the table)."""
        everything = self.history.runs(limit=10_000)
        jobs = ["", *sorted(everything["job"].unique().to_list())]
        if list(self.param["job"].objects) != jobs:
            self.param["job"].objects = jobs
        runs = self.history.runs(self.job or None, limit=self.rows, status=self.status or None)
        counts = self.history.counts(self.job or None)
        self.counts.object = " ".join(
            f'<span style="display:inline-block;margin:0 14px 4px 0;font-size:15px">'
            f'<b style="color:{_COLORS[s]}">{counts.get(s, 0):,}</b> {s}</span>'
            for s in STATUSES
        )
        shown = runs.select(
            "job",
            *(pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S").alias(c) for c in ("scheduled", "started", "ended")),
            "seconds",
            "status",
            "coalesced",
            "output",
            "error",
        )
        self.table.value = shown.to_pandas()

    @param.depends("refresh_s", watch=True)
    def _retime(self) -> None:
        if self._callback is not None:
            self._callback.period = int(self.refresh_s * 1000)

    def close(self) -> None:
        """Stop re-reading the history."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def __panel__(self) -> Any:
        """Counts above the table; refreshed every ``refresh_s`` while shown in a session."""
        self.refresh()
        if self._callback is None and pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=int(self.refresh_s * 1000))
            pn.state.on_session_destroyed(lambda _ctx: self.close())
        return pn.Column("### Scheduled runs", self.counts, self.table, sizing_mode="stretch_width")
