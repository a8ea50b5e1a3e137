"""A seeded event simulator: a realistic fleet with incidents and faults, as NDJSON bytes.

:class:`Simulator` is a replayable :class:`~workbench.sources.base.Source`; its offset
counts events (delivery slots), not lines: duplicates add lines, and incidents such as
a silent host remove some. :func:`write_simulation` writes a large simulation to disk
with its ground truth. The parts: :mod:`~workbench.sources.simulator.fleet` (the world),
:mod:`~workbench.sources.simulator.incidents` (labelled anomalies),
:mod:`~workbench.sources.simulator.faults` (data-quality faults) and
:mod:`~workbench.sources.simulator.chunks` (events to bytes).

Examples
--------
>>> sim = Simulator("server_metrics", hosts=20, rate=100.0, seed=1)
>>> sim.labels.height > 0
True
>>> out = sim.generate(1000)
>>> out.data.count(b"\\n") == out.lines
True
>>> out.lines - out.counts()["duplicates"] <= 1000
True
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.clock import Clock
from workbench.errors import ConfigError, SourceError
from workbench.schema import SCHEMAS, Schema, get_schema
from workbench.sources.base import RawBatch, Source
from workbench.sources.simulator.chunks import CHUNK_EVENTS, Chunk, ChunkSpec
from workbench.sources.simulator.faults import FAULTS_SCHEMA, MALFORMED_CLASSES, Faults
from workbench.sources.simulator.fleet import Fleet
from workbench.sources.simulator.incidents import Incident, incidents_frame, schedule

__all__ = ["INCIDENT_CYCLE", "SimulatedData", "Simulator", "write_simulation"]

#: Without a ``limit``, default incidents repeat with fresh draws every cycle.
INCIDENT_CYCLE = timedelta(minutes=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, eq=False)
class SimulatedData:
    """A finite simulation: the NDJSON bytes and their ground truth.

    Parameters
    ----------
    data
        Whole ``\\n``-terminated lines.
    labels
        The incidents (see :func:`~workbench.sources.simulator.incidents.incidents_frame`).
    faults
        One row per faulty line (see :data:`~workbench.sources.simulator.faults.FAULTS_SCHEMA`).
    lines
        Number of lines in ``data``.

    Examples
    --------
    >>> out = Simulator("network_flows", seed=3).generate(500)
    >>> sorted(out.counts())
    ['duplicates', 'events', 'late', 'lines', 'malformed', 'out_of_order']
    """

    data: bytes
    labels: pl.DataFrame
    faults: pl.DataFrame
    lines: int

    def counts(self) -> dict[str, Any]:
        """Lines, distinct events and faults by class."""
        return _counts(self.faults, self.lines)


class Simulator(Source):
    """A replayable source of realistic events with labelled incidents and faults.

    Parameters
    ----------
    schema
        ``"server_metrics"``, ``"user_events"`` or ``"network_flows"``.
    hosts
        Size of the fleet (see :class:`~workbench.sources.simulator.fleet.Fleet`).
    rate
        Events per second of event time.
    start
        Event time of the first event, aware; None means ``clock.now()``.
    seed
        Seeds everything; the same seed and offset give the same bytes.
    incidents
        The incidents to inject; None schedules a handful over ``limit`` events, or
        every :data:`INCIDENT_CYCLE` when there is no limit.
    faults
        Data-quality fault rates.
    realtime, speed
        Deliver events when their time comes: event time runs from ``start`` at
        ``speed`` times the pace of ``clock`` (waiting with ``clock.sleep``). Otherwise
        batches are produced as fast as they are consumed.
    max_rows
        Most lines per batch; in realtime mode a batch goes out as soon as this many
        events are due.
    max_delay
        In realtime mode, seconds between batches.
    limit
        Number of events (offsets) to deliver; None is endless, in bounded memory.
    name, clock
        See :class:`~workbench.sources.base.Source`.

    Examples
    --------
    >>> sim = Simulator("user_events", seed=7, limit=3000, max_rows=1000)
    >>> [b.rows for b in sim.batches()][:2]
    [1000, 1000]
    >>> sim.offset
    3000
    """

    replayable = True

    def __init__(
        self,
        schema: str | Schema = "server_metrics",
        *,
        hosts: int = 300,
        rate: float = 2000.0,
        start: datetime | None = datetime(2024, 1, 1, tzinfo=UTC),  # noqa: B008 - immutable
        seed: int = 0,
        incidents: Sequence[Incident] | None = None,
        faults: Faults = Faults(),  # noqa: B008 - frozen
        realtime: bool = False,
        speed: float = 1.0,
        max_rows: int = 10_000,
        max_delay: float = 0.5,
        limit: int | None = None,
        name: str = "simulator",
        clock: Clock | None = None,
    ) -> None:
        self._params = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(name=name, clock=clock)
        who = f"simulator {name!r}"
        self.schema = get_schema(schema)
        if self.schema.name not in SCHEMAS:
            raise ConfigError(f"{who}: schema must be one of {sorted(SCHEMAS)}, not {schema!r}")
        for key, number in (("rate", rate), ("speed", speed), ("max_delay", max_delay)):
            if not number > 0:
                raise ConfigError(f"{who}: {key} must be > 0, not {number}")
        for key, count, least in (("seed", seed, 0), ("max_rows", max_rows, 1), ("limit", limit or 0, 0)):
            if not isinstance(count, Integral) or isinstance(count, bool) or count < least:
                raise ConfigError(f"{who}: {key} must be an int >= {least}, not {count!r}")
        start = self.clock.now() if start is None else start
        if start.tzinfo is None:
            raise ConfigError(f"{who}: start must be timezone-aware, not {start!r}")
        self.start_time = start.astimezone(UTC)  # (``start()`` is the Source verb)
        self.hosts, self.rate, self.seed, self.faults = hosts, float(rate), seed, faults
        self.realtime, self.speed, self.max_rows, self.max_delay = realtime, speed, max_rows, max_delay
        self.limit = limit
        self.fleet = Fleet.build(hosts, seed=seed)
        self._start_ms = (self.start_time - _EPOCH) // timedelta(milliseconds=1)
        self._spec = ChunkSpec(
            self.schema, self.fleet, faults, seed, self.rate, self._start_ms, self._incidents_between
        )
        self._span = timedelta(seconds=max(limit or 0, 1) / rate) if limit else INCIDENT_CYCLE
        self._fixed = None if incidents is None else tuple(self._check(incidents))
        self._cached: Chunk | None = None
        self.offset = 0

    def __repr__(self) -> str:
        defaults = {k: p.default for k, p in inspect.signature(Simulator).parameters.items()}
        shown = ", ".join(f"{k}={v!r}" for k, v in self._params.items() if v != defaults[k])
        return f"Simulator({shown})"

    @property
    def incidents(self) -> tuple[Incident, ...]:
        """The incidents so far: all of them with a limit, else up to the current cycle."""
        if self._fixed is not None:
            return self._fixed
        cycles = 1 if self.limit is not None else int(self.offset / self.rate // self._seconds) + 1
        return tuple(inc for cycle in range(cycles) for inc in self._cycle(cycle))

    @property
    def labels(self) -> pl.DataFrame:
        """The ground-truth incidents as a frame (see :attr:`incidents`)."""
        return incidents_frame(self.incidents)

    def generate(self, n_events: int) -> SimulatedData:
        """The first ``n_events`` events of this simulator run with ``limit=n_events``.

        Default incidents are spread over those events. Does not move :attr:`offset`.
        """
        sim = self if self.limit == n_events else self._clone(limit=n_events)
        pieces, frames, lines = [], [], 0
        for data, faults, count in sim._pieces(n_events):
            pieces += data
            frames.append(faults.with_columns(pl.col("line") + lines))
            lines += count
        faults = pl.concat(frames) if frames else pl.DataFrame(schema=FAULTS_SCHEMA)
        return SimulatedData(b"".join(pieces), sim.labels, faults, lines)

    @property
    def bulk(self) -> bool:
        """As fast as possible (not realtime): the simulator never waits."""
        return not self.realtime

    def seek(self, offset: int) -> None:
        """Continue with event number ``offset`` (an int, as found in ``RawBatch.offset``)."""
        if isinstance(offset, bool) or not isinstance(offset, Integral) or offset < 0:
            raise SourceError(f"simulator {self.name!r}: offset must be an int >= 0, not {offset!r}")
        self.offset = int(offset)

    def _batches(self) -> Iterator[RawBatch]:
        try:
            yield from (self._paced() if self.realtime else self._fast())
        finally:
            # a stopped simulator holds no chunk (15-30 MB of delivered lines): a notebook's
            # output history keeps each run's simulator, and kept its chunk with it
            self._cached = None

    def _fast(self) -> Iterator[RawBatch]:
        end = sys.maxsize if self.limit is None else self.limit
        while not self.stopped and self.offset < end:
            batch = self._take(end)
            if batch is not None:
                yield batch

    def _paced(self) -> Iterator[RawBatch]:
        """Deliver events as their time comes: every ``max_delay`` s, or at ``max_rows``."""
        end = sys.maxsize if self.limit is None else self.limit
        clock_per_event = 1.0 / (self.rate * self.speed)
        origin, origin_offset = self.clock.monotonic(), self.offset
        last = origin
        while not self.stopped and self.offset < end:
            now = self.clock.monotonic()
            due = min(end, origin_offset + int((now - origin) / clock_per_event + 1e-9))
            pending = due - self.offset
            if pending >= self.max_rows or (pending > 0 and (now - last >= self.max_delay or due == end)):
                last = now
                batch = self._take(due)
                if batch is not None:
                    yield batch
                continue
            if now - last >= self.max_delay:
                last = now
            until_full = (self.offset + self.max_rows - origin_offset) * clock_per_event
            wait = min(last + self.max_delay - now, origin + until_full - now)
            self.clock.sleep(max(wait, 1e-3))

    def _take(self, end: int) -> RawBatch | None:
        """The next whole events up to ``end``, at most ``max_rows`` lines (one chunk at most)."""
        chunk = self._chunk(self.offset // CHUNK_EVENTS)
        a, b = self.offset - chunk.first, min(end - chunk.first, CHUNK_EVENTS)
        fits = int(np.searchsorted(chunk.line_at, chunk.line_at[a] + self.max_rows, "right")) - 1
        b = min(b, max(a + 1, fits))
        data, rows, _ = chunk.cut(a, b)
        self.offset = chunk.first + b
        return RawBatch(data=b"".join(data), offset=self.offset, rows=rows) if rows else None

    def _chunk(self, k: int) -> Chunk:
        if self._cached is None or self._cached.first != k * CHUNK_EVENTS:
            self._cached = self._spec.build(k)
        return self._cached

    def _pieces(self, n_events: int) -> Iterator[tuple[list[memoryview], pl.DataFrame, int]]:
        """Bytes, faults and line count of the first ``n_events`` events, chunk by chunk.

        Chunks are independent, and building one mostly runs without the GIL (numpy,
        polars), so two are built at a time; at most three are held.
        """
        chunks = -(-n_events // CHUNK_EVENTS)
        with ThreadPoolExecutor(2) as pool:
            ahead = deque(pool.submit(self._spec.build, k) for k in range(min(2, chunks)))
            for k in range(chunks):
                chunk = ahead.popleft().result()
                if k + 2 < chunks:
                    ahead.append(pool.submit(self._spec.build, k + 2))
                data, count, faults = chunk.cut(0, min(CHUNK_EVENTS, n_events - chunk.first))
                yield data, faults, count

    def _incidents_between(self, low: int, high: int) -> list[Incident]:
        """Incidents overlapping event times ``low`` to ``high`` (ms)."""
        if self._fixed is not None:
            candidates: Sequence[Incident] = self._fixed
        else:
            span = self._seconds * 1000
            first = max(0, int((low - self._start_ms) // span))
            last = 0 if self.limit is not None else int((high - self._start_ms) // span)
            candidates = [inc for c in range(first, last + 1) for inc in self._cycle(c)]
        return [inc for inc in candidates if inc.start_ms < high and inc.end_ms > low]

    @property
    def _seconds(self) -> float:
        return self._span.total_seconds()

    def _cycle(self, cycle: int) -> list[Incident]:
        return schedule(
            self.schema.name,
            self.fleet.entities,
            start=self.start_time,
            span=self._span,
            rate=self.rate,
            seed=self.seed,
            cycle=cycle,
        )

    def _check(self, incidents: Sequence[Incident]) -> Iterator[Incident]:
        for inc in incidents:
            if not isinstance(inc, Incident) or inc.schema != self.schema.name:
                raise ConfigError(
                    f"simulator {self.name!r}: incidents must be {self.schema.name} Incident values, not {inc!r}"
                )
            if inc.entity_kind in ("host", "service", "country"):
                known = self.fleet.entities(inc.entity_kind)
                if inc.entity not in known:
                    raise ConfigError(
                        f"incident {inc.incident_id!r}: {inc.entity_kind} {inc.entity!r} is not "
                        f"in the fleet; e.g. {', '.join(known[:3])}"
                    )
            yield inc

    def _clone(self, **changes: Any) -> Simulator:
        return Simulator(**{**self._params, **changes})


def _counts(faults: pl.DataFrame, lines: int) -> dict[str, Any]:
    by_class = dict(faults.group_by("fault").len().iter_rows())
    return {
        "lines": lines,
        "events": lines - by_class.get("duplicate", 0),
        "duplicates": by_class.get("duplicate", 0),
        "malformed": {name: by_class.get(name, 0) for name in MALFORMED_CLASSES},
        "late": by_class.get("late", 0),
        "out_of_order": by_class.get("out_of_order", 0),
    }


def _write(fd: int, pieces: list[memoryview]) -> None:
    """Write ``pieces`` in few system calls; each releases the GIL while it runs."""
    views, start = [piece for piece in pieces if len(piece)], 0
    while start < len(views):
        batch = views[start : start + 512]  # well under IOV_MAX
        written = os.writev(fd, batch)
        for piece in batch:
            if written < len(piece):  # a partial write: resume inside this piece
                views[start] = piece[written:]
                break
            written -= len(piece)
            start += 1


def write_simulation(
    path: str | Path,
    *,
    events: int,
    seed: int,
    schema: str = "server_metrics",
    **kwargs: Any,
) -> dict[str, Any]:
    """Write ``events`` simulated events to ``path`` as NDJSON, chunk by chunk.

    Beside it go ``<stem>.labels.json`` (the incidents, ISO timestamps) and
    ``<stem>.faults.parquet`` (one row per faulty line). Other keyword arguments go to
    :class:`Simulator` (not ``realtime``).

    Returns
    -------
    dict
        ``lines``, ``events``, ``duplicates``, ``malformed`` (by class), ``late``,
        ``out_of_order``, ``incidents`` and the three paths.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     counts = write_simulation(f"{tmp}/m.jsonl", events=2000, seed=0)
    ...     sorted(p.name for p in Path(tmp).iterdir())
    ['m.faults.parquet', 'm.jsonl', 'm.labels.json']
    >>> counts["lines"] == counts["events"] + counts["duplicates"]
    True
    """
    if kwargs.get("realtime"):
        raise ConfigError("write_simulation: realtime must be False")
    sim = Simulator(schema, seed=seed, limit=events, **kwargs)
    path = Path(path)
    frames, lines = [], 0
    # Writing releases the GIL: one thread writes a chunk while the next is generated.
    with path.open("wb", buffering=0) as out, ThreadPoolExecutor(1) as writer:
        pending: Future[None] | None = None
        for data, faults, count in sim._pieces(events):
            if pending is not None:
                pending.result()
            pending = writer.submit(_write, out.fileno(), data)
            frames.append(faults.with_columns(pl.col("line") + lines))
            lines += count
        if pending is not None:
            pending.result()
    labels_path = path.with_name(f"{path.stem}.labels.json")
    faults_path = path.with_name(f"{path.stem}.faults.parquet")
    labels_path.write_text(json.dumps([inc.to_dict() for inc in sim.incidents], indent=2) + "\n")
    faults = pl.concat(frames) if frames else pl.DataFrame(schema=FAULTS_SCHEMA)
    faults.write_parquet(faults_path)
    return _counts(faults, lines) | {
        "incidents": len(sim.incidents),
        "path": str(path),
        "labels": str(labels_path),
        "faults": str(faults_path),
    }
