"""``PrimedSource``: a live source whose first batch was read before the pipeline was built.

A schema with ``extra: keep-numeric`` turns the undeclared numeric fields of the input
into metrics; a file is sampled from its start, a live source (broker, scrape,
simulator) has no start to sample. :func:`workbench.project.infer.prime_schema` reads
the live source's first batch, learns its fields from it, and wraps the source in a
``PrimedSource`` that yields that batch first and then the rest of the *same* reading
loop, so nothing is read twice or lost; acknowledgements, seeking, health and
snapshots are the wrapped source's.

Examples
--------
>>> from workbench.sources.frames import FrameSource
>>> import polars as pl
>>> inner = FrameSource([pl.DataFrame({"a": [i]}) for i in (1, 2, 3)])
>>> it = inner.batches()
>>> first = next(it)
>>> [b.frame["a"].to_list() for b in PrimedSource(inner, first, it).batches()]
[[1], [2], [3]]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workbench.sources.base import RawBatch, Source

__all__ = ["PrimedSource"]


class PrimedSource(Source):
    """Yield ``first``, then the rest of ``rest`` (the generator ``first`` came from), as ``inner``.

    Parameters
    ----------
    inner
        The source read from.
    first
        The batch already read.
    rest
        ``inner.batches()``, after ``first``.
    """

    def __init__(self, inner: Source, first: RawBatch, rest: Iterator[RawBatch]) -> None:
        super().__init__(name=inner.name, clock=inner.clock)
        self.inner = inner
        self.replayable = inner.replayable
        self.offset = inner.offset
        self._first: RawBatch | None = first
        self._rest: Iterator[RawBatch] | None = rest

    @property
    def bulk(self) -> bool:  # noqa: D102
        return self.inner.bulk

    def start(self) -> None:  # noqa: D102
        super().start()
        self.inner.start()

    def stop(self) -> None:  # noqa: D102
        super().stop()
        self.inner.stop()

    def _batches(self) -> Iterator[RawBatch]:
        if self._first is not None and self._rest is not None:
            first, rest, self._first, self._rest = self._first, self._rest, None, None
            self.offset = first.offset
            yield first
        else:  # started again after a stop: the inner source reads afresh
            rest = self.inner.batches()
        try:
            for batch in rest:
                self.offset = batch.offset
                yield batch
        finally:
            close = getattr(rest, "close", None)
            if close is not None:
                close()  # the inner reading loop runs its own clean-up (a broker closes once acked)
        self.exhausted = self.inner.exhausted

    def seek(self, offset: Any) -> None:  # noqa: D102
        self.inner.seek(offset)

    def commit(self, offset: Any) -> None:  # noqa: D102
        self.inner.commit(offset)

    def health(self) -> dict[str, Any]:  # noqa: D102
        return self.inner.health()

    def snapshot(self) -> dict[str, Any]:  # noqa: D102
        return self.inner.snapshot()

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        self.inner.restore(state)
