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
>>> version, new["x"].to_list()
(2, [3, 4])
>>> store.since(version)[1].height
0
"""

from __future__ import annotations

import threading
from datetime import datetime

import polars as pl

__all__ = ["LiveFrame"]


class LiveFrame:
    """Recent rows of one output, with a version per appended frame.

    Parameters
    ----------
    max_rows
        Rows kept; older rows are dropped first.
    """

    def __init__(self, max_rows: int = 50_000) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._frames: list[tuple[int, pl.DataFrame]] = []
        self._rows = 0
        self.version = 0

    def append(self, frame: pl.DataFrame) -> None:
        """Add a frame (called from the pipeline thread)."""
        if frame.height == 0:
            return
        with self._lock:
            self.version += 1
            self._frames.append((self.version, frame))
            self._rows += frame.height
            while self._rows > self.max_rows and len(self._frames) > 1:
                _, old = self._frames.pop(0)
                self._rows -= old.height
            if self._rows > self.max_rows:
                v, only = self._frames[0]
                self._frames[0] = (v, only.tail(self.max_rows))
                self._rows = self.max_rows

    def since(self, version: int) -> tuple[int, pl.DataFrame]:
        """Rows appended after ``version``, and the current version."""
        with self._lock:
            frames = [f for v, f in self._frames if v > version]
            current = self.version
        if not frames:
            return current, pl.DataFrame()
        return current, pl.concat(frames, how="diagonal_relaxed")

    def tail(self, frames: int) -> tuple[int, pl.DataFrame]:
        """The last ``frames`` appended frames (cheap: no copy of the rest), and the version."""
        with self._lock:
            picked = [f for _, f in self._frames[-frames:]] if frames > 0 else []
            current = self.version
        if not picked:
            return current, pl.DataFrame()
        return current, pl.concat(picked, how="diagonal_relaxed")

    def between(self, column: str, start: datetime | None, end: datetime | None) -> pl.DataFrame:
        """Rows held with ``start <= column <= end`` (``None``: open); frames wholly outside are skipped."""
        with self._lock:
            frames = [f for _, f in self._frames]
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

    def latest(self) -> pl.DataFrame:
        """Every row held."""
        return self.since(0)[1]

    @property
    def rows(self) -> int:
        """Rows held now."""
        return self._rows
