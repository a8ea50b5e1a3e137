"""A bounded future: events stamped too far ahead of processing time are dead letters.

One event stamped 2099 must not move a watermark (every later event would be late,
and the poisoned watermark would be checkpointed), nor a dedupe horizon. ``Horizon``
sends every event more than ``max_future`` ahead of the processing clock to the dead
letters with reason code ``future_timestamp``; only the events it lets through reach
dedupe and the windows.

The processing clock is

* **live** (``clock`` given): the injected wall clock, ``clock.now()``;
* **replay** (``clock=None``): the newest event time seen, *corroborated*: the
  ``corroborate``-th newest time among the events accepted so far and the batch at
  hand. An old file replays unaffected (its clock is its own time), a lone event
  from the future is outvoted by the ones around it, and a real jump in a file
  (data after a gap) carries the clock with it as soon as ``corroborate`` events
  stand beyond the gap. Until then, events past the jump are dead letters — so a
  gap that falls within the last ``corroborate - 1`` events of a batch costs those
  few events (counted, with their raw bytes), never the watermark.

Examples
--------
>>> from datetime import UTC, datetime
>>> t = [datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC) for s in range(6)] + [datetime(2099, 1, 1, tzinfo=UTC)]
>>> frame = pl.DataFrame({"ts": t}).with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))
>>> ok, dead = Horizon("5m").process(frame)
>>> ok.height, dead["reason_code"].to_list()
(6, ['future_timestamp'])
"""

from __future__ import annotations

import heapq
from datetime import timedelta
from typing import Any

import polars as pl

from workbench.clock import Clock
from workbench.config import parse_duration
from workbench.errors import ConfigError
from workbench.operators.decode import dead_letters, rows_as_json

__all__ = ["Horizon"]


class Horizon:
    """Split frames into events within ``max_future`` of the processing clock and dead letters.

    Parameters
    ----------
    max_future
        How far ahead of the processing clock an event may be stamped (default 5 min).
    time
        The event-time column (``Datetime``).
    clock
        The live processing clock; ``None`` in a replay (the corroborated newest event).
    corroborate
        In a replay, how many events must agree before the clock moves (the clock is
        the ``corroborate``-th newest event time).
    node
        Node name written into dead letters.
    """

    def __init__(
        self,
        max_future: str | float | timedelta = "5m",
        *,
        time: str = "ts",
        clock: Clock | None = None,
        corroborate: int = 5,
        node: str = "horizon",
    ) -> None:
        self.max_future_ms = parse_duration(max_future, what="max_future")
        if self.max_future_ms <= 0:
            raise ConfigError(f"horizon: max_future must be > 0, not {max_future!r}")
        if corroborate < 1:
            raise ConfigError(f"horizon: corroborate must be >= 1, not {corroborate}")
        self.time = time
        self.clock = clock
        self.corroborate = corroborate
        self.node = node
        self._newest: list[int] = []  # min-heap of the corroborate newest accepted times (ms)
        self.rejected = 0

    def reference_ms(self, times: pl.Series) -> int | None:
        """The processing clock for a batch with event times ``times`` (ms since the epoch)."""
        if self.clock is not None:
            return int(self.clock.now().timestamp() * 1000)
        k = self.corroborate
        top = times.drop_nulls().top_k(k).to_list() if times.len() else []
        pool = heapq.nlargest(k, [*self._newest, *top])
        return pool[-1] if pool else None

    def process(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Events within the horizon, and dead letters for the rest."""
        if frame.height == 0 or self.time not in frame.columns:
            return frame, dead_letters(self.node, [], [])
        ms = frame[self.time].dt.epoch("ms")
        ref = self.reference_ms(ms)
        if ref is None:
            return frame, dead_letters(self.node, [], [])
        limit = ref + self.max_future_ms
        future = (ms > limit).fill_null(False)
        ok = frame.filter(~future) if future.any() else frame
        if self.clock is None:
            for t in ok[self.time].dt.epoch("ms").drop_nulls().top_k(self.corroborate).to_list():
                if len(self._newest) < self.corroborate:
                    heapq.heappush(self._newest, t)
                elif t > self._newest[0]:
                    heapq.heapreplace(self._newest, t)
        if not future.any():
            return ok, dead_letters(self.node, [], [])
        bad = frame.filter(future)
        self.rejected += bad.height
        ahead = (bad[self.time].dt.epoch("ms") - ref).to_list()
        clock = "the wall clock" if self.clock is not None else "the newest events"
        reasons = [
            f"future timestamp: field '{self.time}' is {d / 1000:.0f} s ahead of {clock} "
            f"(max_future {self.max_future_ms / 1000:.0f} s)"
            for d in ahead
        ]
        return ok, dead_letters(self.node, reasons, rows_as_json(bad))

    def snapshot(self) -> dict[str, Any]:
        """The replay clock's newest accepted times (JSON-safe)."""
        return {"newest": sorted(self._newest), "rejected": self.rejected}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`snapshot`."""
        self._newest = list(state.get("newest", []))
        heapq.heapify(self._newest)
        self.rejected = int(state.get("rejected", 0))

    def __repr__(self) -> str:
        return f"Horizon(max_future={self.max_future_ms}ms, clock={'events' if self.clock is None else 'wall'})"
