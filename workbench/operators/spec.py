"""A pipeline's spec as plain values: what a checkpoint records so a resume can be checked.

Resuming into an output whose checkpoint was made with another schema, window,
key, aggregations or lateness would silently mix two pipelines' results, so the
spec is compared first and every difference named.

Examples
--------
>>> from workbench.schema import SERVER_METRICS
>>> from workbench.operators.windows import Tumbling
>>> from workbench.operators import aggregations as agg
>>> a = pipeline_spec(SERVER_METRICS, Tumbling("1m"), ["host"], [agg.count()], "5s", 65)
>>> b = pipeline_spec(SERVER_METRICS, Tumbling("5m"), ["host"], [agg.count()], "5s", 65)
>>> spec_differences(a, b)
"window: Tumbling(size='1m', offset=0) then, Tumbling(size='5m', offset=0) now"
>>> check_by(SERVER_METRICS, "hots")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: --by 'hots': not a field of schema 'server_metrics'; fields: event_id, ts, host, cpu, ...
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl

from workbench.errors import ConfigError
from workbench.operators.windows import WindowSpec
from workbench.schema import Schema

__all__ = ["check_by", "pipeline_spec", "spec_differences"]


def check_by(schema: Schema, by: str | list[str] | None, also: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The window key as a list (default: the schema's entity); every field must exist.

    ``also`` are columns joined on later (an enrichment table's).
    """
    keys = schema.by if by is None else [by] if isinstance(by, str) else list(by)
    known = [*schema.names, *(c for c in also if c not in schema.names)]
    for key in keys:
        if key not in known:
            raise ConfigError(f"--by {key!r}: not a field of schema {schema.name!r}; fields: {', '.join(known)}")
    return keys


def pipeline_spec(
    schema: Schema,
    window: WindowSpec,
    by: list[str],
    aggs: list[pl.Expr],
    lateness: str | float | timedelta,
    dedupe_ttl: str | float | timedelta,
) -> dict[str, Any]:
    """The values that decide a pipeline's output (plain, comparable, picklable)."""
    return {
        "schema": schema.describe(),
        "window": repr(window),
        "by": list(by),
        "aggs": [str(a) for a in aggs],
        "lateness": str(lateness),
        "dedupe_ttl": str(dedupe_ttl),
    }


def spec_differences(then: dict[str, Any] | None, now: dict[str, Any] | None) -> str:
    """What differs between two specs, one ``key: old then, new now`` per difference ('' when equal).

    A checkpoint without a spec (older versions, hand-built graphs) is not compared.
    """
    if then is None or now is None:
        return ""
    parts = []
    for key in sorted(set(then) | set(now)):
        old, new = then.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            inner = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            was, now_ = [old.get(k) for k in inner], [new.get(k) for k in inner]
            parts.append(f"{key} {', '.join(inner)}: {_short(was)} then, {_short(now_)} now")
        else:
            parts.append(f"{key}: {_short(old)} then, {_short(new)} now")
    return "; ".join(parts)


def _short(value: Any, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
