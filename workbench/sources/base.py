"""The ``Source`` contract: start/stop, batches, an offset, seek, snapshot/restore."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from workbench.clock import Clock, SystemClock

__all__ = ["RawBatch", "Source"]


@dataclass(frozen=True)
class RawBatch:
    """A chunk of undecoded input and where the source stands after it.

    Exactly one of ``data`` (newline-delimited JSON bytes, whole lines) or ``frame``
    (already tabular input such as CSV or Parquet, any column types) is set.

    Parameters
    ----------
    data
        NDJSON bytes, ending at a line boundary (a ``bytearray`` from some sources:
        it is never modified once yielded).
    frame
        A frame whose columns are converted strictly by the decoder.
    offset
        The source position *after* this batch; seeking to it resumes with the next one.
    rows
        Number of records (lines) in the batch, when known.
    newlines
        Positions of the ``\\n`` bytes in ``data``, when the source found them
        already (the decoder then does not scan for them again).
    """

    data: bytes | bytearray | None = None
    frame: pl.DataFrame | None = None
    offset: Any = None
    rows: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    newlines: np.ndarray | None = field(default=None, compare=False, repr=False)


class Source(ABC):
    """Base class of every source.

    Subclasses implement :meth:`_batches` (yield :class:`RawBatch` values until the
    input ends or :meth:`stop` is called), :meth:`seek`, and keep ``offset`` current.
    The pipeline drives a source from one thread; ``stop`` may be called from another.

    Parameters
    ----------
    name
        Name shown in metrics and checkpoints.
    clock
        Injected clock (wall time only matters for rate control and ``max_delay``).
    """

    #: Whether seeking to an offset replays exactly the same records.
    replayable: bool = False

    @property
    def bulk(self) -> bool:
        """True when the source never waits for data (a replay as fast as possible).

        The pipeline then reads ahead inline, which costs least; a live source (the
        default) is read on its own thread so no batch ever waits behind a later one.
        """
        return False

    def __init__(self, *, name: str = "source", clock: Clock | None = None) -> None:
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self._stop = threading.Event()
        self.offset: Any = None
        self.last_batch_at: float | None = None  # clock.monotonic() of the last batch
        self.exhausted = False
        # the event schema a pipeline decodes this source with (set by Pipeline.standard):
        # a source of untyped fields (flat Redis entries) types the numeric ones by it
        self.schema: Any = None

    def start(self) -> None:
        """Allow :meth:`batches` to run (clears a previous stop)."""
        self._stop.clear()

    def stop(self) -> None:
        """Ask :meth:`batches` to return at the next batch boundary."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def batches(self) -> Iterator[RawBatch]:
        """Yield batches until the input ends or the source is stopped."""
        self.exhausted = False
        for batch in self._batches():
            if not batch.meta.get("tick"):  # an empty tick lets the pipeline checkpoint while idle
                self.last_batch_at = self.clock.monotonic()
            yield batch
            if self._stop.is_set():
                return
        self.exhausted = not self._stop.is_set()  # a live source stopped is not at its end (no flush)

    @abstractmethod
    def _batches(self) -> Iterator[RawBatch]:
        """Yield raw batches; the subclass's reading loop."""

    @abstractmethod
    def seek(self, offset: Any) -> None:
        """Position the source so the next batch starts at ``offset``."""

    def commit(self, offset: Any) -> None:
        """A checkpoint covering every batch up to ``offset`` is durable.

        The pipeline calls this after each checkpoint. A broker source acknowledges
        (or commits) the messages of those batches only now, so a crash re-delivers
        rather than loses them; a replayable source has nothing to do.
        """
        return None

    def health(self) -> dict[str, Any]:
        """The source's own liveness (e.g. a broker connection); empty when it has none."""
        return {}

    def snapshot(self) -> dict[str, Any]:
        """The source's restartable state (its offset)."""
        return {"offset": self.offset}

    def restore(self, state: dict[str, Any]) -> None:
        """Seek to a snapshot's offset."""
        if state.get("offset") is not None:
            self.seek(state["offset"])
