"""Workbench's streamz nodes, registered on ``streamz.Stream`` in this one module.

After ``import workbench`` a pipeline reads::

    head.decode("server_metrics").validate("server_metrics").dedupe("event_id")
        .enrich(hosts, on="host").window(Tumbling("10s"), by="host", aggs=AGGS)

and streamz's own nodes (``map``, ``filter``, ``sink`` …) mix in freely. Every node
carries a polars frame per emit, has an error policy (``"dead_letter"``, ``"fail"``,
``"drop"``), metrics, and side outputs: ``rejects`` (dead letters with reasons) and,
for windows, ``late``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Literal

import polars as pl
from streamz import Stream

from workbench.errors import ConfigError
from workbench.operators.decode import Decoded, RawLines, dead_letters, decode_frame, decode_ndjson, rows_as_json
from workbench.operators.dedupe import Deduplicator
from workbench.operators.enrich import Enricher
from workbench.operators.extra import unknown_fields
from workbench.operators.validate import validate_frame
from workbench.operators.windows import Windower, WindowSpec
from workbench.schema import Schema, get_schema
from workbench.sources.base import RawBatch

__all__ = ["NodeMetrics", "Operator", "decode", "dedupe", "enrich", "score", "validate", "window"]

ErrorPolicy = Literal["dead_letter", "fail", "drop"]
_POLICIES = ("dead_letter", "fail", "drop")


@dataclass
class NodeMetrics:
    """Counters of one node; ``state_size`` and ``watermark`` are filled on read."""

    batches: int = 0
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    dropped: int = 0
    errors: int = 0
    seconds: float = 0.0
    last_batch_ms: float = 0.0
    last_error: str | None = None


def _rows(x: Any) -> int:
    if isinstance(x, pl.DataFrame):
        return x.height
    if isinstance(x, RawBatch):
        return x.rows
    return 1


class Operator(Stream):
    """Base of Workbench nodes: timing, metrics, error policy and side outputs.

    Subclasses implement ``process(x, metadata) -> (frame, metadata)``.
    """

    def __init__(self, upstream: Stream, *, name: str | None = None, errors: ErrorPolicy = "dead_letter"):
        if errors not in _POLICIES:
            raise ConfigError(f"node {name!r}: errors must be one of {_POLICIES}, not {errors!r}")
        super().__init__(upstream, stream_name=name or type(self).__name__)
        self.errors = errors
        self.metrics = NodeMetrics()
        self._ahead_s = 0.0
        self.rejects = Stream(stream_name=f"{self.name}.rejects")
        # set by a pipeline: adds the ingest time and source offset to dead letters
        self.stamp: Callable[[pl.DataFrame], pl.DataFrame] | None = None

    @property
    def name(self) -> str:
        """The node's name (unique within a pipeline)."""
        return str(self._name)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __str__(self) -> str:
        return f"{type(self).__name__}<{self.name}>"

    # streamz calls this for every element
    def update(self, x: Any, who: Any = None, metadata: Any = None) -> Any:
        """Process one batch and emit the result downstream."""
        start = time.perf_counter()
        m = self.metrics
        m.batches += 1
        m.rows_in += _rows(x)
        try:
            out, meta = self.process(x, metadata)
        except Exception as exc:
            m.errors += 1
            m.last_error = f"{type(exc).__name__}: {exc}"
            self.on_failed_batch(x)
            if self.errors == "fail":
                raise
            if self.errors == "dead_letter":
                self.reject(self._whole_batch(x, f"node {self.name!r} failed: {m.last_error}"))
            else:
                m.dropped += _rows(x)
            return None
        finally:
            # plus any time this batch spent in ``prepare`` on a read-ahead thread
            elapsed = time.perf_counter() - start + self._ahead_s
            self._ahead_s = 0.0
            m.seconds += elapsed
            m.last_batch_ms = elapsed * 1000
        if out is None or (isinstance(out, pl.DataFrame) and out.height == 0):
            return None
        m.rows_out += _rows(out)
        return self._emit(out, metadata=meta)

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:
        """Transform one batch; return ``(output, metadata)``."""
        return x, metadata

    def on_failed_batch(self, x: Any) -> None:
        """Hook: account for a batch whose processing raised."""

    def reject(self, dead: pl.DataFrame) -> None:
        """Send dead letters to the ``rejects`` side output."""
        if dead.height:
            self.metrics.rejected += dead.height
            self.rejects.emit(dead if self.stamp is None else self.stamp(dead))

    def _whole_batch(self, x: Any, reason: str) -> pl.DataFrame:
        if isinstance(x, bytes | pl.DataFrame):
            x = _as_batch(x, self.name)
        if isinstance(x, RawBatch) and x.data is not None:
            raw = RawLines(x.data)
            lines = raw.lines(list(range(len(raw))))
        elif isinstance(x, RawBatch) and x.frame is not None:
            lines = rows_as_json(x.frame)
        else:
            lines = [repr(x).encode()]
        return dead_letters(self.name, [reason] * len(lines), lines)

    # stateful nodes override these
    @property
    def state_size(self) -> int:
        """Rows or keys held as state."""
        return 0

    @property
    def watermark(self) -> Any:
        """Event-time watermark, for nodes that keep one."""
        return None

    def flush(self) -> None:
        """End of input: emit whatever is held."""

    def snapshot(self) -> dict[str, Any]:
        """Node state (a copy) plus its metrics."""
        return {"metrics": asdict(self.metrics)}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        self.metrics = NodeMetrics(**state["metrics"])


