"""``TimeRange``: the time range every view of a dashboard shows, and how times are written.

A range is the last 5 m / 15 m / 1 h / 6 h of data, or a custom interval; it follows
the newest window while *live*, and stays where it is when *paused* (a drill-down pauses
it, so the time looked at does not scroll away). Times are shown in UTC or in the
browser's time zone. Bokeh has no time zones, so views shift their times into the
shown zone before sending them (:func:`shown`).

Examples
--------
>>> from datetime import UTC, datetime
>>> r = TimeRange(span="5 m")
>>> end = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
>>> [f"{t:%H:%M}" for t in r.bounds(end)]
['11:55', '12:00']
>>> r.live = False  # paused: the range stays where it was
>>> [f"{t:%H:%M}" for t in r.bounds(datetime(2024, 1, 1, 13, 0, tzinfo=UTC))]
['11:55', '12:00']
>>> r.zone = "browser"; r.browser_zone = "Europe/Paris"; r.zone_name
'Europe/Paris'
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import param
import polars as pl

__all__ = ["SPANS", "TimeRange", "shown"]

#: The range choices and their length in seconds (``custom``: from ``custom``).
SPANS: dict[str, float | None] = {"5 m": 300, "15 m": 900, "1 h": 3600, "6 h": 21600, "custom": None}


class TimeRange(param.Parameterized):
    """The shown time range (event time of the windows) and the zone times are written in."""

    span = param.Selector(default="15 m", objects=list(SPANS), doc="Time range: the last … of data, or custom.")  # type: ignore[var-annotated]
    custom = param.DateRange(default=None, allow_None=True, doc="Custom range (in the shown zone).")
    live = param.Boolean(default=True, doc="Follow live (off: paused where it is).")
    zone = param.Selector(default="UTC", objects=["UTC", "browser"], doc="Write times in UTC or the browser's zone.")  # type: ignore[var-annotated]
    browser_zone = param.String(default="UTC", doc="The browser's IANA time zone (set by the page).")
    focus = param.Date(default=None, allow_None=True, doc="The time drilled into (a marker on the charts).")

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._frozen: tuple[datetime, datetime] | None = None
        self._last: tuple[datetime, datetime] | None = None

    @property
    def zone_name(self) -> str:
        """The IANA zone times are shown in."""
        return self.browser_zone if self.zone == "browser" else "UTC"

    @property
    def tz(self) -> ZoneInfo:
        """The shown zone (UTC when the browser's is unknown)."""
        try:
            return ZoneInfo(self.zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")

    @property
    def seconds(self) -> float:
        """Length of the range in seconds."""
        if self.span == "custom" and self.custom is not None:
            a, b = self._custom()
            return max((b - a).total_seconds(), 1.0)
        return float(SPANS.get(self.span) or 900)

    def _custom(self) -> tuple[datetime, datetime]:
        a, b = cast(tuple[datetime, datetime], self.custom)
        return self._aware(a), self._aware(b)

    def _aware(self, t: datetime) -> datetime:
        return t.replace(tzinfo=self.tz).astimezone(UTC) if t.tzinfo is None else t.astimezone(UTC)

    def bounds(self, newest: datetime | None) -> tuple[datetime, datetime]:
        """``(start, end)`` in UTC: the range ending at ``newest`` (the latest window) while live."""
        if self.span == "custom" and self.custom is not None:
            return self._custom()
        if not self.live and self._frozen is not None:
            return self._frozen
        end = newest or (self._last[1] if self._last else datetime.now(UTC))
        self._last = (end - timedelta(seconds=self.seconds), end)
        return self._last

    @param.depends("live", "span", watch=True)
    def _freeze(self) -> None:
        """Pausing keeps the range shown at that moment; following live again lets it move."""
        if self.live or self._last is None:
            self._frozen = None
        else:
            end = self._frozen[1] if self._frozen is not None else self._last[1]
            self._frozen = (end - timedelta(seconds=self.seconds), end)

    @param.depends("span", watch=True)
    def _resume(self) -> None:
        """Picking a relative range ("last 5 m") follows live again."""
        if self.span != "custom" and not self.live:
            self.live = True

    def pause_at(self, t: datetime) -> None:
        """Drill into ``t``: pause with ``t`` inside the range (at its middle, or the range stays when it holds it)."""
        t = self._aware(t)
        half = timedelta(seconds=self.seconds / 2)
        current = self._frozen or self._last
        if current is not None and current[0] <= t <= current[1]:
            self._frozen = current
        else:
            self._frozen = (t - half, t + half)
        with param.parameterized.discard_events(self):
            if self.span == "custom":
                self.span = "15 m"
            self.live = False
            self.focus = t
        self.param.trigger("live", "focus")

    def label(self, newest: datetime | None) -> str:
        """The range as text, in the shown zone: ``12:00:05 – 12:15:05 UTC · live``."""
        a, b = self.bounds(newest)
        fmt = "%Y-%m-%d %H:%M:%S" if self.seconds > 86_400 else "%H:%M:%S"
        state = "live" if self.live and self.span != "custom" else "paused"
        return f"{a.astimezone(self.tz):{fmt}} – {b.astimezone(self.tz):{fmt}} {self.zone_name} · {state}"


def shown(frame: pl.DataFrame, zone: str) -> pd.DataFrame:
    """Pandas for Bokeh with every aware datetime written in ``zone`` (Bokeh has no time zones)."""
    aware = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    return frame.with_columns(pl.col(aware).dt.convert_time_zone(zone).dt.replace_time_zone(None)).to_pandas()
