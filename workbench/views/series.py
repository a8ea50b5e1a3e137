"""Time series of any window metric: chosen entities (or the top N) over the fleet band.

The band (p5–p95 across entities, with the median) and one line per entity are fed
through bounded ``hv.streams.Buffer`` objects with only the new rows, so a refresh
is a streamed patch, not a re-render. Points where an entity is a fleet outlier
(robust z-score at or above ``threshold``) are marked by the anomaly overlay.
"""

from __future__ import annotations

import functools
import operator
import time
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param
import polars as pl

from workbench.feeds.feed import Feed, unit_of
from workbench.views.anomaly import anomaly_marks
from workbench.views.base import LiveView

__all__ = ["MetricSeries"]

BAND_COLOR, MEDIAN_COLOR = "#8fa9c8", "#34495e"


def _pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """Naive-UTC pandas for Bokeh (it has no time zones); an empty frame keeps its columns."""
    tz = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    return frame.with_columns(pl.col(tz).dt.replace_time_zone(None)).to_pandas()


def _name_figure(plot: Any, _element: Any) -> None:
    """Name the Bokeh figure, so scripts and browser tests can find the series plot."""
    plot.state.name = "wb-series"


def _empty(columns: list[str]) -> pd.DataFrame:
    data: dict[str, Any] = {"window_start": pd.Series(dtype="datetime64[ms]")}
    data.update({c: pd.Series(dtype="float64") for c in columns if c != "window_start"})
    return pd.DataFrame(data)


