"""Entities × time heatmap of a window metric (the hottest entities on top)."""

from __future__ import annotations

from typing import Any

import holoviews as hv
import panel as pn
import param
import polars as pl
from bokeh.models import DatetimeTickFormatter

from workbench.views.base import LiveView
from workbench.views.feed import Feed, unit_of
from workbench.views.series import _pandas

__all__ = ["EntityHeatmap"]

# times of day only: the date context under the first tick crowds a narrow axis
_CLOCK = DatetimeTickFormatter(
    seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M", hourmin="%H:%M", hours="%H:%M", context=None
)


class EntityHeatmap(LiveView):
    """A heatmap of ``metric`` for the ``rows`` hottest entities over the last ``windows`` windows.

    Redrawn through an ``hv.streams.Pipe`` only when a new window has closed.
    """

    metric = param.Selector(  # type: ignore[var-annotated]
        default="cpu_mean", objects=["cpu_mean"], doc="Window metric to colour by."
    )
    rows = param.Integer(default=25, bounds=(5, 200), doc="Entities shown (highest mean over the span first).")
    windows = param.Integer(default=60, bounds=(5, 720), doc="Windows shown (most recent).")
    cmap = param.Selector(  # type: ignore[var-annotated]
        default="fire", objects=["fire", "viridis", "inferno", "blues", "coolwarm"], doc="Colour map."
    )

    def __init__(self, feed: Feed, **params: Any) -> None:
        chosen = params.pop("metric", None)
        super().__init__(feed, **params)
        self._seen = -1
        self._pipe = hv.streams.Pipe(data=self._frame())
        self.pane = pn.pane.HoloViews(
            hv.DynamicMap(self._plot, streams=[self._pipe]), sizing_mode="stretch_width", min_height=360
        )

        self._choices("metric", feed.metrics, chosen)

    def _frame(self) -> Any:
        rows = self.feed.windows.latest()
        m, by = self.metric, self.feed.by
        if rows.height == 0 or m not in rows.columns:
            return _pandas(
                pl.DataFrame(
                    {"window_start": [], by: [], m: []},
                    schema={"window_start": pl.Datetime("ms"), by: pl.String, m: pl.Float64},
                )
            )
        starts = rows["window_start"].unique().sort().tail(self.windows)
        recent = rows.filter(pl.col("window_start").is_in(starts.implode()))
        hottest = recent.group_by(by).agg(pl.col(m).mean().alias("__m")).sort("__m", descending=True).head(self.rows)
        order = hottest[by].reverse().to_list()  # hottest at the top of the y axis
        frame = recent.filter(pl.col(by).is_in(order)).select("window_start", by, pl.col(m).cast(pl.Float64))
        frame = frame.with_columns(pl.col(by).cast(pl.Enum(order))).sort(by, "window_start")
        return _pandas(frame.with_columns(pl.col(by).cast(pl.String)))

    def _plot(self, data: Any) -> Any:
        m, unit = self.metric, unit_of(self.metric)
        return hv.HeatMap(data, ["window_start", self.feed.by], m).opts(
            cmap=self.cmap,
            colorbar=True,
            clabel=f"{m} [{unit}]" if unit else m,
            responsive=True,
            min_height=360,
            title=f"{m} — top {self.rows} {self.feed.by}s",
            xlabel="window start (UTC)",
            ylabel=self.feed.by,
            tools=["hover"],
            yaxis="left",
            fontsize={"yticks": 8},
            xformatter=_CLOCK,
            xticks=4,
        )

    def _build(self) -> Any:
        return self.pane

    @param.depends("metric", "rows", "windows", "cmap", watch=True)
    def _redraw(self) -> None:
        self._seen = -1
        self.refresh()

    def refresh(self) -> None:
        """Redraw when a window has closed since the last draw."""
        metrics = self.feed.metrics
        if metrics:
            self._choices("metric", metrics)
        version = self.feed.windows.version
        if version != self._seen:
            self._seen = version
            self._pipe.send(self._frame())
