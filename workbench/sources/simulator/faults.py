"""Data-quality faults: what goes wrong between an event and its NDJSON line.

:class:`Faults` holds the rates and plans, vectorised, which event suffers what. Each
event gets exactly one delivery class (:data:`CLEAN`, :data:`OUT_OF_ORDER`, :data:`LATE`
or :data:`MALFORMED`), and clean events may also be delivered a second time (a
duplicate line). Only the few malformed lines are rewritten one by one (:func:`corrupt`).

Examples
--------
>>> import numpy as np
>>> faults = Faults(out_of_order=0.5)
>>> kind, lag_ms = faults.plan(1000, np.random.default_rng(0))
>>> bool(((lag_ms > 0) & (lag_ms < 4000))[kind == OUT_OF_ORDER].all())
True
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from workbench.errors import ConfigError
from workbench.schema import Field, Schema

__all__ = [
    "CLEAN",
    "FAULTS_SCHEMA",
    "LATE",
    "MALFORMED",
    "MALFORMED_CLASSES",
    "OUT_OF_ORDER",
    "Faults",
    "corrupt",
]

CLEAN, OUT_OF_ORDER, LATE, MALFORMED = 0, 1, 2, 3

#: The ways a malformed line is broken, cycled through in this order.
MALFORMED_CLASSES: tuple[str, ...] = (
    "broken_json",  # a truncated line
    "missing_field",  # a required field removed
    "wrong_type",  # a number sent as a JSON string, or a string as a number
    "nan",  # a numeric field written as NaN (as Python's json.dumps does)
    "huge_string",  # a string field of more than 100,000 characters
    "naive_ts",  # an ISO-8601 time without offset
    "invalid_utf8",  # raw bytes \xff\xfe inside a string value
    "out_of_range",  # a number outside the field's bounds, e.g. cpu = 250
)

#: Ground truth, one row per faulty line: its index in the output, the event it carries
#: (null for a broken line), the fault class, the field involved, and for
#: out-of-order and late events how far delivery lags event time.
FAULTS_SCHEMA = pl.Schema(
    {
        "line": pl.Int64(),
        "event_id": pl.String(),
        "fault": pl.String(),
        "field": pl.String(),
        "lag_ms": pl.Int64(),
    }
)

_NO_TIME = -(2**62)  # "nothing seen yet", far below any event time without overflowing
_ISO = "%Y-%m-%dT%H:%M:%S%.3f"
_STAND_IN = "\ue000"  # a private-use character, replaced after encoding


@dataclass(frozen=True)
class Faults:
    """Rates of data-quality faults and of valid-but-varied timestamps.

    Parameters
    ----------
    duplicates
        Share of events delivered twice (the copy follows within ``max_disorder / 2``).
    malformed
        Share of events whose line is broken, cycling over ``malformed_classes``.
    out_of_order
        Share of events delivered after newer ones, by less than ``max_disorder``.
    late
        Share of events delivered ``late_min`` to ``late_max`` seconds behind the newest
        event time, well beyond ``lateness``.
    max_disorder, lateness, late_min, late_max
        Seconds; ``max_disorder <= lateness < late_min <= late_max``.
    iso_timestamps
        Share of valid timestamps written as ISO-8601 strings (``+00:00``, ``Z`` or,
        for a few, ``+02:00``) instead of epoch milliseconds.
    malformed_classes
        Which of :data:`MALFORMED_CLASSES` to produce.

    Examples
    --------
    >>> Faults.none().malformed
    0.0
    >>> Faults(late=-0.1)
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: faults: late must be in [0, 1], not -0.1
    """

    duplicates: float = 0.01
    malformed: float = 0.005
    out_of_order: float = 0.02
    late: float = 0.002
    max_disorder: float = 4.0
    lateness: float = 5.0
    late_min: float = 30.0
    late_max: float = 300.0
    iso_timestamps: float = 0.10
    malformed_classes: tuple[str, ...] = MALFORMED_CLASSES

    def __post_init__(self) -> None:
        for name in ("duplicates", "malformed", "out_of_order", "late", "iso_timestamps"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"faults: {name} must be in [0, 1], not {value}")
        if self.malformed + self.out_of_order + self.late > 1:
            raise ConfigError("faults: malformed + out_of_order + late must be <= 1")
        if not 0.002 <= self.max_disorder <= self.lateness < self.late_min <= self.late_max:
            raise ConfigError(
                "faults: need 0.002 <= max_disorder <= lateness < late_min <= late_max, not "
                f"{self.max_disorder}, {self.lateness}, {self.late_min}, {self.late_max}"
            )
        unknown = set(self.malformed_classes) - set(MALFORMED_CLASSES)
        if unknown or (self.malformed and not self.malformed_classes):
            raise ConfigError(
                f"faults: malformed_classes must be a non-empty subset of {MALFORMED_CLASSES}, "
                f"not {self.malformed_classes}"
            )

    @classmethod
    def none(cls) -> Faults:
        """No faults at all (timestamps still vary in format)."""
        return cls(duplicates=0.0, malformed=0.0, out_of_order=0.0, late=0.0)

    def plan(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Delivery class of ``n`` events and how many ms delivery lags event time."""
        u = rng.random(n)
        edges = np.cumsum([self.malformed, self.out_of_order, self.late])
        drawn = (u >= edges[0]).view(np.int8) + (u >= edges[1]) + (u >= edges[2])
        kind = np.array([MALFORMED, OUT_OF_ORDER, LATE, CLEAN], dtype=np.int8)[drawn]
        lag = np.zeros(n, dtype=np.int64)
        disorder, late = kind == OUT_OF_ORDER, kind == LATE
        lag[disorder] = rng.integers(1, int(self.max_disorder * 1000), int(disorder.sum()))
        lag[late] = rng.integers(int(self.late_min * 1000), int(self.late_max * 1000) + 1, int(late.sum()))
        return kind, lag

    def confirm(self, kind: np.ndarray, ts: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """``keep`` without the disordered events that would not arrive out of order.

        Events are in delivery order. An out-of-order event must be older than the newest
        clean event before it, a late one more than ``lateness`` older. The newest time
        is only known within a chunk, so at its very start a few would-be faults fail
        these tests; they are dropped. (Early in a stream, a late event may predate its
        start: a backlog arriving.)
        """
        normal = keep & (kind == CLEAN)
        newest = np.maximum.accumulate(np.where(normal, ts, _NO_TIME))
        before = np.concatenate(([_NO_TIME], newest[:-1]))
        ok = (kind != OUT_OF_ORDER) | (ts < before)
        ok &= (kind != LATE) | (before - ts > self.lateness * 1000)
        return keep & ok

    def duplicate(
        self, kind: np.ndarray, keep: np.ndarray, rng: np.random.Generator, per_second: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the clean events delivered twice, and after which position each copy is."""
        n = len(kind)
        clean_share = 1 - self.malformed - self.out_of_order - self.late
        chance = min(1.0, self.duplicates / clean_share) if clean_share > 0 else 0.0
        original = np.flatnonzero(keep & (kind == CLEAN) & (rng.random(n) < chance))
        gap = rng.integers(0, int(per_second * self.max_disorder / 2) + 1, len(original))
        return original, np.minimum(original + gap, n - 1)

    def malformed_kinds(self, count: int, rng: np.random.Generator) -> list[str]:
        """Classes for ``count`` malformed lines, cycling from a random start."""
        classes = self.malformed_classes
        first = int(rng.integers(len(classes))) if classes else 0
        return [classes[(first + i) % len(classes)] for i in range(count)]

    def stamp(self, ts: np.ndarray, rng: np.random.Generator) -> pl.Series:
        """The JSON text of each time: epoch ms, or a quoted ISO-8601 string for a share."""
        text = pl.Series("ts", ts).cast(pl.String)
        iso = np.flatnonzero(rng.random(len(ts)) < self.iso_timestamps)
        if len(iso) == 0:
            return text
        style = np.searchsorted([0.45, 0.9], rng.random(len(iso)), side="right")
        shift = np.where(style == 2, 2 * 3_600_000, 0)  # +02:00 shows local time
        moment = pl.Series(ts[iso] + shift).cast(pl.Datetime("ms")).dt.to_string(_ISO)
        suffix = pl.Series(["+00:00", "Z", "+02:00"]).gather(style)
        iso_text = '"' + moment + suffix + '"'
        return text.scatter(iso, iso_text)


def corrupt(line: str, fault: str, schema: Schema, ts: int, rng: random.Random) -> tuple[bytes, str | None]:
    """Break one encoded line (no newline) in the way ``fault`` names.

    Returns the broken line and the field that was broken (None for ``broken_json``).
    ``rng`` is a seeded :class:`random.Random` (its draws are cheap one at a time).

    Examples
    --------
    >>> from workbench.schema import SERVER_METRICS as S
    >>> line = '{"event_id":"e","ts":1,"host":"h","cpu":1.0,"mem":2.0,"latency_ms":3.0,"status":200}'
    >>> corrupt(line, "naive_ts", S, 1_704_067_200_000, random.Random(0))[0][:57]
    b'{"event_id":"e","ts":"2024-01-01T00:00:00.000","host":"h"'
    >>> corrupt(line, "out_of_range", S, 1, random.Random(0))
    (b'{"event_id":"e","ts":1,"host":"h","cpu":1.0,"mem":2.0,"latency_ms":3.0,"status":1497}', 'status')
    """
    if fault == "broken_json":
        return line[: rng.randrange(1, len(line) - 1)].encode(), None
    record = json.loads(line)
    candidates = _targets(schema)[fault]
    field = rng.choice(candidates)
    value = record.get(field.name)
    if fault == "missing_field":
        del record[field.name]
    elif fault == "wrong_type":
        record[field.name] = str(value) if field.kind in ("float", "int") else len(value)
    elif fault == "nan":
        record[field.name] = float("nan")
    elif fault in ("huge_string", "invalid_utf8"):  # spliced in after encoding
        record[field.name] = _STAND_IN
    elif fault == "naive_ts":
        moment = datetime.fromtimestamp(ts / 1000, tz=UTC)
        record[field.name] = moment.isoformat(timespec="milliseconds").removesuffix("+00:00")
    elif fault == "out_of_range":
        wrong = field.max * 2.5 if field.max is not None else (field.min or 0) - rng.randint(1, 1000)
        record[field.name] = int(wrong) if field.kind == "int" else float(wrong)
    data = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    if fault == "huge_string":  # json.dumps would scan all of it
        size = rng.randint(100_001, 101_000)
        text = value or "x"
        data = data.replace(_STAND_IN.encode(), (text * (size // len(text) + 1))[:size].encode())
    elif fault == "invalid_utf8":
        data = data.replace(_STAND_IN.encode(), value.encode() + b"\xff\xfe")
    return data, field.name


@functools.cache
def _targets(schema: Schema) -> dict[str, list[Field]]:
    """The fields each malformed class can break in ``schema``."""
    numbers = [f for f in schema.fields if f.kind in ("float", "int")]
    texts = [f for f in schema.fields if f.kind == "str" and f.name != schema.key]
    return {
        "missing_field": [f for f in schema.fields if f.required and f.name != schema.key],
        "wrong_type": [f for f in numbers + texts if f.required],
        "nan": numbers,
        "huge_string": texts,
        "naive_ts": [schema.field(schema.time)],
        "invalid_utf8": texts,
        "out_of_range": [f for f in numbers if f.min is not None or f.max is not None],
    }
