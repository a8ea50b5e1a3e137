"""Injected clocks: nothing below the views reads the wall clock directly.

Every component that needs "now" takes a ``clock`` argument. ``SystemClock`` is the
default for live runs; ``ManualClock`` drives tests and replays deterministically.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from workbench.errors import ConfigError

__all__ = ["Clock", "ManualClock", "SystemClock", "parse_time"]


@runtime_checkable
class Clock(Protocol):
    """What a clock offers: wall time, a monotonic reading and a sleep."""

    def now(self) -> datetime:
        """Current time as an aware UTC datetime."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (a manual clock advances instead)."""


class SystemClock:
    """The real clock.

    Examples
    --------
    >>> SystemClock().now().tzinfo is UTC
    True
    """

    def now(self) -> datetime:
        """Current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """``time.sleep``, ignoring non-positive values."""
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to; ``sleep`` advances it.

    Parameters
    ----------
    start
        Initial time, an aware datetime (default 2024-01-01 UTC).

    Examples
    --------
    >>> clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    >>> clock.advance(1.5)
    >>> clock.now().isoformat()
    '2024-01-01T00:00:01.500000+00:00'
    >>> clock.monotonic()
    1.5
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2024, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            from workbench.errors import ConfigError

            raise ConfigError(f"ManualClock: start must be timezone-aware, not {start!r}")
        self._start = start.astimezone(UTC)
        self._elapsed = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The manual time."""
        from datetime import timedelta

        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        """Seconds advanced so far."""
        with self._lock:
            return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        if seconds < 0:
            from workbench.errors import ConfigError

            raise ConfigError(f"ManualClock.advance: seconds must be >= 0, not {seconds}")
        with self._lock:
            self._elapsed += seconds

    def sleep(self, seconds: float) -> None:
        """Advance instead of blocking."""
        if seconds > 0:
            self.advance(seconds)

    def __repr__(self) -> str:
        return f"ManualClock(start={self._start.isoformat()!r})"


def parse_time(value: str | datetime | None, *, what: str = "time") -> datetime | None:
    """An aware UTC datetime from ISO-8601 text with an offset (``""`` and ``None`` mean unbounded).

    The one parser of user-given times (``--from``/``--to``, ``--start``/``--end``,
    report parameters). A time without an offset is refused: it would mean something
    else on every machine.

    Examples
    --------
    >>> parse_time("2024-01-01T06:00:00+02:00").isoformat()
    '2024-01-01T04:00:00+00:00'
    >>> parse_time("2024-01-01", what="report start")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: report start: expected ISO-8601 with a UTC offset (...), not '2024-01-01'
    """
    if value is None or value == "":
        return None
    parsed: datetime | None = value if isinstance(value, datetime) else None
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ConfigError(f"{what}: expected ISO-8601 with a UTC offset (2024-01-01T00:00:00+00:00), not {value!r}")
    return parsed.astimezone(UTC)
