"""KPI cards: events/s, lag, watermark delay, dead-letter rate and open alerts.

Examples
--------
>>> _fmt_seconds(0.42), _fmt_seconds(75), _fmt_seconds(None)
('0.42 s', '1m 15s', '–')
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param

from workbench.feeds.feed import Feed, Kpis
from workbench.views.base import LiveView

__all__ = ["KpiCards"]

_OK, _WARN, _BAD, _MUTED = "#2e7d32", "#b26a00", "#c62828", "#6b7280"


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    if abs(s) < 10:
        return f"{s:.2f} s"
    if abs(s) < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s" if s >= 60 else f"{s:.0f} s"
    return f"{s / 3600:.1f} h"


_CSS = """
.wb-kpi-card { border-radius: 8px; padding: 8px 14px; border: 1px solid rgba(127,127,127,.3);
               background: var(--panel-surface-color, transparent); }
.wb-kpi-title { font-size: 12px; letter-spacing: .04em; text-transform: uppercase; opacity: .75; }
.wb-kpi-value { font-size: 26px; font-weight: 600; line-height: 1.3; font-variant-numeric: tabular-nums; }
.wb-kpi-note { font-size: 12px; opacity: .7; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
"""


def _card() -> pn.pane.HTML:
    # the stylesheet goes on each pane: a pane renders in its own shadow root
    return pn.pane.HTML("", stylesheets=[_CSS], margin=(4, 6), min_width=160, sizing_mode="stretch_width")


class KpiCards(LiveView):
    """The headline numbers of the live pipeline, one card each.

    Colours follow the thresholds: lag and watermark delay turn amber past
    ``lag_warn_s`` and red past twice that; the dead-letter rate past ``dead_warn``.
    """

    lag_warn_s = param.Number(default=10.0, bounds=(0.1, 3600), doc="Lag (s) above which the card turns amber.")
    dead_warn = param.Number(default=0.02, bounds=(0.0, 1.0), doc="Dead-letter share above which the card turns amber.")

    def __init__(self, feed: Feed, **params: Any) -> None:
        super().__init__(feed, **params)
        self.cards = {k: _card() for k in ("events", "lag", "watermark", "dead", "alerts")}
        self.last: Kpis | None = None

    def _build(self) -> Any:
        return pn.Row(*self.cards.values(), sizing_mode="stretch_width")

    @staticmethod
    def _html(title: str, value: str, note: str, color: str) -> str:
        return (
            f'<div class="wb-kpi-card" style="border-left:4px solid {color}">'
            f'<div class="wb-kpi-title">{title}</div>'
            f'<div class="wb-kpi-value" style="color:{color}">{value}</div>'
            f'<div class="wb-kpi-note">{note}</div></div>'
        )

    def _lag_color(self, s: float | None) -> str:
        if s is None:
            return _MUTED
        return _OK if s <= self.lag_warn_s else _WARN if s <= 2 * self.lag_warn_s else _BAD

    def refresh(self) -> None:
        """Redraw the cards from the feed's shared KPI snapshot (only when it changed)."""
        k = self.feed.kpis()
        if k == self.last:
            return
        self.last = k
        html = self._html
        snapshot = getattr(self.feed, "snapshot_at", None)
        if snapshot is not None:  # finished data (a static export): no live rate to show
            zone = snapshot.strftime("%Z") or "UTC"
            clock, day = snapshot.strftime("%H:%M:%S"), snapshot.strftime("%Y-%m-%d")
            self.cards["events"].object = html(f"snapshot at ({zone})", clock, f"{day} · {k.ingested:,} events", _MUTED)
        else:
            rate, note = f"{k.events_per_s:,.0f}", f"{k.ingested:,} ingested · {k.source}"
            self.cards["events"].object = html("events / s", rate, note, _OK if k.running else _BAD)
        self.cards["lag"].object = html(
            "lag", _fmt_seconds(k.lag_s), "now − newest event time", self._lag_color(k.lag_s)
        )
        self.cards["watermark"].object = html(
            "watermark delay",
            _fmt_seconds(k.watermark_delay_s),
            "now − watermark",
            self._lag_color(k.watermark_delay_s),
        )
        self.cards["dead"].object = html(
            "dead-letter rate",
            f"{k.dead_letter_rate:.2%}",
            f"{k.dead_letters:,} dead letters",
            _OK if k.dead_letter_rate <= self.dead_warn else _WARN,
        )
        if k.open_alerts is None:
            self.cards["alerts"].object = html("open alerts", "–", "no alert rules configured", _MUTED)
        else:
            self.cards["alerts"].object = html(
                "open alerts", f"{k.open_alerts:,}", "firing now", _BAD if k.open_alerts else _OK
            )
