"""``FrameSource``: a fixed list of frames (or NDJSON byte blobs) replayed as batches.

For exports and reports that replay frames they already hold, for notebooks, and for
tests. The offset is the number of batches read, so a checkpointed pipeline resumes
after the last batch it processed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl

from workbench.clock import Clock, ManualClock
from workbench.sources.base import RawBatch, Source

__all__ = ["FrameSource"]


class FrameSource(Source):
    """Replays a fixed list of batches (frames or NDJSON bytes); the offset is the index.

    Examples
    --------
    >>> src = FrameSource([b'{"a":1}\\n', b'{"a":2}\\n'])
    >>> [b.offset for b in src.batches()]
    [1, 2]
    """

    replayable = True

    def __init__(self, batches: Sequence[pl.DataFrame | bytes], *, name: str = "frames", clock: Clock | None = None):
        super().__init__(name=name, clock=clock or ManualClock())
        self.items = list(batches)
        self.offset = 0

    @property
    def bulk(self) -> bool:
        """A fixed list never waits."""
        return True

    def _batches(self) -> Iterator[RawBatch]:
        while self.offset < len(self.items) and not self.stopped:
            item = self.items[self.offset]
            self.offset += 1
            if isinstance(item, bytes):
                yield RawBatch(data=item, offset=self.offset, rows=item.count(b"\n"))
            else:
                yield RawBatch(frame=item, offset=self.offset, rows=item.height)

    def seek(self, offset: Any) -> None:
        """Continue with batch number ``offset``."""
        self.offset = int(offset)
