"""The transform nodes: ``decode``, ``validate``, ``horizon``, ``dedupe``, ``enrich``, ``window``.

Each is a small streamz node around a pure state class of this package
(:class:`~workbench.operators.dedupe.Deduplicator`, :class:`~workbench.operators.windows.Windower` …).
They are registered as methods of ``streamz.Stream`` in one place,
:mod:`workbench.pipeline.nodes`, so a pipeline reads
``head.decode(s).validate(s).dedupe("event_id").window(spec, by="host", aggs=AGGS)``.
Every node carries a polars frame per emit, has an error policy, metrics and side
outputs (see :class:`~workbench.operators.base.Operator`).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import polars as pl
from streamz import Stream

from workbench.clock import Clock
from workbench.errors import ConfigError
from workbench.operators.base import NodeMetrics, Operator, as_batch, rows
from workbench.operators.decode import DEAD_LETTER_SCHEMA, Decoded, RawLines, dead_letters, decode_frame, decode_ndjson
from workbench.operators.dedupe import Deduplicator
from workbench.operators.enrich import Enricher
from workbench.operators.extra import unknown_fields
from workbench.operators.horizon import Horizon
from workbench.operators.pseudonym import Pseudonymizer
from workbench.operators.validate import validate_frame
from workbench.operators.windows import Windower, WindowSpec
from workbench.schema import Schema, get_schema
from workbench.sources.base import RawBatch

__all__ = ["NodeMetrics", "Operator", "decode", "dedupe", "enrich", "horizon", "pseudonymize", "validate", "window"]


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
        batch = as_batch(x, self.name)
        prepared = batch.meta.pop("prepared", None) or {}
        out, self._ahead_s = prepared.pop(self.name, (None, 0.0))
        out = out or self.prepare(batch)
        self.records += out.records
        self.reject(out.dead)
        self._source_dead(batch.meta.get("dead"))
        return out.frame, [*(metadata or []), {"raw": out.raw, "prepared": prepared}]

    def _source_dead(self, dead: list[tuple[Any, ...]] | None) -> None:
        """Records a source refused before decoding, each ``(reason, raw)`` or ``(reason_code, reason, raw)``.

        A ragged CSV line comes as ``(reason, raw)`` (its code is read from the reason), a
        malformed push as ``(reason_code, reason, raw)``.
        """
        if not dead:
            return
        self.records += len(dead)
        pairs = [d for d in dead if len(d) == 2]
        if pairs:
            reasons, raws = zip(*pairs, strict=True)
            self.reject(dead_letters(self.name, list(reasons), list(raws)))
        dead = [d for d in dead if len(d) == 3]
        if dead:
            codes, reasons, raws = zip(*dead, strict=True)
            self.reject(
                pl.DataFrame(
                    {"node": [self.name] * len(dead), "reason_code": list(codes), "field": [None] * len(dead),
                     "reason": list(reasons), "raw": list(raws)},
                    schema=DEAD_LETTER_SCHEMA,
                )
            )  # fmt: skip

    def on_failed_batch(self, x: Any) -> None:  # noqa: D102
        self.records += rows(x) if not (isinstance(x, RawBatch) and x.data is not None) else len(RawLines(x.data))

    def snapshot(self) -> dict[str, Any]:  # noqa: D102
        return {**super().snapshot(), "records": self.records}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().restore(state)
        self.records = state["records"]


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


class horizon(Operator):  # noqa: N801
    """Events stamped more than ``max_future`` ahead of the processing clock go to ``rejects``.

    See :class:`~workbench.operators.horizon.Horizon` (``clock=None``: a replay's clock,
    the corroborated newest event; else the live wall clock).
    """

    def __init__(
        self,
        upstream: Stream,
        max_future: str | float | timedelta = "5m",
        *,
        time: str = "ts",
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "horizon"), **kwargs)
        self.state = Horizon(max_future, time=time, clock=clock, node=self.name)

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        ok, dead = self.state.process(x)
        self.reject(dead)
        return ok, metadata

    def snapshot(self) -> dict[str, Any]:  # noqa: D102
        return {**super().snapshot(), "state": self.state.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().restore(state)
        self.state.restore(state.get("state", {}))


_CONTENT_KEY = "__content_key"


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


class enrich(Operator):  # noqa: N801
    """Join a reference table (e.g. host → service, owner) onto each batch."""

    def __init__(self, upstream: Stream, table: pl.DataFrame, *, on: str, **kwargs: Any) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "enrich"), **kwargs)
        self.state = Enricher(table, on=on)

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        return self.state.process(x), metadata


class pseudonymize(Operator):  # noqa: N801
    """Replace chosen fields (user ids, IPs) with a keyed HMAC pseudonym (see :mod:`~workbench.operators.pseudonym`).

    ``key`` defaults to ``WORKBENCH_PSEUDONYM_KEY`` / ``WORKBENCH_PSEUDONYM_KEY_FILE``.
    """

    def __init__(
        self, upstream: Stream, fields: list[str], *, key: bytes | None = None, length: int = 16, **kwargs: Any
    ) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "pseudonymize"), **kwargs)
        self.state = Pseudonymizer(fields, key=key, length=length)

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        return self.state.process(x), metadata


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
