"""Chunks: how a block of simulated events becomes delivered NDJSON bytes.

A stream is cut into chunks of :data:`CHUNK_EVENTS` events, each drawn from its own
random stream keyed by ``(seed, schema, chunk index)``, so any offset can be reached
exactly and memory stays bounded however long the run. Event ``i`` is delivered at
``start + (i + u) / rate`` (``u`` uniform in [0, 1)); its event time equals its
delivery time unless a fault displaces it. Clean lines are encoded in bulk by polars;
duplicates and malformed lines are then spliced in.

Examples
--------
>>> CHUNK_EVENTS
65536
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from workbench.schema import Schema
from workbench.sources.simulator.faults import (
    FAULTS_SCHEMA,
    LATE,
    MALFORMED,
    OUT_OF_ORDER,
    Faults,
    corrupt,
)
from workbench.sources.simulator.fleet import Fleet
from workbench.sources.simulator.incidents import Incident

__all__ = ["CHUNK_EVENTS", "Chunk", "ChunkSpec", "encode"]

#: Events per chunk. Changing it changes every simulated stream.
CHUNK_EVENTS = 65_536


@dataclass(frozen=True, eq=False)
class Chunk:
    """The delivered lines of one chunk of events, addressable by event position.

    Parameters
    ----------
    first
        Offset (event number) of the chunk's first event.
    pieces, starts
        The delivered bytes in pieces (joining them would cost a copy) and where
        each piece starts, plus the total size.
    line_at, byte_at
        For ``b = 0 .. CHUNK_EVENTS``: lines and bytes delivered for the first ``b`` events.
    faults
        Ground truth (:data:`~workbench.sources.simulator.faults.FAULTS_SCHEMA`), chunk-local lines.

    Examples
    --------
    >>> from workbench.schema import USER_EVENTS
    >>> spec = ChunkSpec(USER_EVENTS, Fleet.build(5), Faults.none(), seed=0, rate=10.0,
    ...                  start_ms=0, incidents=lambda low, high: [])
    >>> chunk = spec.build(1)
    >>> chunk.first, int(chunk.line_at[-1])
    (65536, 65536)
    """

    first: int
    pieces: list[memoryview]
    starts: np.ndarray
    line_at: np.ndarray
    byte_at: np.ndarray
    faults: pl.DataFrame

    def cut(self, a: int, b: int) -> tuple[list[memoryview], int, pl.DataFrame]:
        """Bytes (in pieces), line count and faults of events ``a`` to ``b`` (chunk positions)."""
        low, high = int(self.line_at[a]), int(self.line_at[b])
        faults = self.faults.filter(pl.col("line").is_between(low, high, closed="left"))
        start, end = int(self.byte_at[a]), int(self.byte_at[b])
        if start == 0 and end == self.starts[-1]:
            return list(self.pieces), high - low, faults.with_columns(pl.col("line") - low)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        last = int(np.searchsorted(self.starts, end, side="left"))
        data = [
            self.pieces[k][max(start - at, 0) : min(end, int(self.starts[k + 1])) - at]
            for k in range(first, last)
            if (at := int(self.starts[k])) < end
        ]
        return data, high - low, faults.with_columns(pl.col("line") - low)


@dataclass(frozen=True, eq=False)
class ChunkSpec:
    """Everything that determines a stream's chunks; :meth:`build` makes one.

    Parameters
    ----------
    schema, fleet, faults
        What the events are, who emits them, and how delivery goes wrong.
    seed
        With the schema name and chunk index, seeds the chunk's random stream.
    rate
        Events per second of event time.
    start_ms
        Event time of event 0, epoch milliseconds.
    incidents
        Incidents overlapping an event-time range ``[low, high)`` in ms.

    Examples
    --------
    >>> from workbench.schema import SERVER_METRICS
    >>> spec = ChunkSpec(SERVER_METRICS, Fleet.build(5), Faults(), seed=0, rate=100.0,
    ...                  start_ms=1_704_067_200_000, incidents=lambda low, high: [])
    >>> chunk = spec.build(0)
    >>> data, lines, faults = chunk.cut(0, 10)
    >>> lines >= 9, bytes(data[0][:13])
    (True, b'{"event_id":"')
    """

    schema: Schema
    fleet: Fleet
    faults: Faults
    seed: int
    rate: float
    start_ms: int
    incidents: Callable[[int, int], Sequence[Incident]]

    def build(self, k: int) -> Chunk:
        """Generate, disorder, duplicate, encode and corrupt the ``k``-th chunk of events."""
        n, first = CHUNK_EVENTS, k * CHUNK_EVENTS
        rng = np.random.default_rng([self.seed, zlib.crc32(self.schema.name.encode()), k])
        slot = np.arange(first, first + n, dtype=np.int64)
        deliver = self.start_ms + ((slot + rng.random(n)) * (1000.0 / self.rate)).astype(np.int64)
        kind, lag = self.faults.plan(n, rng)
        ts = deliver - lag
        incidents = self.incidents(int(ts.min()), int(deliver.max()) + 1)
        values, keep = self.fleet.sample(self.schema.name, ts, rng, incidents)
        keep = self.faults.confirm(kind, ts, keep)
        original, attach = self.faults.duplicate(kind, keep, rng, self.rate)
        prefix = "".join(word[0] for word in self.schema.name.split("_")) + f"-{self.seed}-"
        values = values.with_columns(event_id=slot, ts=self.faults.stamp(ts, rng))
        rows = np.flatnonzero(keep)  # row r of the encoded lines is event rows[r]
        lines = encode(self.schema, values[rows], key_prefix=prefix)
        ids = _Ids(prefix, slot[rows])
        return _assemble(self, first, rows, kind[rows], lag[rows], ts[rows], lines, ids, original, attach, rng)


def encode(schema: Schema, frame: pl.DataFrame, *, key_prefix: str = "") -> pl.Series:
    r"""One ``\n``-terminated JSON object per row, fields in schema order.

    ``frame`` holds every field; the time field already as JSON text (see
    :meth:`Faults.stamp`). String values are trusted not to need escaping.
    ``key_prefix`` goes before each key, which may then be a number column.

    Examples
    --------
    >>> from workbench.schema import Field, Schema
    >>> s = Schema("tiny", (Field("id", "str"), Field("ts", "ts")), key="id", entity="id")
    >>> frame = pl.DataFrame({"id": [7], "ts": ["5"]})
    >>> encode(s, frame, key_prefix="e-").item()
    '{"id":"e-7","ts":5}\n'
    """
    parts: list[pl.Expr] = []
    literal = "{"
    for f in schema.fields:
        literal += f'"{f.name}":'
        quote = '"' if f.kind == "str" else ""
        prefix = key_prefix if f.name == schema.key else ""
        column = frame[f.name]
        if isinstance(column.dtype, pl.Enum):  # format each category once, then gather
            fragments = pl.Series([f"{literal}{quote}{c}{quote}" for c in column.dtype.categories])
            parts.append(pl.lit(fragments.gather(column.to_physical())))
            literal = ","
        else:
            parts += [pl.lit(literal + quote + prefix), pl.col(f.name).cast(pl.String)]
            literal = quote + ","
    parts.append(pl.lit(literal[:-1] + "}\n"))
    return frame.select(pl.concat_str(parts).alias("line")).to_series()


def _assemble(
    spec: ChunkSpec,
    first: int,
    rows: np.ndarray,
    kind: np.ndarray,
    lag: np.ndarray,
    ts: np.ndarray,
    lines: pl.Series,
    ids: _Ids,
    original: np.ndarray,
    attach: np.ndarray,
    rng: np.random.Generator,
) -> Chunk:
    """Splice duplicates and malformed lines into the bulk-encoded clean lines.

    Row ``r`` of ``lines`` is event ``rows[r]`` of the chunk; ``original`` events are
    delivered again right after event ``attach``.
    """
    blob, offsets = _contiguous(lines)
    # The copy of row `source` goes in before row `place`.
    order = np.lexsort((original, attach))
    source = np.searchsorted(rows, original[order])
    place = np.searchsorted(rows, attach[order], side="right")
    edits = [(p, 0, blob[offsets[s] : offsets[s + 1]]) for p, s in zip(place.tolist(), source.tolist(), strict=True)]
    # Malformed lines are rewritten one by one: the only per-record Python.
    broken = np.flatnonzero(kind == MALFORMED)
    classes = spec.faults.malformed_kinds(len(broken), rng)
    pick = random.Random(int(rng.integers(2**63)))
    fields, resized = [], np.zeros(len(broken), dtype=np.int64)
    for i, (row, fault) in enumerate(zip(broken.tolist(), classes, strict=True)):
        line = str(blob[offsets[row] : offsets[row + 1] - 1], "utf-8")
        bad, field = corrupt(line, fault, spec.schema, int(ts[row]), pick)
        edits.append((row, 1, memoryview(bad + b"\n")))
        fields.append(field)
        resized[i] = len(bad) + 1 - (offsets[row + 1] - offsets[row])
    edits.sort(key=lambda edit: edit[:2])  # stable: copies keep their order
    pieces, cursor = [], 0
    for position, replaces, payload in edits:
        pieces += [blob[cursor : offsets[position]], payload]
        cursor = offsets[position + 1] if replaces else offsets[position]
    pieces.append(blob[cursor : offsets[-1]])
    starts = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(piece) for piece in pieces], out=starts[1:])
    # Lines and bytes delivered for the chunk's first b events, b = 0..n.
    rows_before = np.zeros(CHUNK_EVENTS + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=CHUNK_EVENTS), out=rows_before[1:])
    copies_before = np.zeros(CHUNK_EVENTS + 1, dtype=np.int64)
    np.cumsum(np.bincount(attach, minlength=CHUNK_EVENTS), out=copies_before[1:])
    copy_bytes = np.concatenate(([0], np.cumsum(offsets[source + 1] - offsets[source])))
    resized_bytes = np.concatenate(([0], np.cumsum(resized)))
    byte_at = offsets[rows_before] + copy_bytes[copies_before] + resized_bytes[np.searchsorted(broken, rows_before)]
    # Ground truth, one row per faulty line.
    late, disorder = np.flatnonzero(kind == LATE), np.flatnonzero(kind == OUT_OF_ORDER)
    faulty = np.concatenate([late, disorder, broken])
    at_line = np.concatenate([place + np.arange(len(place)), faulty + np.searchsorted(place, faulty, "right")])
    names = ["late"] * len(late) + ["out_of_order"] * len(disorder) + classes
    faults = (
        pl.DataFrame(
            {
                "line": at_line,
                "event_id": ids.at(np.concatenate([source, faulty])),
                "fault": ["duplicate"] * len(source) + names,
                "field": [None] * (len(source) + len(late) + len(disorder)) + fields,
                "lag_ms": np.concatenate(
                    [np.full(len(source), -1), lag[late], lag[disorder], np.full(len(broken), -1)]
                ),
            },
            schema=FAULTS_SCHEMA,
        )
        .with_columns(
            event_id=pl.when(pl.col("fault") != "broken_json").then("event_id"),
            lag_ms=pl.when(pl.col("lag_ms") >= 0).then("lag_ms"),
        )
        .sort("line")
    )
    return Chunk(first, pieces, starts, rows_before + copies_before, byte_at, faults)


def _contiguous(lines: pl.Series) -> tuple[memoryview, np.ndarray]:
    """All ``lines`` as one buffer, and where each starts (plus the end), without a copy."""
    array = lines.to_arrow(compat_level=pl.CompatLevel.oldest())
    if str(array.type) == "large_string" and array.offset == 0 and array.null_count == 0:
        _, starts, data = array.buffers()
        offsets = np.frombuffer(starts, dtype=np.int64)[: len(array) + 1]
        return memoryview(data)[offsets[0] :], offsets - offsets[0]
    data = lines.str.join("").item().encode()  # unusual layouts: one copy more
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(lines.str.len_bytes().to_numpy(), out=offsets[1:])
    return memoryview(data), offsets


@dataclass(frozen=True, eq=False)
class _Ids:
    """Event ids of a chunk's rows, spelled out only for the few that are needed."""

    prefix: str
    number: np.ndarray

    def at(self, rows: np.ndarray) -> list[str]:
        return [f"{self.prefix}{n}" for n in self.number[rows].tolist()]
