"""Time series of any window metric over a time range: chosen entities (or the top N) over the fleet band.

The range comes from a :class:`~workbench.views.timerange.TimeRange` (last 5 m … 6 h,
or custom; live or paused). Without chosen entities the lines are the top N of the
range — the entities that were anomalous within it (fleet z-score at or above
``threshold``), then the highest now — so an incident stays in the chart after it
ends. The band (p5–p95 across entities, with the median) and one line per entity are
fed through bounded ``hv.streams.Buffer`` objects with only the new rows, so a refresh
is a streamed patch, not a re-render. On scraped Prometheus series the chart shows one
metric name (family) at a time, counters as per-second rates, so units never mix.
"""

from __future__ import annotations

import functools
import math
import operator
import time
from datetime import datetime
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param
import polars as pl

from workbench.feeds.columns import family_of, is_counter
from workbench.feeds.feed import Feed
from workbench.views.anomaly import anomaly_marks
from workbench.views.base import LiveView
from workbench.views.timerange import TimeRange, shown

__all__ = ["MetricSeries"]

BAND_COLOR, MEDIAN_COLOR, FOCUS_COLOR = "#8fa9c8", "#34495e", "#7b1fa2"
_LABEL_CHARS = 48


def _pandas(frame: pl.DataFrame, zone: str = "UTC") -> pd.DataFrame:
    """Naive pandas for Bokeh (it has no time zones), times written in ``zone``; an empty frame keeps its columns."""
    return shown(frame, zone)


def _name_figure(plot: Any, _element: Any) -> None:
    """Name the Bokeh figure, so scripts and browser tests can find the series plot."""
    plot.state.name = "wb-series"


def _empty(columns: list[str]) -> pd.DataFrame:
    data: dict[str, Any] = {"window_start": pd.Series(dtype="datetime64[ms]")}
    data.update({c: pd.Series(dtype="float64") for c in columns if c != "window_start"})
    return pd.DataFrame(data)


def short_label(series: str, family: str | None) -> str:
    """A legend label: the labels of a Prometheus series without its family, at most 48 characters.

    >>> short_label('node_cpu_seconds_total{cpu="0",mode="idle"}', "node_cpu_seconds_total")
    'cpu="0",mode="idle"'
    >>> len(short_label("x" * 100, None))
    48
    """
    text = series
    if family is not None and series.startswith(family):
        text = series[len(family) :].strip("{}") or family
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


