"""Event schemas as values.

A :class:`Schema` declares the fields of one kind of event, their types and the
rules a valid event obeys. Types are strict: a JSON string is never a number and a
number is never a string. ``ts`` accepts epoch milliseconds (an integer) or an
ISO-8601 string with a UTC offset; naive timestamps are rejected.

Examples
--------
>>> from workbench.schema import SERVER_METRICS
>>> SERVER_METRICS.entity
'host'
>>> [f.name for f in SERVER_METRICS.fields][:4]
['event_id', 'ts', 'host', 'cpu']
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import polars as pl

from workbench.errors import ConfigError, SchemaError

__all__ = [
    "NETWORK_FLOWS",
    "PROM_SAMPLES",
    "SCHEMAS",
    "SERVER_METRICS",
    "USER_EVENTS",
    "Field",
    "Schema",
    "get_schema",
]

Kind = Literal["str", "float", "int", "ts"]
#: How the time field is written: ``auto`` (epoch milliseconds or ISO-8601 with an offset),
#: epoch seconds / milliseconds / microseconds / nanoseconds, or ISO-8601 only.
TimeFormat = Literal["auto", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "iso"]
TIME_FORMATS: tuple[str, ...] = ("auto", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "iso")
#: What happens to fields a record carries that the schema does not declare.
Extra = Literal["keep-numeric", "drop", "reject"]
EXTRAS: tuple[str, ...] = ("keep-numeric", "drop", "reject")
#: How repeated events are found: by the key field, by a hash of the whole record, or not at all.
Dedupe = Literal["key", "hash", "none"]
DEDUPES: tuple[str, ...] = ("key", "hash", "none")

#: The in-memory type of the event-time column after decoding.
TS_DTYPE = pl.Datetime("ms", "UTC")

_OUTPUT_DTYPES: dict[str, pl.DataType] = {
    "str": pl.String(),
    "float": pl.Float64(),
    "int": pl.Int64(),
    "ts": TS_DTYPE,
}
# What the JSON decoder is asked for. Float64/Int64 reject strings; string fields
# are read as text (a number arrives as its digits, and the decoder then checks the
# few ambiguous values exactly; Categorical would reject numbers itself, but polars'
# categories are global and grow without bound with ids); the time field is read as
# text and parsed in the validation step.
_WIRE_DTYPES: dict[str, pl.DataType] = {
    "str": pl.String(),
    "float": pl.Float64(),
    "int": pl.Int64(),
    "ts": pl.String(),
}


@dataclass(frozen=True)
class Field:
    """One field of an event.

    Parameters
    ----------
    name
        Column name.
    kind
        ``"str"``, ``"float"``, ``"int"`` or ``"ts"`` (the event time).
    required
        A missing or null value sends the event to the dead-letter output.
    min, max
        Inclusive bounds for numbers; outside them the event is dead-lettered.
    max_length
        Longest accepted string, in characters.
    doc
        What the field means.
    unit
        Unit of a number (``"MB"``, ``"%"``, ``"ms"`` …), shown beside it.
    source
        The name the field has in the input, when it differs (a rename: ``from:`` in a
        schema file).
    """

    name: str
    kind: Kind
    required: bool = True
    min: float | None = None
    max: float | None = None
    max_length: int = 256
    doc: str = ""
    unit: str = ""
    source: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _OUTPUT_DTYPES:
            raise ConfigError(f"field {self.name!r}: kind must be one of {sorted(_OUTPUT_DTYPES)}, not {self.kind!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"field {self.name!r}: min must be <= max, not {self.min} > {self.max}")

    @property
    def dtype(self) -> pl.DataType:
        """The polars type of the decoded column."""
        return _OUTPUT_DTYPES[self.kind]

    @property
    def wire_name(self) -> str:
        """The field's name in the input (its ``source`` when renamed)."""
        return self.source or self.name


