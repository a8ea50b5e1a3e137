"""Entities × time heatmap of a window metric (the hottest entities on top).

Drawn with a Bokeh ``rect`` glyph over one ``ColumnDataSource`` whose data is
replaced when a window closes: a few kilobytes per session per window, instead of
re-rendering a plot (HoloViews' ``HeatMap`` re-aggregates on every update, which
costs a UI loop ~250 ms per session).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn
import param
import polars as pl
from bokeh.models import (
    ColumnDataSource,
    DatetimeTicker,
    DatetimeTickFormatter,
    FactorRange,
    HoverTool,
    LinearColorMapper,
)
from bokeh.models.annotations import ColorBar, Title
from bokeh.palettes import Cividis256, Inferno256, Magma256, Turbo256, Viridis256
from bokeh.plotting import figure

from workbench.feeds.feed import Feed, unit_of
from workbench.views.base import LiveView

__all__ = ["EntityHeatmap"]

_PALETTES = {"inferno": Inferno256, "magma": Magma256, "viridis": Viridis256, "cividis": Cividis256, "turbo": Turbo256}
_CLOCK = DatetimeTickFormatter(
    seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M", hourmin="%H:%M", hours="%H:%M", context=None
)


def heatmap_data(rows: pl.DataFrame, metric: str, by: str, *, entities: int, windows: int) -> dict[str, Any]:
    """Cells of the ``entities`` highest (by mean over the span) × the last ``windows`` windows.

    Returns the column data (x = window middle in ms, y = entity, value) and the
    entity order, lowest first (so the hottest is drawn at the top).

    >>> from datetime import datetime, UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> rows = pl.DataFrame({"host": ["a", "b"], "window_start": [t, t], "window_end": [t, t], "cpu": [1.0, 9.0]})
    >>> data = heatmap_data(rows, "cpu", "host", entities=5, windows=3)
    >>> data["order"], data["columns"]["value"].tolist()
    (['a', 'b'], [1.0, 9.0])
    """
    empty = {"columns": {"x": np.array([]), "y": [], "value": np.array([]), "width": np.array([])}, "order": []}
    if rows.height == 0 or metric not in rows.columns:
        return empty
    starts = rows["window_start"].unique().sort().tail(windows)
    recent = rows.filter(pl.col("window_start").is_in(starts.implode()))
    hottest = recent.group_by(by).agg(pl.col(metric).mean().alias("__m")).sort("__m", descending=True, nulls_last=True)
    order = hottest[by].head(entities).reverse().to_list()
    cells = recent.filter(pl.col(by).is_in(order)).select(
        x=(pl.col("window_start").dt.epoch("ms") + pl.col("window_end").dt.epoch("ms")) / 2,
        width=(pl.col("window_end").dt.epoch("ms") - pl.col("window_start").dt.epoch("ms")).cast(pl.Float64),
        y=pl.col(by),
        value=pl.col(metric).cast(pl.Float64),
    )
    columns = {
        "x": cells["x"].to_numpy(),
        "y": cells["y"].to_list(),
        "value": cells["value"].to_numpy(),
        "width": cells["width"].to_numpy(),
    }
    return {"columns": columns, "order": order}


class EntityHeatmap(LiveView):
    """A heatmap of ``metric`` for the ``rows`` hottest entities over the last ``windows`` windows."""

    metric = param.Selector(  # type: ignore[var-annotated]
        default="cpu_mean", objects=["cpu_mean"], doc="Window metric to colour by."
    )
    rows = param.Integer(default=25, bounds=(5, 200), doc="Entities shown (highest mean over the span first).")
    windows = param.Integer(default=60, bounds=(5, 720), doc="Windows shown (most recent).")
    cmap = param.Selector(  # type: ignore[var-annotated]
        default="inferno", objects=list(_PALETTES), doc="Colour map."
    )

    redraw_every = param.Number(
        default=2.0, bounds=(0.25, 60.0), doc="Seconds between redraws at most (each sends the whole table)."
    )

    def __init__(self, feed: Feed, **params: Any) -> None:
        chosen = params.pop("metric", None)
        super().__init__(feed, **params)
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
        fig.rect(
            x="x",
            y="y",
            width="width",
            height=1,
            source=self.source,
            line_color=None,
            fill_color={"field": "value", "transform": self.mapper},
        )
        fig.xaxis.formatter = _CLOCK
        fig.xaxis.ticker = DatetimeTicker(desired_num_ticks=4)
        fig.yaxis.major_label_text_font_size = "8pt"
        fig.grid.visible = False
        self.colorbar = ColorBar(color_mapper=self.mapper, width=10, title_text_font_style="normal")
        fig.add_layout(self.colorbar, "right")
        fig.add_tools(
            HoverTool(
                tooltips=[(feed.by, "@y"), ("window end", "@x{%H:%M:%S}"), ("value", "@value{0.00}")],
                formatters={"@x": "datetime"},
            )
        )
        self.figure = fig
        self.pane = pn.pane.Bokeh(fig, sizing_mode="stretch_width")
        self._choices("metric", feed.metrics, chosen)
        self._label()

    def _label(self) -> None:
        m, unit = self.metric, unit_of(self.metric)
        self.title.text = f"{m}: top {self.rows} {self.feed.by}s, last {self.windows} windows"
        self.colorbar.title = f"{m} [{unit}]" if unit else m
        self.mapper.palette = _PALETTES[self.cmap]

    def _build(self) -> Any:
        return self.pane

    @param.depends("metric", "rows", "windows", "cmap", watch=True)
    def _redraw(self) -> None:
        self._label()
        self._redraw_now()

    def refresh(self) -> None:
        """Replace the cells when a window has closed since the last draw."""
        metrics = self.feed.metrics
        if metrics:
            self._choices("metric", metrics)
        if self._window_due(self.redraw_every) is None:
            return
        _, rows = self.feed.windows.tail(self.windows + 2)  # a frame holds one window, rarely two
        data = heatmap_data(rows, self.metric, self.feed.by, entities=self.rows, windows=self.windows)
        self.y_range.factors = data["order"]
        self.source.data = data["columns"]
        values = data["columns"]["value"]
        finite = values[np.isfinite(values)] if len(values) else values
        if len(finite):
            self.mapper.low, self.mapper.high = float(finite.min()), float(finite.max())
