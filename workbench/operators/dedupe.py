"""De-duplication by key with an event-time TTL, vectorised per batch.

A key is remembered while its event time is within ``ttl`` of the newest event time
seen. A row is a duplicate when its key was seen before (in an earlier batch or
earlier in this batch). A row older than the newest event time seen before it minus
``ttl`` is past the dedupe horizon: it is passed on unchanged, and with ``ttl`` at
least the window lateness (the default), the window counts it as late — so the
classification does not depend on how the stream was cut into batches, as long as
copies of an event carry the same event time.

The remembered set is bounded twice: by the TTL, and by ``max_keys`` (the oldest
keys are evicted first and counted).

Examples
--------
>>> import polars as pl
>>> from datetime import datetime, UTC
>>> d = Deduplicator("event_id", "ts", ttl="1m")
>>> t = datetime(2024, 1, 1, tzinfo=UTC)
>>> batch = pl.DataFrame({"event_id": ["a", "b", "a"], "ts": [t, t, t]})
>>> kept, dups = d.process(batch)
>>> kept["event_id"].to_list(), dups.height
(['a', 'b'], 1)
>>> kept, dups = d.process(batch.head(1))
>>> kept.height, dups.height, d.state_size
(0, 1, 2)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl

from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = ["Deduplicator", "running_max_before"]


def running_max_before(ts_ms: pl.Expr, carried: int | None) -> pl.Expr:
    """Per row, the largest event time among the rows before it (and earlier batches).

    Parameters
    ----------
    ts_ms
        Event time as integer milliseconds.
    carried
        The largest event time of earlier batches, or ``None``.
    """
    before = ts_ms.cum_max().shift(1)
    if carried is None:
        return before
    return pl.max_horizontal(before, pl.lit(carried, dtype=pl.Int64))


class Deduplicator:
    """Remembers recent keys and drops repeats.

    Parameters
    ----------
    key
        Column that identifies an event.
    time
        Event-time column (aware datetime).
    ttl
        How long (event time) a key is remembered, e.g. ``"10m"``.
    max_keys
        Hard bound on remembered keys.
    """

    def __init__(
        self,
        key: str,
        time: str,
        *,
        ttl: str | float | timedelta = "10m",
        max_keys: int = 5_000_000,
    ) -> None:
        self.key = key
        self.time = time
        self.ttl_ms = parse_duration(ttl, what="dedupe ttl")
        if self.ttl_ms <= 0:
            raise ConfigError(f"dedupe on {key!r}: ttl must be > 0, not {ttl!r}")
        if max_keys <= 0:
            raise ConfigError(f"dedupe on {key!r}: max_keys must be > 0, not {max_keys}")
        self.max_keys = max_keys
        self._seen = pl.DataFrame(schema={"h": pl.UInt64, "key": pl.String, "t": pl.Int64})
        self._max_ts: int | None = None
        self.evicted = 0

    @property
    def state_size(self) -> int:
        """Keys remembered now."""
        return self._seen.height

    def process(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Split ``frame`` into first occurrences and duplicates."""
        if frame.height == 0:
            return frame, frame
        ts_ms = pl.col(self.time).dt.epoch("ms")
        # Look keys up by a 64-bit hash (an integer set is several times faster than a
        # string one), then confirm the few hits by the key itself: exact, whatever
        # the hash does.
        marks = frame.select(
            t=ts_ms,
            h=pl.col(self.key).hash(),
            horizon=ts_ms >= running_max_before(ts_ms, self._max_ts) - self.ttl_ms,
            first=pl.col(self.key).is_first_distinct(),
        ).with_columns(maybe=pl.col("h").is_in(self._seen["h"].implode()))
        seen = marks["maybe"]
        if seen.any():
            hits = frame[self.key].filter(seen)
            known = self._seen.filter(pl.col("h").is_in(marks["h"].filter(seen).implode()))["key"]
            seen = seen.scatter(seen.arg_true(), hits.is_in(known.implode()))
        horizon = marks["horizon"].fill_null(True)
        dup = horizon & (seen | ~marks["first"])
        kept = frame.filter(~dup)
        new = ~dup & horizon
        new_keys = pl.DataFrame(
            {"h": marks["h"].filter(new), "key": frame[self.key].filter(new), "t": marks["t"].filter(new)}
        )
        batch_max = int(marks["t"].max())  # type: ignore[arg-type]
        self._max_ts = batch_max if self._max_ts is None else max(self._max_ts, batch_max)
        state = pl.concat([self._seen, new_keys]) if new_keys.height else self._seen
        state = state.filter(pl.col("t") >= self._max_ts - self.ttl_ms)
        if state.height > self.max_keys:
            self.evicted += state.height - self.max_keys
            state = state.sort("t").tail(self.max_keys)
        self._seen = state
        return kept, frame.filter(dup)

    def snapshot(self) -> dict[str, Any]:
        """State as plain values and a copy of the key table (hashes are not stored)."""
        return {"seen": self._seen.drop("h"), "max_ts": self._max_ts, "evicted": self.evicted}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`snapshot`; key hashes are recomputed by this polars."""
        seen = state["seen"]
        self._seen = seen.select(pl.col("key").hash().alias("h"), "key", "t")
        self._max_ts = state["max_ts"]
        self.evicted = state["evicted"]
