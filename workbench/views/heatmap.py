"""Entities × time heatmap of a window metric over the time range (the hottest entities on top).

Clicking a cell calls ``on_pick(entity, time)``: the dashboard opens that entity's
series, windows and evidence around that time. Over long ranges neighbouring windows
are merged into wider cells (at most ``windows`` columns), so a 6 h range costs what
a 15 m one does.

Drawn with a Bokeh ``rect`` glyph over one ``ColumnDataSource`` whose data is
replaced when a window closes: a few kilobytes per session per window, instead of
re-rendering a plot (HoloViews' ``HeatMap`` re-aggregates on every update, which
costs a UI loop ~250 ms per session).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import panel as pn
import param
import polars as pl
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    DatetimeTicker,
    DatetimeTickFormatter,
    FactorRange,
    HoverTool,
    LinearColorMapper,
    TapTool,
)
from bokeh.models.annotations import ColorBar, Title
from bokeh.palettes import Cividis256, Inferno256, Magma256, Turbo256, Viridis256
from bokeh.plotting import figure

from workbench.feeds.columns import is_counter
from workbench.feeds.feed import Feed
from workbench.views.base import LiveView
from workbench.views.series import short_label
from workbench.views.timerange import TimeRange

__all__ = ["EntityHeatmap"]

_PALETTES = {"inferno": Inferno256, "magma": Magma256, "viridis": Viridis256, "cividis": Cividis256, "turbo": Turbo256}
# Browser side of a click: the chosen cell's label and time (a counter makes a second click
# on the same cell a change too).
_PICK = """
const i = source.selected.indices[0];
if (i === undefined) return;
const label = source.data.y[i], t = Number(source.data.t[i]);
const clicks = tap.tags.length === 3 ? tap.tags[2] + 1 : 1;
tap.tags = [label, t, clicks];
"""


def _clock() -> DatetimeTickFormatter:
    """The time axis' formatter, a new model per figure.

    A Bokeh model belongs to one document: one shared by every figure kept the first
    session's or notebook output's document alive.
    """
    return DatetimeTickFormatter(
        seconds="%H:%M:%S",
        minsec="%H:%M:%S",
        minutes="%H:%M",
        hourmin="%H:%M",
        hours="%H:%M",
        days="%b %d %H:%M",  # a tick on midnight is formatted as a day: the time stays on it
        context=None,
    )


def heatmap_data(
    rows: pl.DataFrame,
    metric: str,
    by: str,
    *,
    entities: int,
    windows: int,
    zone: str = "UTC",
    family: str | None = None,
) -> dict[str, Any]:
    """Cells of the ``entities`` highest (by mean over the rows) × at most ``windows`` columns.

    Windows beyond ``windows`` columns are merged (the mean of the merged windows). Returns
    the column data (x = cell middle in ms, written in ``zone``; t = the cell's start in
    UTC ms; y = entity; value; width) and the entity order, lowest first (so the hottest is
    drawn at the top).

    >>> from datetime import datetime, UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> rows = pl.DataFrame({"host": ["a", "b"], "window_start": [t, t], "window_end": [t, t], "cpu": [1.0, 9.0]})
    >>> data = heatmap_data(rows, "cpu", "host", entities=5, windows=3)
    >>> data["order"], data["columns"]["value"].tolist()
    (['a', 'b'], [1.0, 9.0])
    """
    empty = {
        "columns": {"x": np.array([]), "t": np.array([]), "y": [], "value": np.array([]), "width": np.array([])},
        "order": [],
    }
    if rows.height == 0 or metric not in rows.columns:
        return empty
    if family is not None:
        rows = rows.filter((pl.col(by) == family) | pl.col(by).str.starts_with(family + "{"))
        if rows.height == 0:
            return empty
    starts = rows["window_start"].unique().sort()
    step = (rows["window_end"] - rows["window_start"]).median()
    step_ms = max(int(step.total_seconds() * 1000), 1) if step is not None else 1_000  # type: ignore[union-attr]
    span_ms = (starts[-1] - starts[0]).total_seconds() * 1000 + step_ms if len(starts) else step_ms
    bucket = max(step_ms, int(np.ceil(span_ms / max(windows, 1) / step_ms)) * step_ms)
    hottest = rows.group_by(by).agg(pl.col(metric).mean().alias("__m")).sort("__m", descending=True, nulls_last=True)
    order = hottest[by].head(entities).reverse().cast(pl.String).to_list()
    t0 = (pl.col("window_start").dt.epoch("ms") // bucket) * bucket
    cells = (
        rows.filter(pl.col(by).cast(pl.String).is_in(order))
        .group_by(pl.col(by).cast(pl.String).alias("y"), t0.alias("t"))
        .agg(pl.col(metric).cast(pl.Float64).mean().alias("value"))
        .with_columns(
            pl.col("t")
            .cast(pl.Datetime("ms", "UTC"))
            .dt.convert_time_zone(zone)
            .dt.replace_time_zone(None)
            .alias("local")
        )
        .select(
            x=pl.col("local").dt.epoch("ms") + bucket / 2,
            t="t",
            width=pl.lit(float(bucket)),
            y="y",
            value="value",
        )
        .sort("t", "y")
    )
    columns = {
        "x": cells["x"].to_numpy(),
        "t": cells["t"].to_numpy(),
        "y": cells["y"].to_list(),
        "value": cells["value"].to_numpy(),
        "width": cells["width"].to_numpy(),
    }
    return {"columns": columns, "order": order}


class EntityHeatmap(LiveView):
    """A heatmap of ``metric`` for the ``rows`` hottest entities over the time range; a click drills down."""

    metric = param.Selector(  # type: ignore[var-annotated]
        default="cpu_mean", objects=["cpu_mean"], doc="Window metric to colour by."
    )
    rows = param.Integer(default=25, bounds=(5, 200), doc="Entities shown (highest mean over the range first).")
    windows = param.Integer(
        default=180, bounds=(5, 720), doc="Columns at most (beyond, neighbouring windows are merged)."
    )
    cmap = param.Selector(  # type: ignore[var-annotated]
        default="inferno", objects=list(_PALETTES), doc="Colour map."
    )
    family = param.Selector(  # type: ignore[var-annotated]
        default=None, objects=[], allow_None=True, doc="Prometheus metric name shown (its series)."
    )

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
        chosen = params.pop("metric", None)
        super().__init__(feed, **params)
        self.timerange = timerange or TimeRange()
        self.on_pick = on_pick
        self.picked: tuple[str, datetime] | None = None
        self._entities: dict[str, str] = {}  # y label → entity
        self.source = ColumnDataSource(data=heatmap_data(pl.DataFrame(), "", "", entities=1, windows=1)["columns"])
        self.mapper = LinearColorMapper(palette=_PALETTES[self.cmap], nan_color="rgba(0,0,0,0)")
        self.y_range = FactorRange(factors=[])
        self.title = Title(text="")
        fig = figure(
            x_axis_type="datetime",
            y_range=self.y_range,
            title=self.title,
            sizing_mode="stretch_width",
            height=420,
            toolbar_location="right",
            tools="pan,xwheel_zoom,reset,save",
            x_axis_label="window start (UTC)",
            y_axis_label=feed.by,
            name="wb-heatmap",
        )
        cells = fig.rect(
            x="x",
            y="y",
            width="width",
            height=1,
            source=self.source,
            line_color=None,
            fill_color={"field": "value", "transform": self.mapper},
            selection_line_color="#00bcd4",
            nonselection_fill_alpha=0.85,
        )
        fig.xaxis.formatter = _clock()
        fig.xaxis.ticker = DatetimeTicker(desired_num_ticks=6)
        fig.yaxis.major_label_text_font_size = "8pt"
        fig.grid.visible = False
        self.colorbar = ColorBar(color_mapper=self.mapper, width=10, title_text_font_style="normal")
        fig.add_layout(self.colorbar, "right")
        self.hover = HoverTool(
            renderers=[cells],
            tooltips=[(feed.by, "@y"), ("window start", "@x{%F %T}"), ("value", "@value{0,0.[000]}")],
            formatters={"@x": "datetime"},
        )
        # The clicked cell is read in the browser, from the cells it shows at that moment, and
        # sent as its (entity, time): an index would be read on the server against cells that a
        # live redraw may have replaced meanwhile (the wrong entity, or none).
        self.tap = TapTool(renderers=[cells], tags=[])
        self.source.selected.js_on_change(
            "indices", CustomJS(args={"source": self.source, "tap": self.tap}, code=_PICK)
        )
        self.tap.on_change("tags", self._tapped)
        fig.add_tools(self.hover, self.tap)
        self.figure = fig
        self.pane = pn.pane.Bokeh(fig, sizing_mode="stretch_width")
        self._choices("metric", feed.metrics, chosen or (None if "cpu_mean" in feed.metrics else feed.default_metric()))
        self._label()
        self.timerange.param.watch(lambda *_: self._redraw_now(), ["span", "custom", "live", "zone", "browser_zone"])

    def _tapped(self, _attr: str, _old: Any, new: list[Any]) -> None:
        """A click on a cell, as the browser saw it: that entity at that cell's time."""
        if len(new) != 3:
            return
        label, t, _clicks = new
        if not isinstance(label, str) or not isinstance(t, int | float) or not np.isfinite(t):
            return
        entity = str(self._entities.get(label, label))
        at = datetime.fromtimestamp(float(t) / 1000, UTC)
        self.picked = (entity, at)
        if self.on_pick is not None:
            self.on_pick(entity, at)

    def _label(self) -> None:
        m = self.metric
        col = self.feed.column(m, self.family)
        what = f"{self.family} — {col.label}" if self.family else f"{m} — {col.label}"
        self.title.text = f"{what} — top {self.rows} by mean over the range ({self.feed.by} on the left)"
        self.colorbar.title = f"[{col.unit}]" if col.unit else ""
        self.mapper.palette = _PALETTES[self.cmap]
        self.figure.xaxis.axis_label = f"window start ({self.timerange.zone_name})"
        unit = f" {col.unit}" if col.unit else ""
        self.hover.tooltips = [
            (self.feed.by, "@entity" if self.family else "@y"),
            ("window start", "@x{%F %T}"),
            (m, f"@value{{0,0.[000]}}{unit}"),
        ]

    def _build(self) -> Any:
        return self.pane

    @param.depends("metric", "rows", "windows", "cmap", "family", watch=True)
    def _redraw(self) -> None:
        self._label()
        self._redraw_now()

    def _redraw_now(self) -> None:
        self._label()
        super()._redraw_now()

    def refresh(self) -> None:
        """Replace the cells when a window has closed since the last draw (while live)."""
        if self.feed.prometheus:
            families = self.feed.families()
            if families and list(self.param["family"].objects) != families:
                self.param["family"].objects = families
            if self.family is None and families:
                self.family = families[0]
                return
            if self.family is not None:
                self._choices("metric", ["rate_mean"] if is_counter(self.family) else ["value_mean", "value_last"])
        elif self.feed.metrics:
            self._choices("metric", self.feed.metrics)
        tr = self.timerange
        if self._drawn_version >= 0 and (not tr.live or tr.span == "custom"):
            return  # paused: drawn once for the range
        if self._window_due(self.redraw_every) is None:
            return
        start, end = tr.bounds(self.feed.newest)
        _, rows, _ = self.feed.range(start, end)
        data = heatmap_data(
            rows,
            self.metric,
            self.feed.by,
            entities=self.rows,
            windows=self.windows,
            zone=tr.zone_name,
            family=self.family,
        )
        columns = data["columns"]
        if self.family is not None:
            labels: dict[str, str] = {}
            for e in data["order"]:
                label = short_label(e, self.family)
                labels[e] = label if label not in labels.values() else f"{label} #{len(labels)}"
            self._entities = {v: k for k, v in labels.items()}
            columns["entity"] = list(columns["y"])
            columns["y"] = [labels[e] for e in columns["y"]]
            data["order"] = [labels[e] for e in data["order"]]
        else:
            self._entities = {}
        self.source.selected.indices = []
        self.y_range.factors = data["order"]
        self.source.data = columns
        values = columns["value"]
        finite = values[np.isfinite(values)] if len(values) else values
        if len(finite):
            self.mapper.low, self.mapper.high = float(finite.min()), float(finite.max())
