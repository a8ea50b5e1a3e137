"""The pipeline view: the node graph, each node with its rows/s, batch latency, state size and watermark.

Drawn as one SVG (text and lines in ``currentColor``, so it follows the light or
dark theme) and redrawn at most once a second, only when a number changed — far
cheaper per session than re-rendering a plot.

Examples
--------
>>> from workbench.testing import FrameSource, server_metrics_frame
>>> from workbench import Pipeline, Tumbling
>>> from workbench.feeds.feed import Feed
>>> p = Pipeline(FrameSource([server_metrics_frame(100)]), name="doc-graph")
>>> _ = p.standard("server_metrics", Tumbling("10s"))
>>> svg = pipeline_svg(Feed(p))
>>> svg.startswith("<svg") and "dedupe" in svg and "dead_letter" in svg
True
"""

from __future__ import annotations

import html
import time
from typing import Any

import panel as pn
import param

from workbench.feeds.feed import Feed
from workbench.views.base import LiveView

__all__ = ["PipelineView", "pipeline_svg"]

_W, _H, _GAP, _SIDE_H = 168, 84, 34, 46
_FEEDS = {"dead_letter": ("decode", "validate", "horizon"), "duplicates": ("dedupe",), "late": ("window",)}
_MAIN_FILL, _SIDE_FILL, _BAD = "rgba(76,120,168,.16)", "rgba(228,87,86,.14)", "#c62828"


def _fmt(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _box(x: float, y: float, w: float, h: float, fill: str, stroke: str, lines: list[str]) -> str:
    out = [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{stroke}" />']
    for i, text in enumerate(lines):
        weight = ' font-weight="600"' if i == 0 else ' opacity=".8"'
        size = 13 if i == 0 else 12
        out.append(f'<text x="{x + 10}" y="{y + 20 + 16 * i}" font-size="{size}"{weight}>{html.escape(text)}</text>')
    return "".join(out)


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return (
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="currentColor" stroke-opacity=".45" '
        'marker-end="url(#wb-arrow)" />'
    )


def pipeline_svg(feed: Feed) -> str:
    """The graph of ``feed``'s pipeline as an SVG string."""
    nodes = feed.nodes()
    k = feed.kpis()
    counts = feed.pipeline.counts()
    src = feed.pipeline.source.health()  # a broker's connection and last message age
    first = [k.source, f"{_fmt(k.events_per_s)} events/s", f"{_fmt(k.ingested)} ingested"]
    if src:
        age = src.get("last_message_age_s")
        state = "connected" if src.get("connected") else "DISCONNECTED"
        first.append(f"{state} · last msg {'–' if age is None else f'{age:.1f} s'} ago")
    main: list[tuple[str, list[str], bool]] = [(k.source, first, not k.running or src.get("connected") is False)]
    for row in nodes.iter_rows(named=True):
        wm = row["watermark"]
        lines = [
            row["node"],
            f"{_fmt(row['rows_per_s'])} rows/s · {row['last_batch_ms']:.1f} ms",
            f"state {_fmt(row['state_size'])} · in {_fmt(row['rows_in'])}",
        ]
        if wm is not None:
            lines.append(f"watermark {wm:%H:%M:%S}")
        main.append((row["node"], lines, row["errors"] > 0))
    main.append(("windows", ["windows (output)", f"{_fmt(k.windows)} rows"], False))
    side = {"dead_letter": counts["dead_lettered"], "duplicates": counts["duplicates"], "late": counts["late"]}

    width = len(main) * (_W + _GAP) - _GAP + 20
    height = _H + 40 + _SIDE_H + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px;color:inherit;font-family:inherit" fill="currentColor">',
        '<defs><marker id="wb-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="currentColor" fill-opacity=".55"/></marker></defs>',
    ]
    x_of: dict[str, float] = {}
    for i, (name, lines, bad) in enumerate(main):
        x: float = 10 + i * (_W + _GAP)
        x_of[name] = x
        parts.append(_box(x, 10, _W, _H, _MAIN_FILL, _BAD if bad else "rgba(76,120,168,.7)", lines))
        if i:
            parts.append(_arrow(x - _GAP, 10 + _H / 2, x - 2, 10 + _H / 2))
    y_side = 10 + _H + 40
    for name, sources in _FEEDS.items():
        xs = [x_of[s] for s in sources if s in x_of]
        if not xs:
            continue
        x = sum(xs) / len(xs) + 10
        parts.append(
            _box(x, y_side, _W - 20, _SIDE_H, _SIDE_FILL, "rgba(228,87,86,.7)", [name, f"{side[name]:,} rows"])
        )
        for sx in xs:
            parts.append(_arrow(sx + _W / 2, 10 + _H, x + (_W - 20) / 2, y_side - 2))
    parts.append("</svg>")
    return "".join(parts)


class PipelineView(LiveView):
    """The graph of the running pipeline with live per-node numbers, redrawn at most ``refresh_hz``."""

    refresh_hz = param.Number(default=1.0, bounds=(0.2, 4.0), doc="Updates per second.")

    def __init__(self, feed: Feed, **params: Any) -> None:
        super().__init__(feed, **params)
        self.svg = pn.pane.HTML("", sizing_mode="stretch_width", min_height=200)
        self._last = 0.0

    def _build(self) -> Any:
        return self.svg

    def refresh(self) -> None:
        """Redraw the graph from the shared node metrics (at most ``refresh_hz``, only on change)."""
        now = time.monotonic()
        if now - self._last < 1 / self.refresh_hz:
            return
        self._last = now
        svg = pipeline_svg(self.feed)
        if svg != self.svg.object:
            self.svg.object = svg
