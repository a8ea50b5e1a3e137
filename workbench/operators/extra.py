"""Fields a record carries that its schema does not declare (a schema's ``extra`` rule).

``keep-numeric`` is resolved before a run, from the input's first records
(:func:`numeric_extras`): each undeclared numeric field becomes an optional float
field, so windows aggregate it like any other metric. ``reject`` dead-letters each
record with an undeclared field (:func:`unknown_fields`); ``drop`` ignores them.

Examples
--------
>>> import polars as pl
>>> from workbench.schema import SERVER_METRICS
>>> sample = pl.DataFrame({"cpu": [1.0], "disk_io": [3.5], "note": ["x"]})
>>> [(f.name, f.kind, f.required) for f in numeric_extras(sample, SERVER_METRICS)]
[('disk_io', 'float', False)]
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from workbench.operators.decode import Decoded, dead_letters, rows_as_json
from workbench.schema import Field, Schema
from workbench.sources.base import RawBatch

__all__ = ["numeric_extras", "unknown_fields"]

# a JSON object key followed by its colon; schema records are flat, so these are the fields
_KEY = r'"((?:[^"\\]|\\.)*)"\s*:'


def numeric_extras(sample: pl.DataFrame, schema: Schema) -> list[Field]:
    """Undeclared numeric columns of ``sample`` as optional float fields of ``schema``."""
    known = {f.wire_name for f in schema.fields} | {f.name for f in schema.fields}
    return [
        Field(name, "float", required=False, doc="Undeclared numeric field, kept as a metric (extra: keep-numeric).")
        for name, dtype in sample.schema.items()
        if name not in known and dtype.is_numeric() and not name.startswith("__")
    ]


def unknown_fields(out: Decoded, batch: RawBatch, schema: Schema, *, node: str) -> Decoded:
    """Move rows with a field ``schema`` does not declare from ``out.frame`` to its dead letters."""
    known = {f.name for f in schema.fields}
    if batch.frame is not None:
        extra = [c for c in batch.frame.columns if c not in known]
        if not extra or out.frame.height == 0:
            return out
        lines = out.frame["__line"].to_list()
        reason = f"unknown field '{extra[0]}' (extra: reject); the schema has {sorted(known)}"
        dead = dead_letters(node, [reason] * len(lines), rows_as_json(batch.frame[lines]))
        return dataclasses.replace(out, frame=out.frame.clear(), dead=pl.concat([out.dead, dead]))
    if out.raw is None or out.frame.height == 0:
        return out
    text = out.raw.binary().cast(pl.String, strict=False)
    keys = (
        pl.DataFrame({"__line": np.arange(len(text), dtype=np.uint32), "key": text.str.extract_all(_KEY)})
        .explode("key")
        .with_columns(pl.col("key").str.extract(_KEY))
        .filter(pl.col("key").is_not_null() & ~pl.col("key").is_in(sorted(known)))
        .group_by("__line")
        .agg(pl.col("key").first())
    )
    bad = keys.join(out.frame.select("__line"), on="__line").sort("__line")
    if bad.height == 0:
        return out
    reasons = [f"unknown field '{k}' (extra: reject)" for k in bad["key"]]
    dead = dead_letters(node, reasons, out.raw.lines(bad["__line"].to_numpy()))
    frame = out.frame.filter(~pl.col("__line").is_in(bad["__line"].implode()))
    return dataclasses.replace(out, frame=frame, dead=pl.concat([out.dead, dead]))
