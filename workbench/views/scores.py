"""Model views: an entity's anomaly score with its threshold and detections; the leaderboard.

:class:`ScoreView` reads a :class:`~workbench.feeds.feed.Feed` that follows a score
output (``Feed(pipe, output="scores")``): the feed keeps the scored window rows, and
the view streams the chosen entity's new rows into bounded ``hv.streams.Buffer``
objects (a patch per refresh, not a re-render). :class:`Leaderboard` shows a
:class:`~workbench.views.board.ScoreBoard`'s table, replaced only when the board
evaluated again. Both only read: the scoring and the evaluation run on the pipeline
thread.
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param
import polars as pl

from workbench.feeds.feed import Feed
from workbench.views.base import LiveView
from workbench.views.board import ScoreBoard

__all__ = ["Leaderboard", "ScoreView"]

SCORE_COLOR, THRESHOLD_COLOR, DETECTION_COLOR = "#2c6fbb", "#7f8c8d", "#d62728"


def _pandas(frame: pl.DataFrame) -> pd.DataFrame:
    tz = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    return frame.with_columns(pl.col(tz).dt.replace_time_zone(None)).to_pandas()


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "window_end": pd.Series(dtype="datetime64[ms]"),
            "anomaly_score": pd.Series(dtype="float64"),
            "threshold": pd.Series(dtype="float64"),
        }
    )


class ScoreView(LiveView):
    """One entity's anomaly score over time, its adaptive threshold, and the detections."""

    entity = param.Selector(  # type: ignore[var-annotated]
        default=None, objects=[], allow_None=True, doc="Entity shown; empty: the latest alarm."
    )
    history = param.Integer(default=360, bounds=(10, 5000), doc="Windows kept on the chart.")

    def __init__(self, feed: Feed, **params: Any) -> None:
        chosen = params.pop("entity", None)
        super().__init__(feed, **params)
        self._seen = 0
        self._shown: str | None = chosen
        self._buf = hv.streams.Buffer(_empty(), length=self.history, index=False)
        self._marks = hv.streams.Buffer(_empty(), length=self.history, index=False)
        self.pane = pn.pane.HoloViews(None, sizing_mode="stretch_width", min_height=300)
        self.caption = pn.pane.Markdown("", margin=(0, 10), styles={"font-size": "12px", "opacity": "0.75"})
        if chosen is not None:
            self._choices("entity", feed.entities(), chosen)

    def _build(self) -> Any:
        self._rebuild()
        return pn.Column(self.pane, self.caption, sizing_mode="stretch_width")

    def _latest_alarm(self) -> str | None:
        _, rows = self.feed.windows.tail(8)
        if rows.height == 0 or "is_anomaly" not in rows.columns:
            return None
        hot = rows.filter(pl.col("is_anomaly"))
        pick = hot if hot.height else rows.sort("anomaly_score")
        return str(pick[self.feed.by][-1])

    @param.depends("entity", "history", watch=True)
    def _rebuild(self) -> None:
        """New buffers for the chosen entity, filled from the feed's history (same pane)."""
        self._shown = self.entity if self.entity is not None else self._latest_alarm()
        self._buf = hv.streams.Buffer(_empty(), length=self.history, index=False)
        self._marks = hv.streams.Buffer(_empty(), length=self.history, index=False)
        score = hv.DynamicMap(
            lambda data: hv.Curve(data, "window_end", "anomaly_score", label="anomaly score").opts(
                color=SCORE_COLOR, line_width=2, tools=["hover"]
            ),
            streams=[self._buf],
        )
        threshold = hv.DynamicMap(
            lambda data: hv.Curve(data, "window_end", "threshold", label="threshold").opts(
                color=THRESHOLD_COLOR, line_dash="dashed"
            ),
            streams=[self._buf],
        )
        marks = hv.DynamicMap(
            lambda data: hv.Scatter(data, "window_end", "anomaly_score", label="detection").opts(
                color=DETECTION_COLOR, size=9, marker="triangle"
            ),
            streams=[self._marks],
        )
        self.pane.object = (score * threshold * marks).opts(
            hv.opts.Overlay(
                responsive=True,
                min_height=300,
                title=f"anomaly score — {self._shown or 'no entity yet'}",
                xlabel="window end (UTC)",
                ylabel="score (0–1)",
                legend_position="right",
                show_grid=True,
                framewise=True,
            ),
            hv.opts.Curve(ylim=(0, 1.05)),
        )
        self.caption.object = "Score of each closed window (test-then-train), the adaptive threshold, and detections."
        self._seen = 0
        self._push()

    def _push(self) -> None:
        version, rows = self.feed.windows.since(self._seen)
        self._seen = version
        if self._shown is None or rows.height == 0 or "anomaly_score" not in rows.columns:
            return
        mine = rows.filter(pl.col(self.feed.by).cast(pl.String) == self._shown).sort("window_end").tail(self.history)
        if mine.height == 0:
            return
        self._buf.send(_pandas(mine.select("window_end", "anomaly_score", "threshold")))
        hits = mine.filter(pl.col("is_anomaly"))
        if hits.height:
            self._marks.send(_pandas(hits.select("window_end", "anomaly_score", "threshold")))

    def refresh(self) -> None:
        """Stream the chosen entity's new windows; pick an entity once one is known."""
        entities = self.feed.entities()
        if entities and self.entity is not None:
            self._choices("entity", entities, self.entity)
        elif entities and list(self.param["entity"].objects) != entities:
            self.param["entity"].objects = entities
        if self._shown is None and self._latest_alarm() is not None:
            self._rebuild()
            return
        self._push()

    @property
    def shown(self) -> str | None:
        """The entity drawn now."""
        return self._shown

    @property
    def points(self) -> int:
        """Score points held."""
        return len(self._buf.data)

    @property
    def detections(self) -> int:
        """Detections marked."""
        return len(self._marks.data)


class Leaderboard(LiveView):
    """The detectors of a :class:`ScoreBoard`, best first: precision, recall, time-to-detect."""

    def __init__(self, feed: Feed, board: ScoreBoard, **params: Any) -> None:
        super().__init__(feed, **params)
        self.board = board
        self._version = -1
        self.table = pn.widgets.Tabulator(
            board.table().to_pandas(), disabled=True, show_index=False, sizing_mode="stretch_width", height=180
        )

    def _build(self) -> Any:
        return pn.Column("**Detectors on this stream** (event-level, against the labelled incidents)", self.table)

    def refresh(self) -> None:
        """Show the board's latest evaluation (only when it changed)."""
        if self.board.version != self._version:
            self._version = self.board.version
            self.table.value = self.board.table().to_pandas()

    @property
    def rows(self) -> int:
        """Detectors listed."""
        return len(self.table.value)