@dataclass(frozen=True)
class Schema:
    """A named event schema.

    Parameters
    ----------
    name
        Schema name, e.g. ``"server_metrics"``.
    fields
        The fields, in order.
    key
        The field that identifies an event (used to de-duplicate when ``dedupe`` is
        ``"key"``).
    time
        The event-time field (kind ``"ts"``).
    entity
        The default grouping key for windows (e.g. ``"host"``), one field or several.
    max_record_bytes
        Longest accepted record; longer lines are rejected before decoding, so a
        flood of huge records cannot exhaust memory or time.
    time_format
        How the time field is written (see :data:`TimeFormat`).
    naive
        ISO-8601 times without an offset: ``"reject"`` them, or read them in this
        IANA zone (e.g. ``"UTC"``, ``"Europe/Paris"``).
    dedupe
        ``"key"`` (repeats of ``key``), ``"hash"`` (repeats of the whole record) or ``"none"``.
    extra
        Fields the schema does not declare: ``"keep-numeric"`` (numbers become metrics,
        resolved from the input's first records), ``"drop"`` or ``"reject"`` the record.
    path
        The schema file it was loaded from, if any.
    """

    name: str
    fields: tuple[Field, ...]
    key: str | None = "event_id"
    time: str = "ts"
    entity: str | tuple[str, ...] = "host"
    max_record_bytes: int = 65_536
    time_format: TimeFormat = "auto"
    naive: str = "reject"
    dedupe: Dedupe = "key"
    extra: Extra = "drop"
    path: str | None = None

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise SchemaError(f"schema {self.name!r}: field names must be unique, got {names}")
        for choice, allowed in (("time_format", TIME_FORMATS), ("extra", EXTRAS), ("dedupe", DEDUPES)):
            if getattr(self, choice) not in allowed:
                raise SchemaError(
                    f"schema {self.name!r}: {choice} must be one of {list(allowed)}, not {getattr(self, choice)!r}"
                )
        if self.dedupe == "key" and self.key is None:
            raise SchemaError(f"schema {self.name!r}: dedupe 'key' needs a key field")
        roles: list[tuple[str, str | None]] = [("time", self.time), *(("entity", e) for e in self.by)]
        if self.dedupe == "key":
            roles.append(("key", self.key))
        for role, value in roles:
            if value not in names:
                raise SchemaError(f"schema {self.name!r}: {role} {value!r} is not a field of {names}")
        if self.naive != "reject":
            _check_zone(self.name, self.naive)
        if self.field(self.time).kind != "ts":
            raise SchemaError(f"schema {self.name!r}: time field {self.time!r} must have kind 'ts'")
        if sum(f.kind == "ts" for f in self.fields) != 1:
            raise SchemaError(f"schema {self.name!r}: exactly one field must have kind 'ts'")

    def field(self, name: str) -> Field:
        """The field called ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise SchemaError(f"schema {self.name!r} has no field {name!r}; fields: {self.names}")

    @property
    def names(self) -> list[str]:
        """Field names in order."""
        return [f.name for f in self.fields]

    @property
    def polars_schema(self) -> pl.Schema:
        """Types of a decoded, validated frame (``ts`` is an aware UTC datetime)."""
        return pl.Schema({f.name: f.dtype for f in self.fields})

    @property
    def wire_schema(self) -> dict[str, pl.DataType]:
        """Types the strict JSON decoder is asked for."""
        return {f.name: _WIRE_DTYPES[f.kind] for f in self.fields}

    def empty(self) -> pl.DataFrame:
        """An empty frame of this schema."""
        return pl.DataFrame(schema=self.polars_schema)

    @property
    def by(self) -> list[str]:
        """The entity as a list of fields."""
        return [self.entity] if isinstance(self.entity, str) else list(self.entity)

    @property
    def metrics(self) -> list[str]:
        """Numeric fields other than the key and the entity: what windows aggregate.

        Examples
        --------
        >>> SERVER_METRICS.metrics
        ['cpu', 'mem', 'latency_ms', 'status']
        """
        skip = {self.key, *self.by}
        return [f.name for f in self.fields if f.kind in ("float", "int") and f.name not in skip]

    @property
    def renames(self) -> dict[str, str]:
        """Input name → field name, for renamed fields."""
        return {f.source: f.name for f in self.fields if f.source and f.source != f.name}

    def wire(self) -> Schema:
        """The schema with its fields under their input names (what the decoder reads)."""
        if not self.renames:
            return self
        back = {v: k for k, v in self.renames.items()}
        fields = tuple(replace(f, name=f.wire_name, source=None) for f in self.fields)
        key = back.get(self.key, self.key) if self.key is not None else None
        entity = tuple(back.get(e, e) for e in self.by)
        return replace(self, fields=fields, key=key, time=back.get(self.time, self.time), entity=entity)

    def with_fields(self, extra: list[Field]) -> Schema:
        """The schema plus ``extra`` fields (e.g. numeric fields found in the input)."""
        return replace(self, fields=(*self.fields, *extra)) if extra else self

    def describe(self) -> dict[str, Any]:
        """Everything that decides what the schema accepts and produces, as plain values.

        A checkpoint records it, so a resume with another schema is refused.

        Examples
        --------
        >>> sorted(SERVER_METRICS.describe())[:4]
        ['dedupe', 'entity', 'extra', 'fields']
        """
        return {
            "name": self.name,
            "fields": [[f.name, f.kind, f.required, f.min, f.max, f.max_length, f.source] for f in self.fields],
            "key": self.key,
            "time": self.time,
            "entity": self.by,
            "time_format": self.time_format,
            "naive": self.naive,
            "dedupe": self.dedupe,
            "extra": self.extra,
        }

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Read a schema file (YAML); see :mod:`workbench.schema_file` for its form."""
        from workbench.schema_file import load_schema

        return load_schema(path)