def _as_batch(x: Any, node: str) -> RawBatch:
    """Bytes and frames fed to ``decode`` directly, as the raw batches sources yield."""
    if isinstance(x, RawBatch):
        return x
    if isinstance(x, bytes):
        return RawBatch(data=x)
    if isinstance(x, pl.DataFrame):
        return RawBatch(frame=x, rows=x.height)
    raise ConfigError(f"node {node!r}: expected RawBatch, bytes or DataFrame, not {type(x).__name__}")


@Stream.register_api()
class decode(Operator):  # noqa: N801 - streamz nodes are lower-case verbs
    """Decode raw batches (NDJSON bytes or a frame) into the schema's wire types.

    Bad records go to ``rejects`` with their raw bytes and a reason. ``records``
    counts every record seen (the pipeline's ``ingested``).
    """

    def __init__(self, upstream: Stream, schema: str | Schema, **kwargs: Any) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "decode"), **kwargs)
        self.schema = get_schema(schema)
        self._wire = self.schema.wire()  # fields under their input names; renamed after decoding
        self.records = 0

    def prepare(self, x: RawBatch) -> Decoded:
        """Decode a raw batch; stateless, so the pipeline may run it ahead on a worker thread."""
        if x.data is not None:
            out = decode_ndjson(x.data, self._wire, node=self.name, newlines=x.newlines)
        elif x.frame is not None:
            out = decode_frame(x.frame, self._wire, node=self.name)
        else:
            raise ConfigError(f"node {self.name!r}: a RawBatch needs data or frame")
        if self.schema.extra == "reject":
            out = unknown_fields(out, x, self._wire, node=self.name)
        if self.schema.renames:
            out = dataclasses.replace(out, frame=out.frame.rename(self.schema.renames))
        return out

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        batch = _as_batch(x, self.name)
        prepared = batch.meta.pop("prepared", None) or {}
        out, self._ahead_s = prepared.pop(self.name, (None, 0.0))
        out = out or self.prepare(batch)
        self.records += out.records
        self.reject(out.dead)
        return out.frame, [*(metadata or []), {"raw": out.raw, "prepared": prepared}]

    def on_failed_batch(self, x: Any) -> None:  # noqa: D102
        self.records += _rows(x) if not (isinstance(x, RawBatch) and x.data is not None) else len(RawLines(x.data))

    def snapshot(self) -> dict[str, Any]:  # noqa: D102
        return {**super().snapshot(), "records": self.records}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().restore(state)
        self.records = state["records"]


