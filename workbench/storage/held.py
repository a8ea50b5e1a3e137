"""The base of Workbench's sinks: frames held until a checkpoint commits them.

A sink receives an output's frames as they come, holds them, and writes them only
when the pipeline commits a checkpoint (``commit(epoch)``); after a restart,
``rollback(epoch)`` forgets what was held, because the replay from the checkpoint
produces it again. That is what makes the output exactly-once for replayable sources.
Subclasses write the held rows their own way (Parquet files, an upsert, messages).

Examples
--------
>>> import polars as pl
>>> from streamz import Stream
>>> class Printer(HeldSink):
...     def commit(self, epoch):
...         frame = self.held()
...         print(epoch, None if frame is None else frame.height)
...         self.forget()  # only once written: a failed write keeps them for the retry
>>> head = Stream()
>>> sink = Printer(head, stream_name="print")
>>> head.emit(pl.DataFrame({"a": [1, 2]})); head.emit(pl.DataFrame({"a": [3]}))
>>> sink.held_rows
3
>>> sink.commit(7)
7 3
>>> sink.commit(8)
8 None
"""

from __future__ import annotations

import abc
from typing import Any

import polars as pl
from streamz import Stream

__all__ = ["HeldSink"]


class HeldSink(Stream, abc.ABC):
    """A streamz node that holds the non-empty frames it receives until a commit."""

    def __init__(self, upstream: Stream, *, stream_name: str) -> None:
        super().__init__(upstream, stream_name=stream_name)
        self._held: list[pl.DataFrame] = []

    def update(self, x: Any, who: Any = None, metadata: Any = None) -> None:
        """Hold a frame until the next commit."""
        if isinstance(x, pl.DataFrame) and x.height:
            self._held.append(x)

    @property
    def held_rows(self) -> int:
        """Rows waiting for the next commit."""
        return sum(f.height for f in self._held)

    def held(self) -> pl.DataFrame | None:
        """The held rows as one frame (columns unioned); ``None`` when none are held."""
        if not self._held:
            return None
        if len(self._held) > 1:
            self._held = [pl.concat(self._held, how="diagonal_relaxed")]  # concatenated once, even on a retry
        return self._held[0]

    def forget(self) -> None:
        """Drop the held rows (once they are written, or on a rollback)."""
        self._held = []

    @abc.abstractmethod
    def commit(self, epoch: int) -> None:
        """Write the held rows as checkpoint ``epoch``'s, then :meth:`forget` them."""

    def rollback(self, epoch: int) -> None:
        """Forget held rows: the replay from checkpoint ``epoch`` produces them again."""
        self.forget()
