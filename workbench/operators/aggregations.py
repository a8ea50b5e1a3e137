"""Window aggregations as named polars expressions.

Every helper returns a ``pl.Expr`` with an output name, so a window's aggregations
are a list of expressions — the same list the offline oracle uses, and any other
polars aggregation expression can be mixed in.

Quantiles are exact, with linear interpolation (numpy's default).

Examples
--------
>>> import polars as pl
>>> df = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
>>> df.select(count(), mean("x"), quantile("x", 0.95), distinct("x")).row(0)
(4, 2.5, 3.8499999999999996, 4)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from workbench.schema import Schema

__all__ = [
    "NETWORK_FLOWS_AGGS",
    "PROM_SAMPLES_AGGS",
    "SERVER_METRICS_AGGS",
    "USER_EVENTS_AGGS",
    "count",
    "default_aggs",
    "distinct",
    "max",
    "mean",
    "metric_aggs",
    "min",
    "output_names",
    "quantile",
    "share",
    "std",
    "sum",
]


def count(name: str = "count") -> pl.Expr:
    """Number of events in the window."""
    return pl.len().cast(pl.Int64).alias(name)


def sum(column: str, name: str | None = None) -> pl.Expr:  # noqa: A001 - mirrors polars
    """Sum of ``column``."""
    return pl.col(column).sum().alias(name or f"{column}_sum")


def mean(column: str, name: str | None = None) -> pl.Expr:
    """Arithmetic mean of ``column``."""
    return pl.col(column).mean().alias(name or f"{column}_mean")


def min(column: str, name: str | None = None) -> pl.Expr:  # noqa: A001
    """Smallest value of ``column``."""
    return pl.col(column).min().alias(name or f"{column}_min")


def max(column: str, name: str | None = None) -> pl.Expr:  # noqa: A001
    """Largest value of ``column``."""
    return pl.col(column).max().alias(name or f"{column}_max")


def std(column: str, name: str | None = None, *, ddof: int = 1) -> pl.Expr:
    """Standard deviation of ``column`` (sample, ``ddof=1``, by default)."""
    return pl.col(column).std(ddof=ddof).alias(name or f"{column}_std")


def distinct(column: str, name: str | None = None) -> pl.Expr:
    """Number of distinct non-null values of ``column``."""
    return pl.col(column).drop_nulls().n_unique().cast(pl.Int64).alias(name or f"{column}_distinct")


def quantile(column: str, q: float, name: str | None = None) -> pl.Expr:
    """Exact ``q`` quantile of ``column``, linear interpolation.

    Examples
    --------
    >>> quantile("latency_ms", 0.99).meta.output_name()
    'latency_ms_p99'
    """
    if not 0.0 <= q <= 1.0:
        from workbench.errors import ConfigError

        raise ConfigError(f"quantile of {column!r}: q must be within [0, 1], not {q}")
    label = f"p{round(q * 100, 3):g}".replace(".", "_")
    return pl.col(column).quantile(q, interpolation="linear").alias(name or f"{column}_{label}")


def share(predicate: pl.Expr, name: str) -> pl.Expr:
    """Share of events for which ``predicate`` holds, in [0, 1].

    Examples
    --------
    >>> share(pl.col("status") >= 500, "error_rate").meta.output_name()
    'error_rate'
    """
    return predicate.cast(pl.Float64).mean().alias(name)


def output_names(aggs: list[pl.Expr]) -> list[str]:
    """Output names of ``aggs``; raises when one has none or two collide."""
    from workbench.errors import ConfigError

    names = []
    for expr in aggs:
        try:
            names.append(expr.meta.output_name())
        except pl.exceptions.ComputeError:
            raise ConfigError(f"aggregation {expr}: give it a name with .alias(...)") from None
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"aggregations: output names must be unique, repeated: {dupes}")
    return names


#: The standard per-host aggregations of ``server_metrics`` windows.
SERVER_METRICS_AGGS: list[pl.Expr] = [
    count(),
    mean("cpu"),
    max("cpu"),
    mean("mem"),
    max("mem"),
    mean("latency_ms", "latency_mean"),
    quantile("latency_ms", 0.50, "latency_p50"),
    quantile("latency_ms", 0.95, "latency_p95"),
    quantile("latency_ms", 0.99, "latency_p99"),
    share(pl.col("status") >= 500, "error_rate"),
]

#: Per-user aggregations of ``user_events`` windows.
USER_EVENTS_AGGS: list[pl.Expr] = [
    count(),
    distinct("session_id", "sessions"),
    distinct("path", "paths"),
    share(pl.col("kind") == "error", "error_rate"),
    share(pl.col("kind") == "checkout", "checkout_rate"),
    mean("duration_ms", "duration_mean"),
    quantile("duration_ms", 0.95, "duration_p95"),
]

#: Per-source-address aggregations of ``network_flows`` windows.
NETWORK_FLOWS_AGGS: list[pl.Expr] = [
    count("flows"),
    sum("bytes"),
    sum("packets"),
    distinct("dst_ip", "dst_ips"),
    distinct("dst_port", "dst_ports"),
    share(pl.col("action") == "reject", "reject_rate"),
    quantile("bytes", 0.95, "bytes_p95"),
]


#: Scraped Prometheus samples per series: mean rate (counters: CPU seconds/s, bytes/s …), mean
#: and last value (gauges: memory bytes, load …), samples. The views default to the first.
PROM_SAMPLES_AGGS: list[pl.Expr] = [
    mean("rate"),
    mean("value"),
    pl.col("value").last().alias("value_last"),
    count("samples"),
]


def metric_aggs(metrics: list[str]) -> list[pl.Expr]:
    """``count`` plus the mean, max and p95 of every metric: the default for a schema of one's own.

    Examples
    --------
    >>> [e.meta.output_name() for e in metric_aggs(["mem"])]
    ['count', 'mem_mean', 'mem_max', 'mem_p95']
    """
    out = [count()]
    for m in metrics:
        out += [mean(m), max(m), quantile(m, 0.95)]
    return out


def default_aggs(schema: str | Schema) -> list[pl.Expr]:
    """The standard aggregations of a schema's windows.

    A built-in schema has its own set; a schema file (or any other :class:`Schema`
    value) gets :func:`metric_aggs` of its metrics; another name just ``count``.

    Examples
    --------
    >>> [e.meta.output_name() for e in default_aggs("network_flows")][:3]
    ['flows', 'bytes_sum', 'packets_sum']
    """
    if not isinstance(schema, str):
        if schema.path is None and schema.name in _BUILT_IN:
            return _BUILT_IN[schema.name]
        return metric_aggs(schema.metrics)
    return _BUILT_IN.get(schema, [count()])


_BUILT_IN: dict[str, list[pl.Expr]] = {
    "server_metrics": SERVER_METRICS_AGGS,
    "user_events": USER_EVENTS_AGGS,
    "network_flows": NETWORK_FLOWS_AGGS,
    "prom_samples": PROM_SAMPLES_AGGS,
}
