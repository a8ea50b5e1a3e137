"""Incidents: the labelled anomalies a simulator injects, i.e. the ground truth.

An :class:`Incident` names what goes wrong (``kind``), to whom (``entity``: a host,
service, country or address) and when (``start`` to ``end``, aware UTC datetimes).
:func:`schedule` lays a handful of them over a time range, deterministically from a
seed; :func:`incidents_frame` turns a list into the ``labels`` frame.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> inc = Incident("i1", "cpu_saturation", "server_metrics", "web-eu-west-1-001",
...                t0, t0 + timedelta(minutes=5))
>>> inc.detail, inc.magnitude
('cpu 95-100%', 95.0)
>>> incidents_frame([inc]).select("kind", "entity").row(0)
('cpu_saturation', 'web-eu-west-1-001')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import ConfigError

__all__ = ["KINDS", "Incident", "incidents_frame", "kinds_for", "schedule"]

#: Incident kinds: for each, the schemas it applies to and what its entity is there.
KINDS: dict[str, dict[str, str]] = {
    "cpu_saturation": {"server_metrics": "host"},
    "memory_leak": {"server_metrics": "host"},
    "latency_degradation": {"server_metrics": "service"},
    "error_burst": {"server_metrics": "service", "user_events": "country"},
    "host_silent": {"server_metrics": "host"},
    "traffic_drop": {"user_events": "country"},
    "port_scan": {"network_flows": "src_ip"},
    "traffic_spike": {"network_flows": "dst_ip"},
}

# Magnitude of each kind: its default and the range the scheduler draws from.
_MAGNITUDE: dict[str, tuple[float, float, float]] = {
    "cpu_saturation": (95.0, 95.0, 95.0),  # lowest CPU % while saturated
    "memory_leak": (99.0, 97.0, 99.5),  # memory % reached at the end
    "latency_degradation": (7.5, 5.0, 10.0),  # latency factor
    "error_burst": (0.45, 0.3, 0.6),  # share of events turned into errors
    "host_silent": (0.0, 0.0, 0.0),
    "traffic_drop": (0.9, 0.8, 0.95),  # share of events dropped
    "port_scan": (0.05, 0.02, 0.5),  # share of flows that are probes
    "traffic_spike": (20.0, 20.0, 20.0),  # bytes factor
}

_DETAIL: dict[str, Callable[[float], str]] = {
    "cpu_saturation": lambda m: f"cpu {m:g}-100%",
    "memory_leak": lambda m: f"mem ramps up to {m:.1f}%",
    "latency_degradation": lambda m: f"latency x{m:.1f}",
    "error_burst": lambda m: f"{m:.0%} of events are errors",
    "host_silent": lambda m: "no events",
    "traffic_drop": lambda m: f"traffic -{m:.0%}",
    "port_scan": lambda m: f"{m:.0%} of flows probe random ports",
    "traffic_spike": lambda m: f"bytes x{m:g}",
}

_LABEL_SCHEMA = pl.Schema(
    {
        "incident_id": pl.String(),
        "kind": pl.String(),
        "schema": pl.String(),
        "entity": pl.String(),
        "start": pl.Datetime("ms", "UTC"),
        "end": pl.Datetime("ms", "UTC"),
        "detail": pl.String(),
        "magnitude": pl.Float64(),
    }
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Incident:
    """One labelled anomaly.

    Parameters
    ----------
    incident_id
        Unique id.
    kind
        One of :data:`KINDS`, e.g. ``"cpu_saturation"``.
    schema
        The event schema it shows up in.
    entity
        Who is affected: a host, a service, a country or an IP address (see :data:`KINDS`).
    start, end
        The window, aware datetimes (stored in UTC), ``start < end``.
    detail
        Human-readable description; derived from ``kind`` and ``magnitude`` if empty.
    magnitude
        How strong: a factor, a share or a level depending on ``kind``; a default if None.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> Incident("i", "traffic_drop", "server_metrics", "US",
    ...          datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: incident 'i': kind 'traffic_drop' applies to user_events, not 'server_metrics'
    """

    incident_id: str
    kind: str
    schema: str
    entity: str
    start: datetime
    end: datetime
    detail: str = ""
    magnitude: float | None = None

    def __post_init__(self) -> None:
        who = f"incident {self.incident_id!r}"
        if self.kind not in KINDS:
            raise ConfigError(f"{who}: kind must be one of {sorted(KINDS)}, not {self.kind!r}")
        if self.schema not in KINDS[self.kind]:
            known = ", ".join(KINDS[self.kind])
            raise ConfigError(f"{who}: kind {self.kind!r} applies to {known}, not {self.schema!r}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ConfigError(f"{who}: {name} must be an aware datetime, not {value!r}")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.start >= self.end:
            raise ConfigError(f"{who}: start must be before end, not {self.start} >= {self.end}")
        magnitude = _MAGNITUDE[self.kind][0] if self.magnitude is None else float(self.magnitude)
        object.__setattr__(self, "magnitude", magnitude)
        if not self.detail:
            object.__setattr__(self, "detail", _DETAIL[self.kind](magnitude))

    @property
    def entity_kind(self) -> str:
        """What ``entity`` names: ``host``, ``service``, ``country``, ``src_ip`` or ``dst_ip``."""
        return KINDS[self.kind][self.schema]

    @property
    def start_ms(self) -> int:
        """``start`` in epoch milliseconds."""
        return (self.start - _EPOCH) // timedelta(milliseconds=1)

    @property
    def end_ms(self) -> int:
        """``end`` in epoch milliseconds."""
        return (self.end - _EPOCH) // timedelta(milliseconds=1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with ISO-8601 timestamps.

        Examples
        --------
        >>> from datetime import UTC, datetime
        >>> Incident("i", "host_silent", "server_metrics", "h", datetime(2024, 1, 1, tzinfo=UTC),
        ...          datetime(2024, 1, 1, 0, 5, tzinfo=UTC)).to_dict()["end"]
        '2024-01-01T00:05:00+00:00'
        """
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        return out


def kinds_for(schema: str) -> tuple[str, ...]:
    """The incident kinds that apply to ``schema``.

    Examples
    --------
    >>> kinds_for("network_flows")
    ('port_scan', 'traffic_spike')
    """
    return tuple(kind for kind, schemas in KINDS.items() if schema in schemas)


def incidents_frame(incidents: Sequence[Incident]) -> pl.DataFrame:
    """The incidents as a frame (one row each, ``start``/``end`` as UTC datetimes).

    Examples
    --------
    >>> incidents_frame([]).columns[:4]
    ['incident_id', 'kind', 'schema', 'entity']
    """
    return pl.DataFrame([asdict(inc) for inc in incidents], schema=_LABEL_SCHEMA)


def schedule(
    schema: str,
    entities: Callable[[str], Sequence[str]],
    *,
    start: datetime,
    span: timedelta,
    rate: float,
    seed: int,
    cycle: int = 0,
) -> list[Incident]:
    """A handful of incidents spread over ``[start + cycle*span, start + (cycle+1)*span)``.

    Each applicable kind occurs at least once (at least four incidents in all), in its
    own slice of the range so they do not overlap; entities and magnitudes are drawn
    from ``seed`` and ``cycle``.

    Parameters
    ----------
    schema
        The schema the incidents show up in.
    entities
        Candidates per entity kind, e.g. :meth:`Fleet.entities`.
    start, span
        The range is the ``cycle``-th span after ``start``.
    rate
        Events per second (port scans are sized to show hundreds of ports).
    seed, cycle
        Determine the draws.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> incs = schedule("user_events", lambda kind: ["US", "DE"], seed=0, rate=100.0,
    ...                 start=datetime(2024, 1, 1, tzinfo=UTC), span=timedelta(hours=1))
    >>> sorted(inc.kind for inc in incs)
    ['error_burst', 'error_burst', 'traffic_drop', 'traffic_drop']
    """
    rng = np.random.default_rng([seed, cycle, 0x1C1D])
    kinds = list(kinds_for(schema))
    kinds = (kinds * 4)[: max(4, len(kinds))]
    rng.shuffle(kinds)
    piece = span / len(kinds)
    origin = start + cycle * span
    out = []
    for i, kind in enumerate(kinds):
        begin = _to_ms(origin + piece * (i + rng.uniform(0.1, 0.3)))
        end = max(_to_ms(begin + piece * rng.uniform(0.35, 0.6)), begin + timedelta(milliseconds=1))
        _, low, high = _MAGNITUDE[kind]
        magnitude = round(float(rng.uniform(low, high)), 3)
        if kind == "port_scan":  # enough probes for hundreds of distinct ports
            seconds = (end - begin).total_seconds()
            magnitude = round(float(np.clip(800 / (rate * seconds), low, high)), 3)
        candidates = entities(KINDS[kind][schema])
        entity = candidates[int(rng.integers(len(candidates)))]
        out.append(Incident(f"inc-{cycle:03d}-{i}", kind, schema, entity, begin, end, magnitude=magnitude))
    return out


def _to_ms(moment: datetime) -> datetime:
    """``moment`` truncated to whole milliseconds."""
    return moment - timedelta(microseconds=moment.microsecond % 1000)
