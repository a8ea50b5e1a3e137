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
>>> sorted(dead["reason_code"])
['naive_time', 'out_of_bounds']
"""

from __future__ import annotations

import polars as pl

from workbench.operators.decode import RawLines, dead_letters, rows_as_json
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


def _rules(f: Field) -> list[tuple[pl.Expr, pl.Expr]]:
    """``(broken, message)`` pairs for field ``f`` (a missing value is checked apart).

    ``broken`` is a cheap boolean evaluated on every row; ``message`` is only
    evaluated on the rows that break some rule.
    """
    col = pl.col(f.name)
    rules: list[tuple[pl.Expr, pl.Expr]] = []
    if f.kind == "str":
        length = col.cast(pl.String).str.len_chars()
        rules.append(
            (
                length > f.max_length,
                pl.format(f"field '{f.name}' is {{}} characters long; limit {f.max_length}", length),
            )
        )
    if f.kind == "float":
        rules.append((col.is_nan(), pl.lit(f"field '{f.name}' is NaN")))
        rules.append((col.is_infinite(), pl.lit(f"field '{f.name}' is infinite")))
    if f.kind in ("float", "int") and (f.min is not None or f.max is not None):
        low = col < f.min if f.min is not None else pl.lit(False)
        high = col > f.max if f.max is not None else pl.lit(False)
        bounds = f"[{_fmt(f.min)}, {_fmt(f.max) if f.max is not None else 'inf'}]"
        rules.append((low | high, pl.format(f"field '{f.name}' = {{}} is outside {bounds}", col)))
    return rules


_EPOCH_MS = {"epoch_s": 1000.0, "epoch_ms": 1.0, "epoch_us": 1e-3, "epoch_ns": 1e-6}
_EPOCH_NAMES = {"epoch_s": "seconds", "epoch_ms": "milliseconds", "epoch_us": "microseconds", "epoch_ns": "nanoseconds"}
_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")


def _parse_ts(frame: pl.DataFrame, schema: Schema) -> tuple[pl.Series, pl.Series]:
    """Parse the text time column as the schema's ``time_format`` says.

    Returns the parsed datetimes and, per row, whether the value is broken.
    """
    name = schema.time
    text = frame[name]
    fmt = schema.time_format
    if fmt in _EPOCH_MS:
        parsed = _parse_epoch(text, _EPOCH_MS[fmt])
    elif fmt == "iso":
        parsed = _parse_iso(text, schema.naive)
    else:  # auto: epoch milliseconds (digits), else ISO-8601
        as_int = text.cast(pl.Int64, strict=False)
        parsed = pl.from_epoch(as_int, time_unit="ms").dt.replace_time_zone("UTC").cast(TS_DTYPE)
        todo = as_int.is_null() & text.is_not_null()
        if todo.any():
            iso = _parse_iso(text.filter(todo), schema.naive)
            parsed = parsed.scatter(todo.arg_true(), iso)
    epoch = parsed.dt.epoch("ms")
    broken = (parsed.is_null() & text.is_not_null()) | (epoch < TS_MIN_MS) | (epoch >= TS_MAX_MS)
    return parsed.rename(name), broken.fill_null(False)


def _parse_epoch(text: pl.Series, to_ms: float) -> pl.Series:
    """Epoch numbers in some unit: integers exactly, decimals as floats."""
    as_int = text.cast(pl.Int64, strict=False)
    if to_ms >= 1:
        ms = as_int * int(to_ms)
    else:
        ms = as_int // round(1 / to_ms)
    left = as_int.is_null() & text.is_not_null()
    if left.any():
        as_float = text.filter(left).cast(pl.Float64, strict=False)
        ok = as_float.is_finite() & (as_float.abs() < 1e19)
        floats = pl.when(ok).then(as_float * to_ms).otherwise(None).floor().cast(pl.Int64)
        ms = ms.scatter(left.arg_true(), pl.select(floats).to_series())
    return pl.from_epoch(ms, time_unit="ms").dt.replace_time_zone("UTC").cast(TS_DTYPE)


def _parse_iso(text: pl.Series, naive: str = "reject") -> pl.Series:
    """ISO-8601 with an offset, each format tried only on what the ones before left.

    Times without an offset are read in the zone ``naive`` unless it is ``"reject"``.
    """
    parsed = text.str.to_datetime(_ISO_FORMATS[0], time_unit="ms", time_zone="UTC", strict=False).cast(TS_DTYPE)
    for fmt in _ISO_FORMATS[1:]:
        left = parsed.is_null() & text.is_not_null()
        if not left.any():
            break
        more = text.filter(left).str.to_datetime(fmt, time_unit="ms", time_zone="UTC", strict=False)
        parsed = parsed.scatter(left.arg_true(), more.cast(TS_DTYPE))
    if naive != "reject":
        for fmt in _NAIVE_FORMATS:
            left = parsed.is_null() & text.is_not_null()
            if not left.any():
                break
            local = text.filter(left).str.to_datetime(fmt, time_unit="ms", strict=False)
            aware = local.dt.replace_time_zone(naive, ambiguous="earliest", non_existent="null")
            parsed = parsed.scatter(left.arg_true(), aware.dt.convert_time_zone("UTC").cast(TS_DTYPE))
    return parsed


def _ts_reason(schema: Schema) -> pl.Expr:
    """Why the text time column failed (evaluated on failing rows only)."""
    name, fmt = schema.time, schema.time_format
    t = pl.col(name)
    if fmt in _EPOCH_NAMES:
        unit = _EPOCH_NAMES[fmt]
        return (
            pl.when(t.cast(pl.Float64, strict=False).is_not_null())
            .then(pl.format(f"field '{name}' = {{}} is outside the years 2000-2099 as epoch {unit}", t))
            .otherwise(pl.format(f"field '{name}' = '{{}}' is not a number of epoch {unit}", t))
        )
    i = t.cast(pl.Int64, strict=False) if fmt == "auto" else pl.lit(None, pl.Int64)
    naive = (
        f"field '{name}' = '{{}}' has no UTC offset; naive timestamps are ambiguous"
        if schema.naive == "reject"
        else f"field '{name}' = '{{}}' is not a valid time in {schema.naive}, or is outside the years 2000-2099"
    )
    expected = "epoch milliseconds nor ISO-8601" if fmt == "auto" else "ISO-8601"
    return (
        pl.when(i.is_not_null() & (i < TS_MIN_MS) & (i > TS_MIN_MS // 1000))
        .then(pl.format(f"field '{name}' = {{}} looks like epoch seconds; expected milliseconds", i))
        .when(i.is_not_null())
        .then(pl.format(f"field '{name}' = {{}} is outside the years 2000-2099", i))
        .when(t.str.contains(_LOOKS_ISO) & ~t.str.contains(_HAS_OFFSET))
        .then(pl.format(naive, t))
        .when(t.str.contains(_LOOKS_ISO))
        .then(pl.format(f"field '{name}' = '{{}}' is not a valid time, or is outside the years 2000-2099", t))
        .otherwise(pl.format(f"field '{name}' = '{{}}' is neither {expected}", t))
    )


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
    ts, ts_broken = _parse_ts(frame, schema)
    rules: list[tuple[pl.Expr, pl.Expr]] = []
    for f in schema.fields:
        rules.extend([(pl.col("__ts_broken"), _ts_reason(schema))] if f.kind == "ts" else _rules(f))
    # a record's reason is the first rule it breaks, a wrong value before a missing field:
    # when a whole file misses a field (a naming mismatch), its value problems still show
    rules.extend((pl.col(f.name).is_null(), pl.lit(f"missing field '{f.name}'")) for f in schema.fields if f.required)
    marked = frame.with_columns(__ts_broken=ts_broken)
    if "__line" not in marked.columns:
        marked = marked.with_columns(pl.int_range(frame.height, dtype=pl.UInt32).alias("__line"))
    broken = marked.select(pl.any_horizontal([b.fill_null(False) for b, _ in rules])).to_series()
    cols = [pl.col(f.name).cast(pl.String) if f.kind == "str" else pl.col(f.name) for f in schema.fields]
    at = schema.names.index(schema.time)
    out_cols = [*cols[:at], pl.col("__ts").cast(TS_DTYPE).alias(schema.time), *cols[at + 1 :]]
    if not broken.any():
        return marked.with_columns(__ts=ts).select(out_cols), dead_letters(node, [], [])
    # select, then filter: the copy holds the output columns only (not the text times, nor __line)
    good = marked.with_columns(__ts=ts).select(out_cols).filter(~broken)
    # rechunk: formatting strings of a filtered read_ndjson frame can panic in polars 2.1
    # ("assertion failed: i < self.len()" in binview); a compacted copy of these few rows cannot
    bad = (
        marked.filter(broken)
        .rechunk()
        .select("__line", pl.coalesce([pl.when(b).then(m) for b, m in rules]).alias("__reason"))
    )
    if raw is not None:
        raws = raw.lines(bad["__line"].to_numpy())
    else:
        raws = rows_as_json(frame[bad["__line"].cast(pl.Int64).to_list()])
    return good, dead_letters(node, bad["__reason"].to_list(), raws)
