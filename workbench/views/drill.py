"""``DrillDown``: one entity around one time — its windows, and the alert evidence then.

A dashboard opens it when a heatmap cell, a table row or an alert is clicked: the
entity's windows from ``windows`` steps before to ``windows`` steps after the time
(the row at that time selected), and the entity's alert transitions around it. It
reads the shared feed and alert manager; it holds no subscription of its own (the
dashboard's refresh drives it).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import panel as pn
import param
import polars as pl

from workbench.alerts.manager import AlertManager
from workbench.feeds.feed import Feed
from workbench.views.series import _pandas
from workbench.views.timerange import TimeRange

__all__ = ["DrillDown"]


class DrillDown(pn.viewable.Viewer):
    """The windows and alert evidence of one entity around one time."""

    windows = param.Integer(default=12, bounds=(1, 500), doc="Windows shown on each side of the time.")

    def __init__(
        self, feed: Feed, manager: AlertManager | None = None, *, timerange: TimeRange | None = None, **params: Any
    ) -> None:
        super().__init__(**params)
        self.feed, self.manager = feed, manager
        self.timerange = timerange or TimeRange()
        self.entity: str | None = None
        self.at: datetime | None = None
        self.head = pn.pane.Markdown(
            "Click a heatmap cell, a row of the latest windows or an alert to see that entity around that time.",
            sizing_mode="stretch_width",
            name="wb-drill-head",
        )
        self.rows = pn.widgets.Tabulator(
            None,
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            theme="simple",
            height=300,
            layout="fit_data_fill",
            selectable=True,
        )
        self.events = pn.widgets.Tabulator(
            None, disabled=True, show_index=False, sizing_mode="stretch_width", theme="simple", height=150
        )
        self.shown = pl.DataFrame()
        self.evidence = pl.DataFrame()
        self.rows.visible = self.events.visible = False  # until something is drilled into
        self.events_title = pn.pane.Markdown("**Alert transitions** of this entity around that time", visible=False)

    def __panel__(self) -> Any:
        parts: list[Any] = [self.head, self.rows]
        if self.manager is not None:
            parts += [self.events_title, self.events]
        return pn.Column(*parts, sizing_mode="stretch_width")

    def focus_on(self, entity: str, at: datetime) -> None:
        """Show ``entity`` around ``at``."""
        self.entity, self.at = entity, at
        self.rows.visible = True
        self.events.visible = self.events_title.visible = self.manager is not None
        self.refresh()

    def refresh(self) -> None:
        """Re-read the entity's windows (those closed since appear on the right side)."""
        if self.entity is None or self.at is None:
            return
        by, zone = self.feed.by, self.timerange.zone_name
        half = timedelta(seconds=self.feed.step_s * self.windows)
        _, rows, _ = self.feed.range(self.at - half, self.at + half)
        if rows.height and by in rows.columns:
            rows = rows.filter(pl.col(by).cast(pl.String) == self.entity).sort("window_start")
        self.shown = rows
        shown_at = pl.Series([self.at]).dt.convert_time_zone(zone)[0]
        self.head.object = (
            f"### {self.entity} around {shown_at:%Y-%m-%d %H:%M:%S} {zone}\n"
            f"{rows.height} windows of {by} **{self.entity}** (±{self.windows}); the one at that time is selected."
        )
        if rows.height:
            frame = _pandas(rows.drop("window_end", strict=False), zone)
            units = {c: self.feed.column(c).unit for c in frame.columns}
            self.rows.param.update(
                titles={c: f"{c} [{u}]" for c, u in units.items() if u},
                formatters={
                    c: {"type": "money", "precision": 3 if units[c] == "ratio" else 1, "symbol": ""}
                    for c in frame.columns
                    if frame[c].dtype.kind == "f"
                },
            )
            self.rows.value = frame
            hit = rows.with_row_index("__i").filter(pl.col("window_start") <= self.at)
            self.rows.selection = [int(hit["__i"][-1])] if hit.height else []
        else:
            self.rows.value = None
        if self.manager is not None:
            events = self.manager.recent_events()
            span = timedelta(seconds=max(self.timerange.seconds / 2, 300))
            events = events.filter(
                (pl.col("entity") == self.entity) & pl.col("at").is_between(self.at - span, self.at + span)
            )
            self.evidence = events
            self.events.value = _pandas(
                events.select("at", "fingerprint", "from_state", "to_state", "value", "summary"), zone
            )
