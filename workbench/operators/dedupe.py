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

The set is kept incrementally, so a batch costs time in proportion to its own rows,
not to the keys remembered: each batch's new keys become a *run* sorted by their
64-bit hash (with each key's event time and the key itself), runs of similar size
are merged (so there are few, as in a log-structured merge tree), a lookup is a
binary search per run, confirmed by comparing the keys themselves — exact, whatever
the hash does. Keys past the TTL are ignored at once; a run is dropped when all its
keys are, and a merge leaves them out.

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

import numpy as np
import polars as pl

from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = ["NEVER", "Deduplicator", "global_before", "running_max_before"]


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


def global_before(ts_ms: pl.Series, carried: int | None) -> tuple[pl.Series, int | None]:
    """Per row, the newest event time before it (:data:`NEVER` for none), and the newest after the batch.

    What :class:`Deduplicator` and :class:`~workbench.operators.windows.Windower`
    compute from their own rows; a sharded pipeline computes it once over every row,
    so each key group classifies its rows exactly as one process would.

    Examples
    --------
    >>> before, newest = global_before(pl.Series([5, 3, None, 9]), None)
    >>> [None if v == NEVER else v for v in before.to_list()], newest
    ([None, 5, 5, 5], 9)
    """
    t = ts_ms.cast(pl.Int64).fill_null(_NEVER)
    first = _NEVER if carried is None else carried
    before = t.cum_max().shift(1, fill_value=_NEVER)
    before = pl.select(pl.max_horizontal(before, pl.lit(first, dtype=pl.Int64))).to_series().rename("before")
    newest = t.max() if t.len() else None
    top = max(first, int(newest)) if newest is not None else first  # type: ignore[arg-type]
    return before, (None if top == _NEVER else top)


class _Run:
    """Remembered keys sorted by hash: the hashes, their event times, the keys."""

    __slots__ = ("h", "keys", "t")

    def __init__(self, h: np.ndarray, t: np.ndarray, keys: pl.Series) -> None:
        self.h, self.t, self.keys = h, t, keys

    def __len__(self) -> int:
        return len(self.h)


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
        self._max_ts: int | None = None
        self.evicted = 0
        self._runs: list[_Run] = []  # oldest first
        self._live = 0

    @property
    def state_size(self) -> int:
        """Keys remembered now."""
        return self._live

    def _horizon(self) -> int:
        """Keys older than this (event ms) are forgotten."""
        return _NEVER if self._max_ts is None else self._max_ts - self.ttl_ms

    def process(self, frame: pl.DataFrame, *, before: np.ndarray | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Split ``frame`` into first occurrences and duplicates.

        ``before`` gives, per row, the newest event time before it in the whole stream
        (:data:`NEVER` for none): a key group of a sharded pipeline sees only its own
        rows, so its coordinator computes this over every row (see
        :func:`global_before`); then call :meth:`advance` with the stream's newest time.
        """
        if frame.height == 0:
            return frame, frame
        keys = frame[self.key]
        stamps = frame[self.time].dt.epoch("ms")
        has_time = stamps.is_not_null().to_numpy() if stamps.null_count() else None
        t = stamps.fill_null(_NEVER).to_numpy()
        h = keys.hash().to_numpy()
        if before is None:
            # per row: the newest event time before it (earlier batches included)
            before = np.empty_like(t)
            before[0] = _NEVER if self._max_ts is None else self._max_ts
            np.maximum.accumulate(t[:-1], out=before[1:])
            np.maximum(before[1:], before[0], out=before[1:])
        horizon = (before == _NEVER) | (t >= before - self.ttl_ms)
        if has_time is not None:
            horizon |= ~has_time
        order = np.argsort(h)
        sorted_h = h[order]
        seen = self._lookup(sorted_h, order, keys)
        dup = horizon & (seen | ~_first_distinct(sorted_h, order, keys))
        new = ~dup & horizon
        if has_time is not None:
            new &= has_time
        if has_time is None or has_time.any():
            batch_max = int(t.max() if has_time is None else t[has_time].max())
            self._max_ts = batch_max if self._max_ts is None else max(self._max_ts, batch_max)
        fresh = order[new[order]]  # the new rows, in hash order
        if len(fresh):
            self._runs.append(_Run(h[fresh], t[fresh], keys.gather(fresh).cast(pl.String)))
        self._maintain()
        if not dup.any():
            return frame, frame.clear()
        return frame.filter(pl.Series(~dup)), frame[np.flatnonzero(dup)]  # duplicates are few: a gather

    def advance(self, max_ts: int | None) -> None:
        """The stream's newest event time is ``max_ts`` (a sharded pipeline's global one): forget past it."""
        if max_ts is not None and max_ts != _NEVER:
            self._max_ts = max_ts if self._max_ts is None else max(self._max_ts, max_ts)
            self._maintain()

    def _lookup(self, sorted_h: np.ndarray, order: np.ndarray, keys: pl.Series) -> np.ndarray:
        """Per row, whether its key is remembered (live: not past the horizon).

        The needles are sorted, so each binary search walks a run in order.
        """
        seen = np.zeros(len(sorted_h), dtype=bool)
        horizon = self._horizon()
        for run in self._runs:
            # one search for every row; the end of the equal range only for the few hits
            lo = np.searchsorted(run.h, sorted_h, side="left")
            hit = np.flatnonzero(run.h[np.minimum(lo, len(run) - 1)] == sorted_h)
            hit = hit[lo[hit] < len(run)]
            if not len(hit):
                continue
            counts = np.searchsorted(run.h, sorted_h[hit], side="right") - lo[hit]
            # every (row, entry) pair with equal hashes, live entries only
            pair_row = np.repeat(order[hit], counts)
            pair_at = np.repeat(lo[hit] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            live = run.t[pair_at] >= horizon
            pair_row, pair_at = pair_row[live], pair_at[live]
            if len(pair_row):
                same = (keys.gather(pair_row) == run.keys.gather(pair_at)).fill_null(False).to_numpy()
                seen[pair_row[same]] = True
        return seen

    def _maintain(self) -> None:
        """Forget what is past the horizon or over the bound; merge runs of similar size."""
        horizon = self._horizon()
        self._runs = [r for r in self._runs if r.t.max() >= horizon]
        # size tiers: _FANOUT runs of one tier become one of the next, so there are
        # O(log keys) runs and every key is merged O(log keys) times
        while len(self._runs) >= _FANOUT:
            tier = _tier(len(self._runs[-1]))
            if any(_tier(len(r)) != tier for r in self._runs[-_FANOUT:]):
                break
            merged = _merge(self._runs[-_FANOUT:], horizon)
            del self._runs[-_FANOUT:]
            if len(merged):
                self._runs.append(merged)
        self._live = sum(int((r.t >= horizon).sum()) for r in self._runs)
        if self._live > self.max_keys:
            # the oldest live keys go first; they are marked past any horizon
            over = self._live - self.max_keys
            t_all = np.concatenate([r.t for r in self._runs])
            oldest = np.argsort(np.where(t_all >= horizon, t_all, _NEVER), kind="stable")
            oldest = oldest[len(t_all) - self._live :][:over]
            starts = np.cumsum([0] + [len(r) for r in self._runs])
            for k, run in enumerate(self._runs):
                mine = oldest[(oldest >= starts[k]) & (oldest < starts[k + 1])] - starts[k]
                run.t[mine] = _NEVER
            self.evicted += over
            self._live = self.max_keys

    def snapshot(self) -> dict[str, Any]:
        """State as plain values and the key runs as frames (hashes are not stored).

        Each run is a frame of its own, as it is: a run is only replaced when runs merge,
        so a checkpoint store that writes big sections once (:mod:`workbench.storage.checkpoints`)
        writes each run once, not the whole key table every checkpoint.
        """
        runs = [pl.DataFrame({"key": r.keys, "t": pl.Series(r.t.copy(), dtype=pl.Int64)}) for r in self._runs]
        return {"runs": runs, "max_ts": self._max_ts, "evicted": self.evicted}

    @property
    def snapshot_max_ts(self) -> int | None:
        """The newest event time seen (ms), as :meth:`snapshot` records it."""
        return self._max_ts

    def live_keys(self) -> pl.DataFrame:
        """The keys remembered now (not past the horizon) and their event times: ``key``, ``t`` (ms).

        ``restore({"seen": frame, "max_ts": …, "evicted": …})`` takes such a frame (a
        sharded pipeline splits it by key group).
        """
        horizon = self._horizon()
        live = [(r, np.flatnonzero(r.t >= horizon)) for r in self._runs]
        return pl.DataFrame(
            {
                "key": pl.concat([r.keys.gather(i) for r, i in live]) if live else pl.Series([], dtype=pl.String),
                "t": pl.Series(np.concatenate([r.t[i] for r, i in live]) if live else [], dtype=pl.Int64),
            },
            schema={"key": pl.String, "t": pl.Int64},
        )

    def restore(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`snapshot` (or a ``"seen"`` frame of :meth:`live_keys`); hashes are recomputed."""
        self._max_ts = state["max_ts"]
        self.evicted = state["evicted"]
        self._runs = []
        frames = state["runs"] if "runs" in state else [state["seen"]]
        for frame in frames:
            if frame.height:
                h = frame["key"].hash().to_numpy()
                order = np.argsort(h, kind="stable")
                self._runs.append(_Run(h[order], frame["t"].to_numpy()[order], frame["key"].gather(order)))
        self._maintain()


#: Runs of one size tier merged at once.
_FANOUT = 4


def _tier(size: int) -> int:
    return max(size, 1).bit_length() // 2  # tiers of a factor 4 (= _FANOUT)


def _merge(runs: list[_Run], horizon: int) -> _Run:
    """One run of the live keys of several."""
    h = np.concatenate([r.h for r in runs])
    t = np.concatenate([r.t for r in runs])
    keys = pl.concat([r.keys for r in runs], rechunk=False)
    live = np.flatnonzero(t >= horizon)
    order = live[np.argsort(h[live])]
    return _Run(h[order], t[order], keys.gather(order))


def _first_distinct(sorted_h: np.ndarray, order: np.ndarray, keys: pl.Series) -> np.ndarray:
    """Per row, whether it is the first of its key in the batch.

    By hash (``order`` sorts the hashes: a row whose hash no other row has is the
    first of its key); rows sharing a hash are checked by their keys.
    """
    n = len(sorted_h)
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_h[1:] != sorted_h[:-1]
    first = np.zeros(n, dtype=bool)
    first[order[starts]] = True  # right for unshared hashes; shared ones are redone below
    shared = ~starts
    shared[:-1] |= ~starts[1:]  # every member of a run of two or more
    rows = np.sort(order[shared])
    if len(rows):
        first[rows] = keys.gather(rows).is_first_distinct().to_numpy()
    return first


#: An event time before any other (far enough from int64's end to subtract a TTL).
_NEVER = -(2**62)
NEVER = _NEVER
