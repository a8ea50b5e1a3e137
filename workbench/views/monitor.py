"""The live monitor view: KPIs and windowed metrics of the shared pipeline.

Each session polls the shared :class:`~workbench.views.live.LiveFrame` at most
``refresh_hz`` times a second (latest-wins) and streams only new rows into
bounded ``hv.streams.Buffer`` objects, so updates are patches, not re-renders.
"""

from __future__ import annotations

import holoviews as hv
import pandas as pd
import panel as pn
import param
import polars as pl

from workbench.views.live import LiveFrame

__all__ = ["WindowMonitor"]

_METRICS = ["cpu_mean", "cpu_max", "mem_mean", "mem_max", "latency_p50", "latency_p95", "latency_p99", "error_rate"]


def _fleet(rows: pl.DataFrame, metric: str) -> pd.DataFrame:
    """Fleet band per window: p5, median and p95 of ``metric`` across hosts."""
    out = (
        rows.group_by("window_start")
        .agg(
            pl.col(metric).quantile(0.05, "linear").alias("low"),
            pl.col(metric).median().alias("median"),
            pl.col(metric).quantile(0.95, "linear").alias("high"),
        )
        .sort("window_start")
        .with_columns(pl.col("window_start").dt.replace_time_zone(None))
    )
    return out.to_pandas()


class WindowMonitor(pn.viewable.Viewer):
    """Live fleet view of one window metric, with the events/s and dead-letter KPIs."""

    metric = param.Selector(default="cpu_mean", objects=_METRICS, doc="Window metric to plot.")  # type: ignore[var-annotated]
    history = param.Integer(default=360, bounds=(10, 5000), doc="Windows kept on the chart.")
    refresh_hz = param.Number(default=2.0, bounds=(0.2, 4.0), doc="Updates per second (at most 4).")

    def __init__(self, windows: LiveFrame, dead_letter: LiveFrame, pipeline=None, **params):
        super().__init__(**params)
        self._windows = windows
        self._dead = dead_letter
        self._pipeline = pipeline
        self._seen = 0
        empty = pd.DataFrame({"window_start": pd.Series(dtype="datetime64[ms]"), "low": [], "median": [], "high": []})
        self._buffer = hv.streams.Buffer(empty, length=self.history, index=False)
        band = hv.DynamicMap(
            lambda data: hv.Area(data, "window_start", ["low", "high"]).opts(alpha=0.25, color="#4c78a8"),
            streams=[self._buffer],
        )
        line = hv.DynamicMap(
            lambda data: hv.Curve(data, "window_start", "median").opts(color="#1f4e79", line_width=2),
            streams=[self._buffer],
        )
        self._plot = pn.pane.HoloViews(
            (band * line).opts(
                responsive=True,
                height=380,
                xlabel="window start (UTC)",
                ylabel=self.metric,
                title="Fleet: median and p5–p95 band across hosts",
                framewise=True,
            ),
            sizing_mode="stretch_width",
        )
        self._events = pn.indicators.Number(label="events / s", value=0, format="{value:,.0f}", font_size="28pt")
        self._windows_n = pn.indicators.Number(label="windows", value=0, format="{value:,.0f}", font_size="28pt")
        self._dead_n = pn.indicators.Number(label="dead letters", value=0, format="{value:,.0f}", font_size="28pt")
        self._wm = pn.pane.Markdown("watermark: –")
        self._last_counts = None
        self._callback: object | None = None

    @param.depends("metric", watch=True)
    def _reset(self) -> None:
        self._seen = 0
        self._buffer.clear()
        self._plot.object = self._plot.object.opts(ylabel=self.metric)
        self.refresh()

    def refresh(self) -> None:
        """Pull new window rows into the chart and update the KPIs (cheap when nothing is new)."""
        version, new = self._windows.since(self._seen)
        if new.height and self.metric in new.columns:
            self._seen = version
            self._buffer.send(_fleet(new, self.metric))
        if self._pipeline is not None:
            counts = self._pipeline.counts()
            m = self._pipeline.source
            rate = counts["ingested"] / max(self._pipeline.clock.monotonic() - (self._pipeline.started_at or 0), 1e-9)
            self._events.value = rate
            self._windows_n.value = self._pipeline.outputs["windows"].metrics.rows_out
            self._dead_n.value = counts["dead_lettered"]
            wm = self._pipeline.outputs["windows"].watermark
            self._wm.object = f"watermark: **{wm:%H:%M:%S} UTC** · source: {type(m).__name__}" if wm else "watermark: –"

    def __panel__(self):
        """Layout: KPIs above the chart; widgets come from the parameters."""
        if self._callback is None and pn.state.curdoc is not None:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=int(1000 / self.refresh_hz))
        select = {"type": pn.widgets.Select, "width": 220}
        controls = pn.Param(self.param, parameters=["metric"], show_name=False, widgets={"metric": select})
        return pn.Column(
            pn.Row(self._events, self._windows_n, self._dead_n, controls, sizing_mode="stretch_width"),
            self._wm,
            self._plot,
            sizing_mode="stretch_width",
        )
