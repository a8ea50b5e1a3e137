"""Why records are rejected, counted: ``workbench schema check`` and the dead-letter share.

Dead letters carry a stable ``reason_code`` and the ``field`` concerned, so grouping
by both gives a handful of rows, each with a count and one example.

Examples
--------
>>> import polars as pl
>>> from workbench.operators.decode import dead_letters
>>> dead = dead_letters("validate", ["field 'mem' = 14917.1 is outside [0, 100]",
...     "field 'mem' = 9000.0 is outside [0, 100]", "missing field 'ts'"], [b"{}"] * 3)
>>> top_reasons(dead).select("reason_code", "field", "count").rows()
[('out_of_bounds', 'mem', 2), ('missing_field', 'ts', 1)]
>>> print(dead_share_error({"ingested": 4, "dead_lettered": 3}, 0.5, dead))
75.0 % of the records (3 of 4) were dead-lettered, over --max-dead-share 0.5; top reasons:
      2  out_of_bounds  mem  e.g. field 'mem' = 14917.1 is outside [0, 100]
      1  missing_field  ts  e.g. missing field 'ts'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import ConfigError
from workbench.pipeline import Pipeline
from workbench.project.infer import resolve_schema
from workbench.schema import Schema
from workbench.sources.files import FileSource

__all__ = ["check_file", "dead_share_error", "format_reasons", "read_dead_letters", "top_reasons"]


def top_reasons(dead: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    """Dead letters grouped by ``reason_code`` and ``field``: count, one reason and raw record each."""
    if dead.height == 0:
        text = pl.String()
        return pl.DataFrame(
            schema={"reason_code": text, "field": text, "count": pl.Int64, "example": text, "raw": text}
        )
    top = (
        dead.group_by("reason_code", "field", maintain_order=True)
        .agg(pl.len().cast(pl.Int64).alias("count"), pl.col("reason").first().alias("example"), pl.col("raw").first())
        .sort("count", descending=True, maintain_order=True)
        .head(n)
    )
    # a raw record may be invalid UTF-8 (that may be why it is here): shown with replacements
    raws = [None if r is None else r.decode("utf-8", "replace") for r in top["raw"].to_list()]
    return top.with_columns(pl.Series("raw", raws, dtype=pl.String))


def format_reasons(reasons: pl.DataFrame, *, raw: bool = False) -> str:
    """One line per reason: count, code, field, an example (and its raw record)."""
    lines = []
    for code, field, count, example, record in reasons.iter_rows():
        lines.append(f"  {count:>5,}  {code}  {field or '-'}  e.g. {example}")
        if raw and record is not None:
            lines.append(f"         {record[:200]}")
    return "\n".join(lines)


def read_dead_letters(out: str | Path) -> pl.DataFrame:
    """The dead letters a replay wrote under ``out`` (empty frame when none)."""
    files = sorted((Path(out) / "dead_letter").rglob("*.parquet"))
    if not files:
        return pl.DataFrame()
    return pl.read_parquet(files, hive_partitioning=False, missing_columns="insert")


def dead_share_error(summary: dict[str, Any], max_share: float, dead: pl.DataFrame) -> str | None:
    """The message when more than ``max_share`` of the records were dead-lettered, else None."""
    if not 0 <= max_share <= 1:
        raise ConfigError(f"--max-dead-share must be within [0, 1], not {max_share}")
    ingested, rejected = summary.get("ingested", 0), summary.get("dead_lettered", 0)
    if not ingested or rejected / ingested <= max_share:
        return None
    head = (
        f"{rejected / ingested:.1%} of the records ({rejected:,} of {ingested:,}) were dead-lettered, "
        f"over --max-dead-share {max_share}; top reasons:"
    ).replace("%", " %", 1)
    return head + "\n" + format_reasons(top_reasons(dead, 5)) if "reason_code" in dead.columns else head


def check_file(path: str | Path, schema: str | Path | Schema, *, max_rows: int = 100_000) -> dict[str, Any]:
    """Decode and validate every record of ``path`` against ``schema`` (no windows, no output).

    Returns
    -------
    dict
        ``schema`` (its name), ``records``, ``valid``, ``rejected`` and ``reasons``
        (:func:`top_reasons` as a frame).
    """
    s = resolve_schema(schema, path)
    pipe = Pipeline(FileSource(path, max_rows=max_rows), name=f"schema-check:{Path(path).resolve()}")
    pipe.output("valid", pipe.head.decode(s).validate(s))
    dead = pipe.collect("dead_letter")
    try:
        pipe.run()
    finally:
        pipe.close()
    counts = pipe.counts()
    frame = pl.concat(dead) if dead else pl.DataFrame()
    return {
        "schema": s.name,
        "records": counts["ingested"],
        "valid": counts["ingested"] - counts["dead_lettered"],
        "rejected": counts["dead_lettered"],
        "reasons": top_reasons(frame, 20) if frame.height else top_reasons(pl.DataFrame()),
        "extra_fields": [f.name for f in s.fields if f.doc.startswith("Undeclared numeric field")],
    }
