"""Live tables: the latest closed windows, and the dead letters with their reasons.

Clicking a row of the latest windows calls ``on_pick(entity, window start)``: the
dashboard drills into that entity at that time. Column titles carry the units the
schema declares.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import panel as pn
import param
import polars as pl

from workbench.feeds.feed import Feed
from workbench.views.base import LiveView
from workbench.views.series import _pandas
from workbench.views.timerange import TimeRange

__all__ = ["DeadLetters", "LatestWindows"]


def reason_kind(reason: pl.Expr) -> pl.Expr:
    """The reason with its values taken out, for counting (``field 'cpu' must be a number``)."""
    return (
        reason.str.replace_all(r"\d[\d,._:+TZ-]*", "N")
        .str.split(", not ")
        .list.first()
        .str.split(": ")
        .list.first()
        .str.slice(0, 80)
    )


def _table(**options: Any) -> pn.widgets.Tabulator:
    """A read-only Tabulator with the views' common look."""
    defaults = {"disabled": True, "show_index": False, "sizing_mode": "stretch_width", "theme": "simple"}
    return pn.widgets.Tabulator(None, **{**defaults, **options})


class LatestWindows(LiveView):
    """A Tabulator of the latest closed window: one row per entity, sorted by ``sort_by``."""

    sort_by = param.Selector(  # type: ignore[var-annotated]
        default="cpu_mean", objects=["cpu_mean"], doc="Column to sort by (highest first)."
    )
    rows = param.Integer(default=200, bounds=(10, 5000), doc="Rows shown.")

    redraw_every = param.Number(
        default=2.0, bounds=(0.25, 60.0), doc="Seconds between redraws at most (each sends the whole table)."
    )

    def __init__(
        self,
        feed: Feed,
        *,
        timerange: TimeRange | None = None,
        on_pick: Callable[[str, datetime], Any] | None = None,
        **params: Any,
    ) -> None:
        chosen = params.pop("sort_by", None)
        super().__init__(feed, **params)
        self.timerange = timerange or TimeRange()
        self.on_pick = on_pick
        self.shown = pl.DataFrame()
        self.table = _table(height=360, layout="fit_data_fill", frozen_columns=[feed.by])
        self.table.on_click(self._clicked)
        self._choices(
            "sort_by", feed.metrics, chosen or (None if "cpu_mean" in feed.metrics else feed.default_metric())
        )

    def _clicked(self, event: Any) -> None:
        """A row clicked: that entity at that window."""
        row = getattr(event, "row", None)
        if row is None or row >= self.shown.height or self.on_pick is None:
            return
        entity, start = self.shown.row(row, named=True)[self.feed.by], self.shown["window_start"][row]
        self.on_pick(str(entity), start)

    def _build(self) -> Any:
        return self.table

    @param.depends("sort_by", "rows", watch=True)
    def _resort(self) -> None:
        self._redraw_now()

    def refresh(self) -> None:
        """Show the newest window when one has closed."""
        metrics = self.feed.metrics
        if metrics:
            self._choices("sort_by", metrics)
        version = self._window_due(self.redraw_every)
        if version is None:
            return
        _, rows = self.feed.windows.since(max(0, version - 1))
        if rows.height == 0:
            return
        last = rows.filter(pl.col("window_start") == pl.col("window_start").max())
        if self.sort_by in last.columns:
            last = last.sort(self.sort_by, descending=True, nulls_last=True)
        self.shown = last.head(self.rows)
        frame = _pandas(self.shown.drop("window_end"), self.timerange.zone_name)
        units = {c: self.feed.column(c).unit for c in frame.columns}
        formatters = {
            c: {"type": "money", "precision": 3 if units[c] == "ratio" else 1, "symbol": ""}
            for c in frame.columns
            if frame[c].dtype.kind == "f"
        }
        titles = {c: f"{c} [{u}]" for c, u in units.items() if u}
        if formatters != self.table.formatters or titles != self.table.titles:  # a column rebuild: only on change
            self.table.param.update(formatters=formatters, titles=titles)
        self.table.value = frame


class DeadLetters(LiveView):
    """Dead letters as they arrive — node, reason and the raw record — with counts by kind of reason."""

    rows = param.Integer(default=500, bounds=(10, 2000), doc="Rows kept in the table (newest at the bottom).")

    def __init__(self, feed: Feed, **params: Any) -> None:
        super().__init__(feed, **params)
        self._seen = 0
        self.table = _table(height=300, layout="fit_columns", widths={"received": 80, "node": 80, "reason": 320})
        self.kinds = _table(height=200, layout="fit_data_stretch")
        self._counted = 0.0
        self._streamed = 0.0

    def _build(self) -> Any:
        return pn.Column(self.table, self.kinds, sizing_mode="stretch_width")

    @property
    def shown(self) -> int:
        """Dead letters in the table now."""
        return 0 if self.table.value is None else len(self.table.value)

    def refresh(self) -> None:
        """Append new dead letters (bounded by ``rows``) and recount the kinds."""
        if time.monotonic() - self._streamed < 2.0:  # at most one stream every 2 s, coalesced
            return
        version, new = self.feed.dead_letter.since(self._seen)
        if new.height == 0:
            return
        self._streamed = time.monotonic()
        first = self._seen == 0 or self.table.value is None
        self._seen = version
        frame = _pandas(new.tail(self.rows).with_columns(pl.col("received").dt.strftime("%H:%M:%S")))
        if first:
            self.table.value = frame
        else:
            self.table.stream(frame, rollover=self.rows, follow=True)
        if time.monotonic() - self._counted < 5:  # recounting is cheap, resending the table is not
            return
        self._counted = time.monotonic()
        kinds = (
            self.feed.dead_letter.latest()
            .group_by(reason_kind(pl.col("reason")).alias("reason (kind)"))
            .len("count")
            .sort("count", descending=True)
            .head(15)
            .select("count", "reason (kind)")
        )
        self.kinds.value = kinds.to_pandas()
