"""Validation of decoded records, vectorised: every rule is a polars expression.

A record that breaks a rule goes to the dead-letter output with the first rule it
breaks, written so a person can act on it: which field, which rule, which value.

Examples
--------
>>> import polars as pl
>>> from workbench.schema import SERVER_METRICS
>>> wire = pl.DataFrame({"event_id": ["a", "b"], "ts": ["1700000000000", "2024-01-01T00:00:00"],
...     "host": ["h1", "h1"], "cpu": [250.0, 1.0], "mem": [1.0, 1.0], "latency_ms": [1.0, 1.0],
...     "status": [200, 200], "service": [None, None], "region": [None, None]})
>>> valid, dead = validate_frame(wire, SERVER_METRICS)
>>> valid.height
0
>>> for reason in dead["reason"]:
...     print(reason)
field 'cpu' = 250.0 is outside [0, 100]
field 'ts' = '2024-01-01T00:00:00' has no UTC offset; naive timestamps are ambiguous
"""

from __future__ import annotations

import polars as pl

from workbench.operators.decode import RawLines, dead_letters
from workbench.schema import TS_DTYPE, Field, Schema

__all__ = ["TS_MAX_MS", "TS_MIN_MS", "validate_frame"]

#: Accepted event-time range, epoch milliseconds: 2000-01-01 to 2100-01-01 (UTC).
TS_MIN_MS = 946_684_800_000
TS_MAX_MS = 4_102_444_800_000

_ISO_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_HAS_OFFSET = r"(?:[Zz]|[+-]\d{2}:?\d{2})$"
_LOOKS_ISO = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-inf"
    return str(int(value)) if float(value).is_integer() else str(value)


def _rules(f: Field) -> list[pl.Expr]:
    """Expressions giving the reason ``f`` is broken, or null."""
    col = pl.col(f.name)
    rules: list[pl.Expr] = []
    if f.required:
        rules.append(pl.when(col.is_null()).then(pl.lit(f"missing field '{f.name}'")))
    if f.kind == "str":
        length = col.cast(pl.String).str.len_chars()
        rules.append(
            pl.when(length > f.max_length).then(
                pl.format(f"field '{f.name}' is {{}} characters long; limit {f.max_length}", length)
            )
        )
    if f.kind == "float":
        rules.append(pl.when(col.is_nan()).then(pl.lit(f"field '{f.name}' is NaN")))
        rules.append(pl.when(col.is_infinite()).then(pl.lit(f"field '{f.name}' is infinite")))
    if f.kind in ("float", "int") and (f.min is not None or f.max is not None):
        low = col < f.min if f.min is not None else pl.lit(False)
        high = col > f.max if f.max is not None else pl.lit(False)
        bounds = f"[{_fmt(f.min)}, {_fmt(f.max) if f.max is not None else 'inf'}]"
        rules.append(pl.when(low | high).then(pl.format(f"field '{f.name}' = {{}} is outside {bounds}", col)))
    return rules


def _parse_ts(frame: pl.DataFrame, name: str) -> tuple[pl.Series, pl.Series]:
    """Parse the text time column: epoch ms digits or ISO-8601 with an offset.

    Returns the parsed datetimes and, per row, the reason it failed (or null).
    """
    text = frame[name]
    as_int = text.cast(pl.Int64, strict=False)
    parsed = pl.from_epoch(as_int, time_unit="ms").dt.replace_time_zone("UTC").cast(TS_DTYPE)
    todo = as_int.is_null() & text.is_not_null()
    if todo.any():
        iso_text = text.filter(todo)
        iso = (
            pl.select(
                pl.coalesce(
                    [
                        pl.lit(iso_text).str.to_datetime(fmt, time_unit="ms", time_zone="UTC", strict=False)
                        for fmt in _ISO_FORMATS
                    ]
                )
            )
            .to_series()
            .cast(TS_DTYPE)
        )
        parsed = parsed.scatter(todo.arg_true(), iso)
    checks = pl.DataFrame({"t": text, "p": parsed, "i": as_int}).select(
        pl.when(pl.col("t").is_null())
        .then(None)
        .when(pl.col("p").is_null() & pl.col("t").str.contains(_LOOKS_ISO) & ~pl.col("t").str.contains(_HAS_OFFSET))
        .then(pl.format(f"field '{name}' = '{{}}' has no UTC offset; naive timestamps are ambiguous", "t"))
        .when(pl.col("p").is_null())
        .then(pl.format(f"field '{name}' = '{{}}' is neither epoch milliseconds nor ISO-8601", "t"))
        .when(pl.col("i").is_not_null() & (pl.col("i") < TS_MIN_MS) & (pl.col("i") > TS_MIN_MS // 1000))
        .then(pl.format(f"field '{name}' = {{}} looks like epoch seconds; expected milliseconds", "i"))
        .when((pl.col("p").dt.epoch("ms") < TS_MIN_MS) | (pl.col("p").dt.epoch("ms") >= TS_MAX_MS))
        .then(pl.format(f"field '{name}' = '{{}}' is outside the years 2000-2099", "t"))
        .alias("reason")
    )
    return parsed.rename(name), checks["reason"]


def validate_frame(
    frame: pl.DataFrame,
    schema: Schema,
    raw: RawLines | None = None,
    *,
    node: str = "validate",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a decoded (wire-typed) frame into valid rows and dead letters.

    Parameters
    ----------
    frame
        Output of :func:`~workbench.operators.decode.decode_ndjson` or
        :func:`~workbench.operators.decode.decode_frame`.
    schema
        The event schema.
    raw
        The batch's raw lines; a rejected row's dead letter carries its exact bytes.
        Without it the row is re-encoded as JSON.
    node
        Node name written into dead letters.

    Returns
    -------
    tuple of DataFrame
        Valid rows in the schema's output types, and dead letters.
    """
    ts, ts_reason = _parse_ts(frame, schema.time)
    rules: list[pl.Expr] = []
    for f in schema.fields:
        if f.kind == "ts":
            if f.required:
                rules.append(pl.when(pl.col(f.name).is_null()).then(pl.lit(f"missing field '{f.name}'")))
            rules.append(pl.col("__ts_reason"))
        else:
            rules.extend(_rules(f))
    cols = [pl.col(f.name).cast(pl.String) if f.kind == "str" else pl.col(f.name) for f in schema.fields]
    checked = frame.with_columns(__ts_reason=ts_reason).select(
        *cols[: schema.names.index(schema.time)],
        ts.cast(TS_DTYPE),
        *cols[schema.names.index(schema.time) + 1 :],
        pl.col("__line") if "__line" in frame.columns else pl.int_range(frame.height).alias("__line"),
        __reason=pl.coalesce(rules),
    )
    reason = checked["__reason"]
    if reason.null_count() == checked.height:
        return checked.drop("__line", "__reason"), dead_letters(node, [], [])
    bad = checked.filter(reason.is_not_null())
    valid = checked.filter(reason.is_null()).drop("__line", "__reason")
    if raw is not None:
        raws = raw.lines(bad["__line"].to_numpy())
    else:
        raws = [
            line.encode()
            for line in frame[bad["__line"].cast(pl.Int64).to_list()]
            .drop("__line", strict=False)
            .with_columns(pl.col(pl.Categorical).cast(pl.String))
            .write_ndjson()
            .splitlines()
        ]
    return valid, dead_letters(node, bad["__reason"].to_list(), raws)
