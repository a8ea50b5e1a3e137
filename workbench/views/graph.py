"""The pipeline view: the node graph with per-node rows/s, batch latency, state size and watermark."""

from __future__ import annotations

import time
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param
import polars as pl

from workbench.views.base import LiveView
from workbench.views.feed import Feed

__all__ = ["PipelineView"]

_SIDE = ("dead_letter", "late", "duplicates")


def _layout(nodes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Nodes on a line (source → … → output) and the side outputs below it."""
    main = ["source", *nodes, "windows"]
    x = {name: float(i) for i, name in enumerate(main)}
    feeds = {"dead_letter": ("decode", "validate"), "duplicates": ("dedupe",), "late": ("window",)}
    rows = [(name, x[name], 1.0, "main") for name in main]
    edges = [(a, b) for a, b in zip(main, main[1:], strict=False)]
    for side in _SIDE:
        sources = [s for s in feeds[side] if s in x]
        if sources:  # below the node(s) that feed it
            rows.append((side, sum(x[s] for s in sources) / len(sources), 0.0, "side"))
            edges += [(s, side) for s in sources]
    pos = pd.DataFrame(rows, columns=["name", "x", "y", "kind"])
    return pos, pd.DataFrame(edges, columns=["start", "end"])


class PipelineView(LiveView):
    """The graph of the running pipeline and a table of its node metrics, refreshed at ≤ 1 Hz."""

    refresh_hz = param.Number(default=1.0, bounds=(0.2, 4.0), doc="Updates per second.")

    def __init__(self, feed: Feed, **params: Any) -> None:
        super().__init__(feed, **params)
        self._pipe = hv.streams.Pipe(data=self._data())
        self.graph = pn.pane.HoloViews(hv.DynamicMap(self._plot, streams=[self._pipe]), sizing_mode="stretch_width")
        self.table = pn.widgets.Tabulator(
            None,
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            height=210,
            theme="simple",
            layout="fit_data_fill",
        )
        self._last = 0.0

    def _data(self) -> dict[str, Any]:
        m = self.feed.nodes()
        k = self.feed.kpis()
        names = m["node"].to_list()
        pos, edges = _layout(names)
        stats = {row["node"]: row for row in m.iter_rows(named=True)}
        counts = self.feed.pipeline.counts()
        side = {"dead_letter": k.dead_letters, "late": counts["late"], "duplicates": counts["duplicates"]}
        rows: list[tuple[str, float, float, int, str]] = []  # label, rows/s, batch ms, state, watermark
        for name in pos["name"]:
            s = stats.get(name)
            if s is not None:
                wm = "" if s["watermark"] is None else f"{s['watermark']:%H:%M:%S}"
                label = f"{name}\n{s['rows_per_s']:,.0f}/s\n{s['last_batch_ms']:.1f} ms"
                rows.append((label, s["rows_per_s"], s["last_batch_ms"], s["state_size"], wm))
            elif name == "source":
                rows.append((f"{k.source}\n{k.events_per_s:,.0f}/s", k.events_per_s, 0.0, 0, ""))
            elif name == "windows":
                rows.append((f"windows\n{k.windows:,}", 0.0, 0.0, 0, ""))
            else:
                rows.append((f"{name}\n{side.get(name, 0):,}", 0.0, 0.0, side.get(name, 0), ""))
        labels, rate, lat, state, marks = (list(c) for c in zip(*rows, strict=True))
        pos = pos.assign(label=labels, rows_per_s=rate, batch_ms=lat, state=state, watermark=marks)
        return {"nodes": pos, "edges": edges, "metrics": m}

    def _plot(self, data: dict[str, Any]) -> Any:
        nodes = hv.Nodes(
            data["nodes"], ["x", "y", "name"], ["kind", "label", "rows_per_s", "batch_ms", "state", "watermark"]
        )
        graph = hv.Graph((data["edges"], nodes)).opts(
            node_color="kind",
            cmap={"main": "#4c78a8", "side": "#e45756"},
            node_size=26,
            edge_line_width=2,
            edge_color="#9aa5b1",
            directed=True,
            arrowhead_length=0.03,
            xaxis=None,
            yaxis=None,
            show_frame=False,
            tools=["hover"],
            responsive=True,
            height=250,
            padding=(0.1, (0.45, 0.2)),
            title="rows/s · last batch latency (hover: state, watermark)",
        )
        labels = hv.Labels(data["nodes"], ["x", "y"], "label").opts(
            yoffset=-0.32, text_font_size="8pt", text_color="#8a8f98"
        )
        return graph * labels

    def _build(self) -> Any:
        return pn.Column(self.graph, self.table, sizing_mode="stretch_width")

    def refresh(self) -> None:
        """Redraw the graph and the table from the shared node metrics (at most ``refresh_hz``)."""
        now = time.monotonic()
        if now - self._last < 1 / self.refresh_hz:
            return
        self._last = now
        data = self._data()
        self._pipe.send(data)
        table = data["metrics"].select(
            "node",
            "kind",
            "batches",
            "rows_in",
            "rows_out",
            "rejected",
            "errors",
            pl.col("rows_per_s").round(0),
            pl.col("last_batch_ms").round(2),
            pl.col("mean_batch_ms").round(2),
            "state_size",
            pl.col("watermark").dt.replace_time_zone(None),
        )
        self.table.value = table.to_pandas()