@Stream.register_api()
class validate(Operator):  # noqa: N801
    """Check decoded records against the schema's rules; bad ones go to ``rejects``."""

    def __init__(self, upstream: Stream, schema: str | Schema, **kwargs: Any) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "validate"), **kwargs)
        self.schema = get_schema(schema)

    def prepare(self, frame: pl.DataFrame, raw: RawLines | None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Validate a decoded frame; stateless, so it may run ahead on a worker thread."""
        return validate_frame(frame, self.schema, raw, node=self.name)

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        meta = next((m for m in reversed(metadata or []) if isinstance(m, dict) and "raw" in m), {})
        ahead = meta.get("prepared", {}).pop(self.name, None)
        if ahead is not None and ahead[0][0] is not None:
            (valid, dead), self._ahead_s = ahead
        else:
            valid, dead = self.prepare(x, meta.get("raw"))
        self.reject(dead)
        rest = [m for m in (metadata or []) if not (isinstance(m, dict) and "raw" in m)]
        return valid, rest


_CONTENT_KEY = "__content_key"


@Stream.register_api()
class dedupe(Operator):  # noqa: N801
    """Drop repeated keys (event-time TTL); repeats go to the ``duplicates`` side output."""

    def __init__(
        self,
        upstream: Stream,
        key: str | None = "event_id",
        *,
        time: str = "ts",
        ttl: str | float | timedelta = "10m",
        max_keys: int = 5_000_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "dedupe"), **kwargs)
        # key None: a repeat is a record equal in every field (its content is the key)
        self.content = key is None
        self.state = Deduplicator(key or _CONTENT_KEY, time, ttl=ttl, max_keys=max_keys)
        self.duplicates = Stream(stream_name=f"{self.name}.duplicates")
        self.duplicate_count = 0

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        if self.content:
            text = [pl.col(c).cast(pl.String).fill_null("\x00") for c in x.columns]
            kept, dups = self.state.process(x.with_columns(pl.concat_str(text, separator="\x1f").alias(_CONTENT_KEY)))
            kept, dups = kept.drop(_CONTENT_KEY), dups.drop(_CONTENT_KEY)
        else:
            kept, dups = self.state.process(x)
        if dups.height:
            self.duplicate_count += dups.height
            self.duplicates.emit(dups)
        return kept, metadata

    @property
    def state_size(self) -> int:  # noqa: D102
        return self.state.state_size

    def snapshot(self) -> dict[str, Any]:  # noqa: D102
        return {**super().snapshot(), "state": self.state.snapshot(), "duplicates": self.duplicate_count}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().restore(state)
        self.state.restore(state["state"])
        self.duplicate_count = state["duplicates"]


@Stream.register_api()
class enrich(Operator):  # noqa: N801
    """Join a reference table (e.g. host → service, owner) onto each batch."""

    def __init__(self, upstream: Stream, table: pl.DataFrame, *, on: str, **kwargs: Any) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "enrich"), **kwargs)
        self.state = Enricher(table, on=on)

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        return self.state.process(x), metadata


@Stream.register_api()
class window(Operator):  # noqa: N801
    """Keyed event-time windows; emits each closed window once; late rows to ``late``."""

    def __init__(
        self,
        upstream: Stream,
        spec: WindowSpec,
        *,
        by: str | list[str] | None,
        aggs: list[pl.Expr],
        time: str = "ts",
        lateness: str | float | timedelta = "5s",
        max_rows: int = 5_000_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "window"), **kwargs)
        self.state = Windower(spec, by=by, aggs=aggs, time=time, lateness=lateness, max_rows=max_rows)
        self.late = Stream(stream_name=f"{self.name}.late")

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        out, late = self.state.process(x)
        if late.height:
            self.late.emit(late)
        return out, metadata

    def flush(self) -> None:  # noqa: D102
        out = self.state.flush()
        if out.height:
            self.metrics.rows_out += out.height
            self._emit(out)

    @property
    def late_count(self) -> int:
        """Rows sent to the late output so far."""
        return self.state.counters["late"]

    @property
    def state_size(self) -> int:  # noqa: D102
        return self.state.state_size

    @property
    def watermark(self) -> Any:  # noqa: D102
        return self.state.watermark

    def snapshot(self) -> dict[str, Any]:  # noqa: D102
        return {**super().snapshot(), "state": self.state.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().restore(state)
        self.state.restore(state["state"])


@Stream.register_api()
def score(upstream: Stream, detector: Any = "robust_z", **kwargs: Any) -> Stream:
    """Per-entity online anomaly scores of window rows (:class:`workbench.models.node.ScoreNode`)."""
    from workbench.models.node import ScoreNode  # the models layer builds on this one

    return ScoreNode(upstream, detector, **kwargs)