class MetricSeries(LiveView):
    """A window metric over the time range: entity lines, fleet band, fleet-outlier marks, the drill-down time."""

    metric = param.Selector(  # type: ignore[var-annotated]
        default="cpu_mean", objects=["cpu_mean"], doc="Window metric to plot."
    )
    family = param.Selector(  # type: ignore[var-annotated]
        default=None, objects=[], allow_None=True, doc="Prometheus metric name shown (its series; one unit)."
    )
    entities = param.ListSelector(default=[], objects=[], doc="Entities to draw; empty means the top N.")
    top_n = param.Integer(
        default=5, bounds=(0, 20), doc="With no entity chosen, the N most anomalous within the range (then highest)."
    )
    band = param.Boolean(default=True, doc="Show the fleet median and p5–p95 band.")
    threshold = param.Number(
        default=3.5, bounds=(1.0, 20.0), step=0.5, doc="Mark points with |fleet z| at or above this."
    )
    history = param.Integer(default=5000, bounds=(10, 5000), doc="Windows kept on the chart at most.")

    def __init__(self, feed: Feed, *, timerange: TimeRange | None = None, **params: Any) -> None:
        chosen = params.pop("metric", None)
        super().__init__(feed, **params)
        self.timerange = timerange or TimeRange()
        self._seen = 0
        self._ranked_at = 0.0
        self._drawn: list[str] = []
        self._buf = hv.streams.Buffer(_empty(self._columns()), length=self.history, index=False)
        self._marks_buf = hv.streams.Buffer(_empty(["value", "z"]), length=self.history, index=False)
        self.pane = pn.pane.HoloViews(None, sizing_mode="stretch_width", min_height=320)
        self.caption = pn.pane.Markdown("", margin=(0, 10), styles={"font-size": "12px", "opacity": "0.75"})
        self._choices("metric", feed.metrics, chosen or (None if "cpu_mean" in feed.metrics else feed.default_metric()))
        self.timerange.param.watch(self._range_changed, ["span", "custom", "live", "zone", "browser_zone", "focus"])

    def _build(self) -> Any:
        self._sync_options()
        self._rebuild()
        return pn.Column(self.pane, self.caption, sizing_mode="stretch_width")

    def _range_changed(self, *_events: Any) -> None:
        self._rebuild()

    def _sync_options(self) -> None:
        if self.feed.prometheus:
            families = self.feed.families()
            if families and list(self.param["family"].objects) != families:
                self.param["family"].objects = families
            if self.family is None and families:
                self.family = next((f for f in families if is_counter(f)), families[0])
                return  # the watcher rebuilds
            if self.family is not None:
                wanted = ["rate_mean"] if is_counter(self.family) else ["value_mean", "value_last"]
                self._choices("metric", [m for m in wanted if m in self.feed.metrics] or wanted)
        elif self.feed.metrics:
            self._choices("metric", self.feed.metrics)
        entities = self.feed.entities()
        if self.family is not None:
            entities = [e for e in entities if family_of(e) == self.family]
        options = [*entities, *(e for e in self.entities if e not in entities)]
        if options and options != list(self.param["entities"].objects):
            self.param["entities"].objects = options

    def _bounds(self) -> tuple[datetime, datetime]:
        return self.timerange.bounds(self.feed.newest)

    def _targets(self) -> list[str]:
        if self.entities:
            return list(self.entities)
        start, end = self._bounds()
        return self.feed.top_recent(self.metric, self.top_n, start, end, threshold=self.threshold, family=self.family)

    def _columns(self) -> list[str]:
        k = len(self._drawn)
        return ["low", "median", "high", *(f"v{i}" for i in range(k)), *(f"z{i}" for i in range(k))]

    @param.depends("metric", "family", "entities", "band", "threshold", "history", watch=True)
    def _rebuild(self) -> None:
        """A new buffer and plot for the current choices and range, filled from the feed's rows in the range.

        One wide buffer (window_start, band, one value and one z column per entity)
        feeds every line, so a closed window is one send: one plot update, streamed.
        """
        if self.feed.prometheus and self.family is not None:
            wanted = ["rate_mean"] if is_counter(self.family) else ["value_mean", "value_last"]
            if self.metric not in wanted:
                self._choices("metric", wanted)
                return  # the watcher rebuilds
        self._drawn = self._targets()
        self._ranked_at = time.monotonic()
        m, tr = self.metric, self.timerange
        col = self.feed.column(m, self.family)
        start, end = self._bounds()
        length = min(self.history, max(10, math.ceil(tr.seconds / max(self.feed.step_s, 0.001)) + 2))
        self._buf = hv.streams.Buffer(_empty(self._columns()), length=length, index=False)
        self._marks_buf = hv.streams.Buffer(
            _empty(["value", "z"]).assign(entity=pd.Series(dtype=str)), length=length, index=False
        )
        axis = col.title()
        zone = tr.zone_name
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
            tips = [
                (self.feed.by, e),
                ("time", "@window_start{%F %T}"),
                (axis, f"@v{i}{{0,0.[000]}}"),
                ("fleet z", f"@z{i}{{0.0}}"),
            ]
            layers.append(
                hv.DynamicMap(
                    functools.partial(
                        lambda data, i, label, tips: hv.Curve(
                            data, "window_start", [f"v{i}", f"z{i}"], label=label
                        ).opts(
                            line_width=2,
                            tools=["hover"],
                            hover_tooltips=tips,
                            hover_formatters={"@window_start": "datetime"},
                        ),
                        i=i,
                        label=short_label(e, self.family),
                        tips=tips,
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
        if tr.focus is not None:
            focus = pl.Series([tr.focus]).dt.convert_time_zone(zone).dt.replace_time_zone(None)[0]
            layers.append(hv.VLine(focus).opts(color=FOCUS_COLOR, line_width=2, line_dash="dotted"))
        title = f"{self.family} — {col.label} [{col.unit}]" if self.family else f"{m} — {col.label}"
        if col.unit and not self.family:
            title += f" [{col.unit}]"
        paused = not tr.live or tr.span == "custom"
        xlim = (
            (
                pl.Series([start]).dt.convert_time_zone(zone).dt.replace_time_zone(None)[0],
                pl.Series([end]).dt.convert_time_zone(zone).dt.replace_time_zone(None)[0],
            )
            if paused
            else (None, None)
        )
        overlay = functools.reduce(operator.mul, layers).opts(
            hv.opts.Overlay(
                responsive=True,
                min_height=320,
                title=title,
                xlabel=f"window start ({zone})",
                ylabel=axis,
                legend_position="right",
                show_grid=True,
                framewise=not paused,
                xlim=xlim,
                hooks=[_name_figure],
            ),
            hv.opts.Curve(ylabel=axis),
        )
        self.pane.object = overlay
        who = ", ".join(self._drawn) if self._drawn else "no entity yet"
        where = f"{self.family} series" if self.family else "entities"
        pick = "chosen" if self.entities else f"top {self.top_n} {where}, most anomalous in the range first"
        self.caption.object = f"Lines: {pick} — {who}. Band: fleet p5–p95 and median across all {where}."
        version, rows, bands = self.feed.range(start, end)
        self._seen = version
        self._send(rows, bands)

    # -- data -------------------------------------------------------------------------
    def _family_bands(self, rows: pl.DataFrame) -> pl.DataFrame:
        """The band across one family's series (a Prometheus family: never across units)."""
        m = self.metric
        value = pl.col(m).cast(pl.Float64)
        return rows.group_by("window_start").agg(
            value.quantile(0.05, "linear").alias(f"{m}__p05"),
            value.median().alias(f"{m}__p50"),
            value.quantile(0.95, "linear").alias(f"{m}__p95"),
            (value - value.median()).abs().median().alias(f"{m}__mad"),
        )

    def _send(self, rows: pl.DataFrame, bands: pl.DataFrame) -> None:
        """Send window rows (and their bands) to the buffers: one wide row per window."""
        m, by = self.metric, self.feed.by
        if self.family is not None and rows.height and by in rows.columns and m in rows.columns:
            rows = rows.filter((pl.col(by) == self.family) | pl.col(by).str.starts_with(self.family + "{"))
            bands = self._family_bands(rows) if rows.height else pl.DataFrame()
        if bands.height == 0 or f"{m}__p50" not in bands.columns:
            return
        wide = (
            bands.select(
                "window_start",
                pl.col(f"{m}__p05").alias("low"),
                pl.col(f"{m}__p50").alias("median"),
                pl.col(f"{m}__p95").alias("high"),
                pl.col(f"{m}__mad").alias("__mad"),
            )
            .sort("window_start")
            .tail(self._buf.length)
        )
        marks = None
        if self._drawn and rows.height and m in rows.columns:
            lines = rows.filter(pl.col(by).is_in(self._drawn)).select("window_start", by, pl.col(m).cast(pl.Float64))
            lines = lines.join(wide.select("window_start", "median", "__mad"), on="window_start", how="left")
            lines = lines.with_columns(
                ((pl.col(m) - pl.col("median")) / (1.4826 * pl.col("__mad"))).fill_nan(None).alias("z")
            )
            for i, e in enumerate(self._drawn):
                mine = lines.filter(pl.col(by) == e).select(
                    "window_start", pl.col(m).alias(f"v{i}"), pl.col("z").alias(f"z{i}")
                )
                wide = wide.join(mine.unique("window_start", keep="last"), on="window_start", how="left")
            crossing = lines.filter(pl.col("z").abs() >= self.threshold)
            if crossing.height:
                marks = crossing.select("window_start", pl.col(m).alias("value"), "z", pl.col(by).alias("entity"))
        wide = wide.with_columns(pl.lit(None, pl.Float64).alias(c) for c in self._columns() if c not in wide.columns)
        zone = self.timerange.zone_name
        self._buf.send(_pandas(wide.sort("window_start").select("window_start", *self._columns()), zone))
        if marks is not None:
            self._marks_buf.send(_pandas(marks.sort("window_start"), zone))

    def _push(self) -> None:
        """Send the windows closed since the last push (while following live)."""
        version, rows, bands = self.feed.since(self._seen)
        self._seen = version
        self._send(rows, bands)

    def refresh(self) -> None:
        """Stream new windows while live; re-rank the top N once a minute."""
        if not self.feed.metrics:
            return
        family = self.family
        self._sync_options()
        if self.family != family:
            return  # the watcher rebuilt
        tr = self.timerange
        if not tr.live or tr.span == "custom":
            return  # paused: the chart stays as it is
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