def _check_zone(schema: str, zone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SchemaError(
            f"schema {schema!r}: naive must be 'reject' or an IANA time zone such as 'UTC' or 'Europe/Paris', "
            f"not {zone!r}"
        ) from None


_EVENT_ID = Field("event_id", "str", max_length=128, doc="Unique id of the event (the dedupe key).")
_TS = Field("ts", "ts", doc="Event time: epoch milliseconds or ISO-8601 with an offset.")

SERVER_METRICS = Schema(
    "server_metrics",
    (
        _EVENT_ID,
        _TS,
        Field("host", "str", doc="Host name."),
        Field("cpu", "float", min=0, max=100, doc="CPU utilisation, percent.", unit="%"),
        Field("mem", "float", min=0, max=100, doc="Memory utilisation, percent.", unit="%"),
        Field("latency_ms", "float", min=0, max=3_600_000, doc="Request latency, ms.", unit="ms"),
        Field("status", "int", min=100, max=599, doc="HTTP status of the sampled request."),
        Field("service", "str", required=False, doc="Service the host belongs to."),
        Field("region", "str", required=False, doc="Cloud region."),
    ),
    entity="host",
)

USER_EVENTS = Schema(
    "user_events",
    (
        _EVENT_ID,
        _TS,
        Field("user_id", "str", doc="User id."),
        Field("session_id", "str", doc="Session id."),
        Field("kind", "str", max_length=32, doc="page_view, login, checkout, search, error, logout."),
        Field("path", "str", max_length=2048, doc="URL path."),
        Field("duration_ms", "float", min=0, max=86_400_000, doc="Time spent, ms.", unit="ms"),
        Field("country", "str", max_length=8, doc="ISO country code."),
    ),
    entity="user_id",
)

NETWORK_FLOWS = Schema(
    "network_flows",
    (
        _EVENT_ID,
        _TS,
        Field("src_ip", "str", max_length=64, doc="Source address."),
        Field("dst_ip", "str", max_length=64, doc="Destination address."),
        Field("dst_port", "int", min=0, max=65535, doc="Destination port."),
        Field("protocol", "str", max_length=16, doc="tcp, udp, icmp."),
        Field("bytes", "int", min=0, doc="Bytes in the flow.", unit="B"),
        Field("packets", "int", min=0, doc="Packets in the flow.", unit="packets"),
        Field("action", "str", max_length=16, doc="accept or reject."),
    ),
    entity="src_ip",
)

PROM_SAMPLES = Schema(
    "prom_samples",
    (
        _EVENT_ID,
        _TS,
        Field("instance", "str", doc="The scraped target, host:port (Prometheus' instance label)."),
        Field("metric", "str", doc="Metric name, e.g. node_cpu_seconds_total."),
        Field("labels", "str", required=False, max_length=2048, doc='Label set as exposed: cpu="0",mode="idle".'),
        Field("series", "str", max_length=2048, doc="metric{labels}: one time series of the instance."),
        Field("value", "float", doc="Sample value (NaN and ±Inf pass)."),
        Field("rate", "float", required=False, doc="Per-second increase since the previous scrape (counters)."),
    ),
    entity="series",
)

#: Event schemas the simulator generates.
SCHEMAS: dict[str, Schema] = {s.name: s for s in (SERVER_METRICS, USER_EVENTS, NETWORK_FLOWS)}
_ALL: dict[str, Schema] = {**SCHEMAS, PROM_SAMPLES.name: PROM_SAMPLES}  # + scraped samples


def get_schema(schema: str | Path | Schema) -> Schema:
    """Look a schema up by name, or read a schema file (a :class:`Schema` passes through).

    Examples
    --------
    >>> get_schema("user_events").entity
    'user_id'
    >>> get_schema("nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: schema: unknown name 'nope'; known: network_flows, prom_samples, server_metrics, ...
    """
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, Path) or str(schema).endswith((".yaml", ".yml")):
        return Schema.load(schema)
    try:
        return _ALL[schema]
    except KeyError:
        known = ", ".join(sorted(_ALL))
        raise ConfigError(f"schema: unknown name {schema!r}; known: {known} (or a schema file, x.yaml)") from None
