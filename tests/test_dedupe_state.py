"""The incremental dedupe table against a plain reference, batch by batch.

The reference keeps the remembered keys as a frame and looks every batch up against
all of it (the first version of :class:`Deduplicator`): slow, obviously right.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.operators.dedupe import Deduplicator, running_max_before

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class Reference:
    """Remembered keys in a frame, filtered by the TTL after every batch."""

    def __init__(self, ttl_ms: int, max_keys: int) -> None:
        self.ttl_ms, self.max_keys = ttl_ms, max_keys
        self.seen = pl.DataFrame(schema={"key": pl.String, "t": pl.Int64})
        self.max_ts: int | None = None
        self.evicted = 0

    def process(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        ts = pl.col("ts").dt.epoch("ms")
        marks = frame.select(
            t=ts,
            horizon=(ts >= running_max_before(ts, self.max_ts) - self.ttl_ms).fill_null(True),
            first=pl.col("key").is_first_distinct(),
            seen=pl.col("key").is_in(self.seen["key"].implode()),
        )
        dup = marks["horizon"] & (marks["seen"] | ~marks["first"])
        new = ~dup & marks["horizon"]
        batch_max = int(marks["t"].max())  # type: ignore[arg-type]
        self.max_ts = batch_max if self.max_ts is None else max(self.max_ts, batch_max)
        state = pl.concat([self.seen, pl.DataFrame({"key": frame["key"].filter(new), "t": marks["t"].filter(new)})])
        state = state.filter(pl.col("t") >= self.max_ts - self.ttl_ms)
        if state.height > self.max_keys:
            self.evicted += state.height - self.max_keys
            state = state.sort("t", maintain_order=True).tail(self.max_keys)
        self.seen = state
        return frame.filter(~dup), frame.filter(dup)


batch = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 120)), min_size=1, max_size=60)


def frame_of(rows: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"key": [f"k{k}" for k, _ in rows], "ts": [T0 + timedelta(seconds=s) for _, s in rows]},
        schema={"key": pl.String, "ts": pl.Datetime("ms", "UTC")},
    )


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(batch, min_size=1, max_size=8), ttl=st.integers(1, 60), snap_at=st.integers(0, 8))
def test_incremental_table_equals_the_reference(batches, ttl, snap_at):
    fast, ref = Deduplicator("key", "ts", ttl=f"{ttl}s"), Reference(ttl * 1000, 10**9)
    for i, rows in enumerate(batches):
        if i == snap_at:  # a restored copy carries on exactly
            clone = Deduplicator("key", "ts", ttl=f"{ttl}s")
            clone.restore(fast.snapshot())
            fast = clone
        frame = frame_of(rows)
        kept, dups = fast.process(frame)
        want_kept, want_dups = ref.process(frame)
        assert kept.equals(want_kept) and dups.equals(want_dups), (i, rows)
        assert fast.state_size == ref.seen.height
        runs = fast.snapshot()["runs"]  # as they are: keys past the horizon go when runs merge
        live = pl.concat(runs).filter(pl.col("t") >= fast._horizon()) if runs else ref.seen.clear()
        assert sorted(live.rows()) == sorted(ref.seen.rows())


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(batch, min_size=1, max_size=6), max_keys=st.integers(1, 12))
def test_key_bound_evicts_as_many_as_the_reference(batches, max_keys):
    fast, ref = Deduplicator("key", "ts", ttl="1h", max_keys=max_keys), Reference(3_600_000, max_keys)
    for rows in batches:
        # distinct times per key, so which keys are oldest is never a tie
        frame = frame_of([(k, k * 3 + s % 3) for k, s in rows])
        kept, _ = fast.process(frame)
        want, _ = ref.process(frame)
        assert kept.equals(want)
        assert fast.state_size == ref.seen.height <= max_keys
        assert fast.evicted == ref.evicted


def test_a_hash_collision_is_not_a_duplicate(monkeypatch):
    """Keys are confirmed by value: two keys with one hash are both kept."""
    d = Deduplicator("key", "ts", ttl="1m")
    monkeypatch.setattr(pl.Series, "hash", lambda self, *a, **k: pl.Series([7] * self.len(), dtype=pl.UInt64))
    kept, dups = d.process(frame_of([(1, 0), (2, 0)]))
    assert kept["key"].to_list() == ["k1", "k2"] and dups.height == 0
    kept, dups = d.process(frame_of([(3, 1), (1, 1), (2, 1)]))
    assert kept["key"].to_list() == ["k3"] and dups["key"].to_list() == ["k1", "k2"]


def test_forgotten_keys_are_dropped_from_memory():
    """With a 1 s TTL over 200 s of events, the runs hold about the live keys only."""
    d = Deduplicator("key", "ts", ttl="1s")
    for second in range(200):
        rows = [(second * 1000 + i, second) for i in range(50)]
        d.process(
            pl.DataFrame(
                {"key": [f"k{k}" for k, _ in rows], "ts": [T0 + timedelta(seconds=s) for _, s in rows]},
                schema={"key": pl.String, "ts": pl.Datetime("ms", "UTC")},
            )
        )
    assert d.state_size == 100
    assert sum(len(run) for run in d._runs) <= 3 * d.state_size