class MetricSeries(LiveView):
    """A window metric over time: entity lines, fleet band, and fleet-outlier marks."""

    metric = param.Selector(  # type: ignore[var-annotated]
        default="cpu_mean", objects=["cpu_mean"], doc="Window metric to plot."
    )
    entities = param.ListSelector(default=[], objects=[], doc="Entities to draw; empty means the top N.")
    top_n = param.Integer(
        default=5, bounds=(0, 20), doc="With no entity chosen, draw the N highest (re-ranked every minute)."
    )
    band = param.Boolean(default=True, doc="Show the fleet median and p5–p95 band.")
    threshold = param.Number(
        default=3.5, bounds=(1.0, 20.0), step=0.5, doc="Mark points with |fleet z| at or above this."
    )
    history = param.Integer(default=360, bounds=(10, 5000), doc="Windows kept on the chart.")

    def __init__(self, feed: Feed, **params: Any) -> None:
        chosen = params.pop("metric", None)
        super().__init__(feed, **params)
        self._seen = 0
        self._ranked_at = 0.0
        self._drawn: list[str] = []
        self._buf = hv.streams.Buffer(_empty(self._columns()), length=self.history, index=False)
        self._marks_buf = hv.streams.Buffer(_empty(["value", "z"]), length=self.history, index=False)
        self.pane = pn.pane.HoloViews(None, sizing_mode="stretch_width", min_height=320)
        self.caption = pn.pane.Markdown("", margin=(0, 10), styles={"font-size": "12px", "opacity": "0.75"})

        # -- layout -----------------------------------------------------------------------
        self._choices("metric", feed.metrics, chosen)

    def _build(self) -> Any:
        self._sync_options()
        self._rebuild()
        return pn.Column(self.pane, self.caption, sizing_mode="stretch_width")

    def _sync_options(self) -> None:
        if self.feed.metrics:
            self._choices("metric", self.feed.metrics)
        entities = self.feed.entities()
        options = [*entities, *(e for e in self.entities if e not in entities)]
        if options and options != list(self.param["entities"].objects):
            self.param["entities"].objects = options

    def _targets(self) -> list[str]:
        return list(self.entities) if self.entities else self.feed.top(self.metric, self.top_n)

    def _columns(self) -> list[str]:
        k = len(self._drawn)
        return ["low", "median", "high", *(f"v{i}" for i in range(k)), *(f"z{i}" for i in range(k))]

    @param.depends("metric", "entities", "band", "threshold", "history", watch=True)
    def _rebuild(self) -> None:
        """A new buffer and plot for the current choices, filled from the feed's history.

        One wide buffer (window_start, band, one value and one z column per entity)
        feeds every line, so a closed window is one send: one plot update, streamed.
        """
        self._drawn = self._targets()
        self._ranked_at = time.monotonic()
        m, unit = self.metric, unit_of(self.metric)
        self._buf = hv.streams.Buffer(_empty(self._columns()), length=self.history, index=False)
        self._marks_buf = hv.streams.Buffer(
            _empty(["value", "z"]).assign(entity=pd.Series(dtype=str)), length=self.history, index=False
        )
        layers = []
        if self.band:
            layers.append(
                hv.DynamicMap(
                    lambda data: hv.Area(data, "window_start", ["low", "high"], label="fleet p5–p95").opts(
                        color=BAND_COLOR, alpha=0.35, line_alpha=0
                    ),
                    streams=[self._buf],
                )
            )
            layers.append(
                hv.DynamicMap(
                    lambda data: hv.Curve(data, "window_start", "median", label="fleet median").opts(
                        color=MEDIAN_COLOR, line_dash="dashed", line_width=1.5
                    ),
                    streams=[self._buf],
                )
            )
        for i, e in enumerate(self._drawn):
            layers.append(
                hv.DynamicMap(
                    functools.partial(
                        lambda data, i, label: hv.Curve(data, "window_start", [f"v{i}", f"z{i}"], label=label).opts(
                            line_width=2, tools=["hover"]
                        ),
                        i=i,
                        label=e,
                    ),
                    streams=[self._buf],
                )
            )
        threshold = self.threshold
        layers.append(
            hv.DynamicMap(
                lambda data: anomaly_marks(
                    data, threshold=threshold, vdims=["entity"], label=f"|fleet z| ≥ {threshold:g}"
                ),
                streams=[self._marks_buf],
            )
        )
        who = ", ".join(self._drawn) if self._drawn else "no entity yet"
        overlay = functools.reduce(operator.mul, layers).opts(
            hv.opts.Overlay(
                responsive=True,
                min_height=320,
                title=f"{m} ({unit})" if unit else m,
                xlabel="window start (UTC)",
                ylabel=f"{m} [{unit}]" if unit else m,
                legend_position="right",
                show_grid=True,
                framewise=True,
                hooks=[_name_figure],
            ),
            hv.opts.Curve(ylabel=f"{m} [{unit}]" if unit else m),
        )
        self.pane.object = overlay
        pick = "chosen" if self.entities else f"top {self.top_n} by {m} in the latest window"
        self.caption.object = f"Lines: {pick} — {who}. Band: fleet p5–p95 and median across all entities."
        self._seen = 0
        self._push()

    # -- data -------------------------------------------------------------------------
    def _push(self) -> None:
        """Send the windows closed since the last push: one row per window to the wide buffer."""
        m = self.metric
        version, rows, bands = self.feed.since(self._seen)
        self._seen = version
        if bands.height == 0 or f"{m}__p50" not in bands.columns:
            return
        wide = bands.select(
            "window_start",
            pl.col(f"{m}__p05").alias("low"),
            pl.col(f"{m}__p50").alias("median"),
            pl.col(f"{m}__p95").alias("high"),
            pl.col(f"{m}__mad").alias("__mad"),
        ).tail(self.history)
        marks = None
        if self._drawn and rows.height and m in rows.columns:
            by = self.feed.by
            lines = rows.filter(pl.col(by).is_in(self._drawn)).select("window_start", by, pl.col(m).cast(pl.Float64))
            lines = lines.join(wide.select("window_start", "median", "__mad"), on="window_start", how="left")
            lines = lines.with_columns(
                ((pl.col(m) - pl.col("median")) / (1.4826 * pl.col("__mad"))).fill_nan(None).alias("z")
            )
            for i, e in enumerate(self._drawn):
                mine = lines.filter(pl.col(by) == e).select(
                    "window_start", pl.col(m).alias(f"v{i}"), pl.col("z").alias(f"z{i}")
                )
                wide = wide.join(mine, on="window_start", how="left")
            crossing = lines.filter(pl.col("z").abs() >= self.threshold)
            if crossing.height:
                marks = crossing.select("window_start", pl.col(m).alias("value"), "z", pl.col(by).alias("entity"))
        wide = wide.with_columns(pl.lit(None, pl.Float64).alias(c) for c in self._columns() if c not in wide.columns)
        self._buf.send(_pandas(wide.sort("window_start").select("window_start", *self._columns())))
        if marks is not None:
            self._marks_buf.send(_pandas(marks.sort("window_start")))

    def refresh(self) -> None:
        """Stream new windows; re-rank the top N once a minute."""
        if not self.feed.metrics:
            return
        self._sync_options()
        short = not self.entities and len(self._drawn) < self.top_n  # fewer entities than asked: rank again
        if not self._drawn or short or (not self.entities and time.monotonic() - self._ranked_at > 60):
            if self._targets() != self._drawn:
                self._rebuild()
                return
            self._ranked_at = time.monotonic()
        self._push()

    @property
    def drawn(self) -> list[str]:
        """Entities drawn now."""
        return list(self._drawn)

    @property
    def points(self) -> int:
        """Band points held (grows as windows close)."""
        return len(self._buf.data)
