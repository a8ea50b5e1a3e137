"""A bounded, thread-safe store of recent pipeline output that sessions poll.

The pipeline thread appends frames; each browser session remembers the version it
has seen and asks for what is newer. Nothing is held per session, so a closed
session leaves nothing behind, and the store keeps at most ``max_rows`` rows.

Examples
--------
>>> import polars as pl
>>> store = LiveFrame(max_rows=3)
>>> store.append(pl.DataFrame({"x": [1, 2]}))
>>> store.append(pl.DataFrame({"x": [3, 4]}))
>>> version, new = store.since(0)
>>> version, new["x"].to_list()  # the newest three rows
(2, [2, 3, 4])
>>> store.since(version)[1].height
0
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import polars as pl

__all__ = ["LiveFrame"]


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


#: the newest appended frames are kept as they came (sessions ask for them by version)
_RECENT = 16


class _Chunk:
    """Rows of the appended frames ``first`` … ``last``; ``starts[i]`` is the row where ``first + i`` begins."""

    __slots__ = ("first", "frame", "last", "starts")

    def __init__(self, first: int, last: int, frame: pl.DataFrame, starts: list[int]) -> None:
        self.first, self.last, self.frame, self.starts = first, last, frame, starts

    def after(self, version: int) -> pl.DataFrame:
        """The rows of the frames appended after ``version``."""
        if version < self.first:
            return self.frame
        return self.frame.slice(self.starts[version + 1 - self.first])


class LiveFrame:
    """Recent rows of one output, with a version per appended frame.

    The pipeline appends a small frame per batch (a few rows of windows, one dead
    letter); thousands of small frames cost far more memory than their rows, so all
    but the newest few are merged into chunks of up to ``max_rows // 8`` rows, each
    remembering where every appended frame begins.

    Parameters
    ----------
    max_rows
        Rows kept; older rows are dropped first.
    """

    def __init__(self, max_rows: int = 50_000) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._chunks: list[_Chunk] = []
        self._rows = 0
        self._chunk_rows = max(1_000, max_rows // 8)
        self.version = 0

    def append(self, frame: pl.DataFrame) -> None:
        """Add a frame (called from the pipeline thread)."""
        if frame.height == 0:
            return
        with self._lock:
            self.version += 1
            self._chunks.append(_Chunk(self.version, self.version, frame, [0]))
            self._rows += frame.height
            if len(self._chunks) > 2 * _RECENT:
                self._merge()
            self._trim()

    def _merge(self) -> None:
        """Merge the small chunks before the newest :data:`_RECENT` into as few as fit ``_chunk_rows``."""
        old, recent = self._chunks[:-_RECENT], self._chunks[-_RECENT:]
        merged: list[_Chunk] = []
        group: list[_Chunk] = []

        def close() -> None:
            if len(group) == 1:
                merged.append(group[0])
            elif group:
                starts: list[int] = []
                at = 0
                for c in group:
                    starts.extend(at + s for s in c.starts)
                    at += c.frame.height
                frame = pl.concat([c.frame for c in group], how="diagonal_relaxed", rechunk=True)
                merged.append(_Chunk(group[0].first, group[-1].last, frame, starts))
            group.clear()

        for c in old:
            if group and sum(g.frame.height for g in group) + c.frame.height > self._chunk_rows:
                close()
            group.append(c)
        close()
        self._chunks = merged + recent

    def _trim(self) -> None:
        """Drop the oldest rows beyond ``max_rows`` (whole chunks first, then the head of the oldest)."""
        while (
            self._rows > self.max_rows
            and len(self._chunks) > 1
            and (self._rows - self._chunks[0].frame.height >= self.max_rows)
        ):
            self._rows -= self._chunks.pop(0).frame.height
        excess = self._rows - self.max_rows
        if excess > 0:
            c = self._chunks[0]
            gone = sum(1 for s in c.starts[1:] if s <= excess)  # frames wholly dropped
            starts = [max(0, s - excess) for s in c.starts[gone:]]
            self._chunks[0] = _Chunk(c.first + gone, c.last, c.frame.slice(excess), starts)
            self._rows = self.max_rows

    def since(self, version: int) -> tuple[int, pl.DataFrame]:
        """Rows appended after ``version``, and the current version."""
        with self._lock:
            current = self.version
            frames = [c.after(version) for c in self._chunks if c.last > version]
        return current, _concat(frames)

    def tail(self, frames: int) -> tuple[int, pl.DataFrame]:
        """The rows of the last ``frames`` appended frames (no copy of the rest), and the version."""
        with self._lock:
            current = self.version
            after = current - max(frames, 0)
            picked = [c.after(after) for c in self._chunks if c.last > after]
        return current, _concat(picked)

    def between(self, column: str, start: datetime | None, end: datetime | None) -> pl.DataFrame:
        """Rows held with ``start <= column <= end`` (``None``: open); chunks wholly outside are skipped."""
        with self._lock:
            frames = [c.frame for c in self._chunks]
        picked = []
        for f in frames:
            if column not in f.columns:
                continue
            low, high = f[column].min(), f[column].max()
            if (start is not None and high is not None and high < start) or (  # type: ignore[operator]
                end is not None and low is not None and low > end  # type: ignore[operator]
            ):
                continue
            picked.append(f)
        if not picked:
            return pl.DataFrame()
        rows = pl.concat(picked, how="diagonal_relaxed")
        if start is not None:
            rows = rows.filter(pl.col(column) >= start)
        if end is not None:
            rows = rows.filter(pl.col(column) <= end)
        return rows

    def oldest(self, column: str) -> Any:
        """The smallest ``column`` value held (``None``: no row has it)."""
        with self._lock:
            frames = [c.frame for c in self._chunks]
        lows = [low for f in frames if column in f.columns and (low := f[column].min()) is not None]
        return min(lows) if lows else None

    def latest(self) -> pl.DataFrame:
        """Every row held."""
        return self.since(0)[1]

    @property
    def rows(self) -> int:
        """Rows held now."""
        return self._rows
