"""Event-time windows: tumbling, sliding and session, with watermarks.

Window specs are frozen values. A :class:`Windower` turns a spec into state: it
buffers the rows of open windows and, when the watermark passes a window's end,
aggregates it exactly once with polars — the same expressions an offline query uses,
so streaming and offline results agree exactly.

Watermark and lateness are per row, so results do not depend on batching: a row is
*late* when its event time is older than the newest event time seen before it minus
``lateness``; late rows go to the late output and are counted. The watermark is the
newest event time seen minus ``lateness``; a window ``[start, end)`` is emitted once
``watermark >= end``. A session closes once ``watermark >= last event + gap``.

Examples
--------
>>> import polars as pl
>>> from datetime import datetime, timedelta, UTC
>>> from workbench.operators import aggregations as agg
>>> w = Windower(Tumbling("10s"), by="host", aggs=[agg.count()], lateness="5s")
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> ts = [t0 + timedelta(seconds=s) for s in (1, 3, 12, 16)]
>>> out, late = w.process(pl.DataFrame({"host": ["a"] * 4, "ts": ts}))
>>> out.select("host", "window_start", "count").rows()
[('a', datetime.datetime(2024, 1, 1, 0, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC')), 2)]
>>> w.flush()["count"].to_list()
[2]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from workbench.config import format_duration, parse_duration
from workbench.errors import ConfigError
from workbench.operators.aggregations import output_names
from workbench.operators.dedupe import NEVER, running_max_before
from workbench.schema import TS_DTYPE

__all__ = ["Session", "Sliding", "Tumbling", "WindowSpec", "Windower"]

Duration = str | float | timedelta


@dataclass(frozen=True)
class Tumbling:
    """Fixed, non-overlapping windows ``[offset + k·size, offset + (k+1)·size)``.

    Examples
    --------
    >>> Tumbling("10s").size_ms
    10000
    """

    size: Duration
    offset: Duration = 0

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ConfigError(f"Tumbling window: size must be > 0, not {self.size!r}")

    @property
    def size_ms(self) -> int:
        """Window length in milliseconds."""
        return parse_duration(self.size, what="Tumbling window size")

    @property
    def step_ms(self) -> int:
        """Distance between window starts (equal to the size)."""
        return self.size_ms

    @property
    def offset_ms(self) -> int:
        """Alignment of window starts relative to the epoch."""
        return parse_duration(self.offset, what="window offset")


@dataclass(frozen=True)
class Sliding:
    """Overlapping windows of length ``size`` starting every ``step``.

    Examples
    --------
    >>> Sliding("1m", "10s").step_ms
    10000
    >>> Sliding("10s", "1m")
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: Sliding window: step must be <= size, not step 1m > size 10s
    """

    size: Duration
    step: Duration
    offset: Duration = 0

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ConfigError(f"Sliding window: size must be > 0, not {self.size!r}")
        if self.step_ms <= 0:
            raise ConfigError(f"Sliding window: step must be > 0, not {self.step!r}")
        if self.step_ms > self.size_ms:
            raise ConfigError(
                "Sliding window: step must be <= size, not step "
                f"{format_duration(self.step_ms)} > size {format_duration(self.size_ms)}"
            )

    @property
    def size_ms(self) -> int:
        """Window length in milliseconds."""
        return parse_duration(self.size, what="Sliding window size")

    @property
    def step_ms(self) -> int:
        """Distance between window starts in milliseconds."""
        return parse_duration(self.step, what="Sliding window step")

    @property
    def offset_ms(self) -> int:
        """Alignment of window starts relative to the epoch."""
        return parse_duration(self.offset, what="window offset")


@dataclass(frozen=True)
class Session:
    """Per-key sessions: events closer than ``gap`` belong to one session.

    The window of a session is ``[first event, last event + gap)``.

    Examples
    --------
    >>> Session("30s").gap_ms
    30000
    """

    gap: Duration

    def __post_init__(self) -> None:
        if self.gap_ms <= 0:
            raise ConfigError(f"Session window: gap must be > 0, not {self.gap!r}")

    @property
    def gap_ms(self) -> int:
        """The inactivity gap in milliseconds."""
        return parse_duration(self.gap, what="Session window gap")


WindowSpec = Tumbling | Sliding | Session


@dataclass
class _State:
    buffer: pl.DataFrame
    max_ts: int | None = None
    emitted_k: int | None = None  # last window index emitted (tumbling/sliding)
    floor_ms: int | None = None  # raised when the buffer bound forced windows closed
    counters: dict[str, int] = field(default_factory=lambda: {"late": 0, "windows": 0, "forced": 0})


class Windower:
    """Keyed event-time windows over micro-batches.

    Parameters
    ----------
    spec
        :class:`Tumbling`, :class:`Sliding` or :class:`Session`.
    by
        Key column(s); ``None`` or ``[]`` for one window per time range.
    aggs
        Named polars aggregation expressions (see :mod:`workbench.operators.aggregations`).
    time
        Event-time column (aware UTC datetime).
    lateness
        Allowed lateness; the watermark trails the newest event time by this much.
    max_rows
        Bound on buffered rows. Past it the oldest windows are closed early
        (counted as ``forced``) and the watermark floor rises, so memory stays bounded.
    """

    def __init__(
        self,
        spec: WindowSpec,
        *,
        by: str | list[str] | None,
        aggs: list[pl.Expr],
        time: str = "ts",
        lateness: Duration = "5s",
        max_rows: int = 5_000_000,
    ) -> None:
        if not isinstance(spec, Tumbling | Sliding | Session):
            raise ConfigError(f"window: spec must be Tumbling, Sliding or Session, not {spec!r}")
        self.spec = spec
        self.by = [by] if isinstance(by, str) else list(by or [])
        self.aggs = list(aggs)
        self.names = output_names(self.aggs)
        clash = {"window_start", "window_end", *self.by} & set(self.names)
        if clash:
            raise ConfigError(f"window: aggregation names clash with key/window columns: {sorted(clash)}")
        self.time = time
        self.lateness_ms = parse_duration(lateness, what="window lateness")
        if self.lateness_ms < 0:
            raise ConfigError(f"window: lateness must be >= 0, not {lateness!r}")
        if max_rows <= 0:
            raise ConfigError(f"window: max_rows must be > 0, not {max_rows}")
        self.max_rows = max_rows
        self._s = _State(buffer=pl.DataFrame())
        self._empty: tuple[tuple, pl.DataFrame] | None = None
        self._kept: tuple[tuple, list[str] | None] | None = None  # (input schema, buffered columns)

    # -- public state ---------------------------------------------------------------
    @property
    def watermark(self) -> datetime | None:
        """Newest event time minus lateness (``None`` before the first row)."""
        wm = self._watermark_ms()
        if wm is None:
            return None
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=wm)

    @property
    def state_size(self) -> int:
        """Buffered rows."""
        return self._s.buffer.height

    @property
    def counters(self) -> dict[str, int]:
        """``late`` rows, ``windows`` emitted, ``forced`` early closes."""
        return dict(self._s.counters)

    def _watermark_ms(self) -> int | None:
        if self._s.max_ts is None:
            return None
        wm = self._s.max_ts - self.lateness_ms
        return wm if self._s.floor_ms is None else max(wm, self._s.floor_ms)

    # -- processing ---------------------------------------------------------------
    def process(self, frame: pl.DataFrame, *, before: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Add a batch; return the windows it closed and its late rows.

        ``before`` names a column holding, per row, the newest event time before it in
        the whole stream (``NEVER`` for none; see
        :func:`~workbench.operators.dedupe.global_before`): a key group of a sharded
        pipeline sees only its own rows. Then call :meth:`advance` with the stream's
        newest event time, so windows close when they would in one process.
        """
        if frame.height == 0:
            return self._empty_output(frame), frame
        s = self._s
        ts_ms = pl.col(self.time).dt.epoch("ms")
        if before is None:
            threshold = running_max_before(ts_ms, s.max_ts) - self.lateness_ms
        else:
            threshold = pl.when(pl.col(before) == NEVER).then(None).otherwise(pl.col(before)) - self.lateness_ms
        if s.floor_ms is not None:
            threshold = pl.max_horizontal(threshold, pl.lit(s.floor_ms))
        marked = frame.with_columns(__t=ts_ms, __late=(ts_ms < threshold).fill_null(False))
        if before is not None:
            marked = marked.drop(before)
        late = marked.filter(pl.col("__late"))
        kept = self._buffered_columns(marked)
        on_time = (marked if kept is None else marked.select(*kept, "__late")).filter(~pl.col("__late")).drop("__late")
        if s.buffer.width and s.buffer.columns != on_time.columns:  # restored from a wider snapshot
            s.buffer = s.buffer.select(on_time.columns)
        batch_max = int(marked["__t"].max())  # type: ignore[arg-type]
        s.max_ts = batch_max if s.max_ts is None else max(s.max_ts, batch_max)
        if late.height:
            s.counters["late"] += late.height
        late = late.drop("__late", "__t")
        s.buffer = pl.concat([s.buffer, on_time]) if s.buffer.width else on_time
        wm = self._watermark_ms()
        assert wm is not None
        out = self._close(wm)
        if s.buffer.height > self.max_rows:
            out = pl.concat([out, self._force()], how="vertical_relaxed")
        return out, late

    def advance(self, max_ts: int | None) -> pl.DataFrame:
        """The stream's newest event time is ``max_ts``: close the windows its watermark passes."""
        s = self._s
        if max_ts is None or max_ts == NEVER:
            return self._empty_output(None)
        s.max_ts = max_ts if s.max_ts is None else max(s.max_ts, max_ts)
        wm = self._watermark_ms()
        assert wm is not None
        return self._close(wm)

    def _buffered_columns(self, marked: pl.DataFrame) -> list[str] | None:
        """The columns open windows need: keys, what the aggregations read, ``__t``.

        Buffering only these makes every copy of the buffer cheaper (an event's id and
        labels are most of its bytes). ``None`` (keep every column) when an aggregation
        selects columns by pattern or position, or gives another result on the narrow
        frame: checked once per input schema, on an empty frame.
        """
        key = tuple(marked.schema.items())
        if self._kept is not None and self._kept[0] == key:
            return self._kept[1]
        kept: list[str] | None = None
        if not any(e.meta.has_multiple_outputs() for e in self.aggs):
            read = {*self.by, *(r for e in self.aggs for r in e.meta.root_names()), "__t"}
            cols = [c for c in marked.columns if c in read]
            if len(cols) == len(read):
                probe = marked.clear().with_columns(__k=pl.lit(0, pl.Int64))
                try:
                    wide = probe.group_by([*self.by, "__k"]).agg(self.aggs).schema
                    narrow = probe.select(*cols, "__k").group_by([*self.by, "__k"]).agg(self.aggs).schema
                except pl.exceptions.PolarsError:
                    wide, narrow = None, None
                if wide is not None and wide == narrow:
                    kept = cols
        self._kept = (key, kept)
        return kept

    def flush(self) -> pl.DataFrame:
        """Close every open window (end of input)."""
        if not self._s.buffer.width or self._s.buffer.height == 0:
            return self._empty_output(None)
        return self._close(None)

    def _force(self) -> pl.DataFrame:
        """Over the row bound: close the windows holding the oldest rows now."""
        s = self._s
        keep = self.max_rows // 2
        cut = int(s.buffer["__t"].sort()[s.buffer.height - keep])
        before = s.counters["windows"]
        if isinstance(self.spec, Session):
            out = self._close(None, started_before=cut)
            floor = cut
        else:
            spec = self.spec
            floor = (cut - spec.offset_ms) // spec.step_ms * spec.step_ms + spec.offset_ms + spec.size_ms
            out = self._close(floor)
        s.counters["forced"] += s.counters["windows"] - before
        s.floor_ms = max(s.floor_ms or floor, floor)
        return out

    def _close(self, wm: int | None, started_before: int | None = None) -> pl.DataFrame:
        """Emit windows whose end is <= ``wm`` (all of them when ``wm`` is None)."""
        if isinstance(self.spec, Session):
            out = self._close_sessions(wm, started_before)
        else:
            out = self._close_fixed(wm)
        self._s.counters["windows"] += out.height
        return out

    def _close_fixed(self, wm: int | None) -> pl.DataFrame:
        s, spec = self._s, self.spec
        assert isinstance(spec, Tumbling | Sliding)
        size, step, off = spec.size_ms, spec.step_ms, spec.offset_ms
        # window k covers [off + k*step, off + k*step + size); ready when its end <= wm
        hi = math.inf if wm is None else (wm - size - off) // step
        lo = -math.inf if s.emitted_k is None else s.emitted_k + 1
        if hi < lo or s.buffer.height == 0:
            return self._empty_output(None)
        k_last = (pl.col("__t") - off) // step
        if step == size:
            ready = s.buffer.select(k_last <= hi if wm is not None else pl.lit(True)).to_series()
            rows = s.buffer.filter(ready).with_columns(__k=k_last)
            s.buffer = s.buffer.filter(~ready)
        else:
            k_first = (pl.col("__t") - size - off) // step + 1
            lo_r = pl.max_horizontal(k_first, pl.lit(lo)) if lo != -math.inf else k_first
            hi_r = pl.min_horizontal(k_last, pl.lit(hi)) if hi != math.inf else k_last
            rows = (
                s.buffer.with_columns(__lo=lo_r, __hi=hi_r)
                .filter(pl.col("__lo") <= pl.col("__hi"))
                .with_columns(__k=pl.int_ranges("__lo", pl.col("__hi") + 1))
                .explode("__k")
            )
            if wm is None:
                s.buffer = s.buffer.clear()
            else:
                s.buffer = s.buffer.filter(k_last > hi)
        if wm is not None:
            s.emitted_k = int(hi)
        elif rows.height:
            s.emitted_k = int(rows["__k"].max())  # type: ignore[arg-type]
        if rows.height == 0:
            return self._empty_output(None)
        start = pl.col("__k") * step + off
        out = rows.group_by([*self.by, "__k"]).agg(self.aggs)
        out = out.select(
            *self.by,
            pl.from_epoch(start, time_unit="ms").cast(TS_DTYPE).alias("window_start"),
            pl.from_epoch(start + size, time_unit="ms").cast(TS_DTYPE).alias("window_end"),
            *[pl.col(n) for n in self.names],
        )
        return out.sort(["window_start", *self.by])

    def _close_sessions(self, wm: int | None, started_before: int | None = None) -> pl.DataFrame:
        s, gap = self._s, self.spec.gap_ms  # type: ignore[union-attr]
        if s.buffer.height == 0:
            return self._empty_output(None)
        rest = None
        buf = s.buffer
        if wm is not None and started_before is None:
            # only keys with a row at or before wm - gap can have a session that closes: the
            # sort and the session ids cover their rows alone, not the whole buffer (which,
            # with a long gap and many keys, is most of the input)
            candidates = buf.filter(pl.col("__t") <= wm - gap)
            if candidates.height == 0:
                return self._empty_output(None)
            if self.by:
                closing = candidates.select(self.by).unique()
                rest = buf.join(closing, on=self.by, how="anti", nulls_equal=True)
                buf = buf.join(closing, on=self.by, how="semi", nulls_equal=True)
        # sorted by key and time, a session starts where the key changes or the gap opens;
        # its first and last times are filled along it: no window function over the keys
        buf = buf.sort([*self.by, "__t"])
        t = pl.col("__t")
        new = (t - t.shift(1) >= gap).fill_null(True)
        for k in self.by:
            new = new | pl.col(k).ne_missing(pl.col(k).shift(1))
        buf = buf.with_columns(__new=new).with_columns(
            __sid=pl.col("__new").cast(pl.Int64).cum_sum(),
            __end=pl.col("__new").shift(-1).fill_null(True),
        )
        if started_before is not None:
            rule = pl.when("__new").then(t).forward_fill() < started_before
        else:
            rule = pl.when("__end").then(t).backward_fill() + gap <= wm if wm is not None else pl.lit(True)
        closed = buf.select(rule).to_series()
        buf = buf.drop("__new", "__end")
        rows = buf.filter(closed)
        still = buf.filter(~closed).drop("__sid")
        s.buffer = still if rest is None else pl.concat([rest, still])
        if rows.height == 0:
            return self._empty_output(None)
        out = rows.group_by([*self.by, "__sid"]).agg(
            pl.col("__t").min().alias("__first"), pl.col("__t").max().alias("__last"), *self.aggs
        )
        out = out.select(
            *self.by,
            pl.from_epoch("__first", time_unit="ms").cast(TS_DTYPE).alias("window_start"),
            pl.from_epoch(pl.col("__last") + gap, time_unit="ms").cast(TS_DTYPE).alias("window_end"),
            *[pl.col(n) for n in self.names],
        )
        return out.sort(["window_start", *self.by])

    def _empty_output(self, frame: pl.DataFrame | None) -> pl.DataFrame:
        """An empty result with the output columns; built once per input schema."""
        source = frame if frame is not None and frame.width else self._s.buffer
        if not source.width:
            return pl.DataFrame()
        key = tuple(source.schema.items())
        if self._empty is None or self._empty[0] != key:
            probe = source.clear().with_columns(__k=pl.lit(0, pl.Int64))
            empty = (
                probe.group_by([*self.by, "__k"])
                .agg(self.aggs)
                .select(
                    *self.by,
                    pl.lit(None, TS_DTYPE).alias("window_start"),
                    pl.lit(None, TS_DTYPE).alias("window_end"),
                    *[pl.col(n) for n in self.names],
                )
                .clear()
            )
            self._empty = (key, empty)
        return self._empty[1]

    # -- snapshots ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Buffered rows and watermark state (a copy; never aliases live state)."""
        s = self._s
        return {
            "buffer": s.buffer.clone(),
            "max_ts": s.max_ts,
            "emitted_k": s.emitted_k,
            "floor_ms": s.floor_ms,
            "counters": dict(s.counters),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`snapshot`."""
        self._s = _State(
            buffer=state["buffer"].clone(),
            max_ts=state["max_ts"],
            emitted_k=state["emitted_k"],
            floor_ms=state["floor_ms"],
            counters=dict(state["counters"]),
        )
