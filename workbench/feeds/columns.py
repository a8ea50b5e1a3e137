"""What a window column means: its label and unit, from the schema and the aggregation that made it.

A window column is an aggregation of a schema field (``cpu_mean`` is the mean of
``cpu``, whose unit the schema declares), a count of events, a count of distinct
values, or the share of events for which a predicate holds. Views label axes,
colour bars and table headers from this, never from a guess on the column's name.

Scraped Prometheus samples (``prom_samples``) carry many metrics in one column; their
unit comes from the metric family's name, by Prometheus' naming conventions
(``_bytes``, ``_seconds``, ``_total`` for counters, shown as per-second rates).

Examples
--------
>>> from workbench.schema import SERVER_METRICS
>>> from workbench.operators.aggregations import SERVER_METRICS_AGGS
>>> cols = describe_columns(SERVER_METRICS, SERVER_METRICS_AGGS)
>>> cols["cpu_mean"].unit, cols["cpu_mean"].label
('%', 'mean of cpu')
>>> cols["latency_p99"].unit, cols["error_rate"].unit, cols["count"].unit
('ms', 'ratio', 'events')
>>> family_of('node_cpu_seconds_total{cpu="0",mode="idle"}')
'node_cpu_seconds_total'
>>> prom_unit("node_cpu_seconds_total"), prom_unit("node_network_receive_bytes_total"), prom_unit("node_load1")
('s/s', 'B/s', '')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from workbench.schema import Schema

__all__ = ["Column", "describe_columns", "family_of", "is_counter", "prom_unit"]

_COUNTER = re.compile(r"(_total|_count|_sum|_bucket)$")
_QUANTILE = re.compile(r"quantile\(\[dyn float: ([0-9.]+)\]")
_BASE_UNITS = (("_bytes", "B"), ("_seconds", "s"), ("_celsius", "°C"), ("_volts", "V"), ("_ratio", "ratio"))


@dataclass(frozen=True)
class Column:
    """A window column: ``name``, what it is (``label``), its ``unit`` ('' for none) and the field's ``doc``."""

    name: str
    label: str
    unit: str = ""
    doc: str = ""

    def title(self) -> str:
        """``name [unit]`` (just the name without a unit)."""
        return f"{self.name} [{self.unit}]" if self.unit else self.name


def _how(expr: pl.Expr) -> str:
    text = str(expr)
    if "n_unique" in text:
        return "distinct"
    if ".strict_cast(Float64).mean()" in text and text.startswith("["):
        return "share"
    q = _QUANTILE.search(text)
    if q:
        return f"p{round(float(q.group(1)) * 100, 3):g}"
    for how in ("mean", "max", "min", "sum", "std", "last", "first", "median"):
        if f".{how}()" in text:
            return how
    return "value"


def describe_columns(schema: Schema | None, aggs: list[pl.Expr]) -> dict[str, Column]:
    """Label and unit of every aggregation's output column (see the module's examples)."""
    fields = {f.name: f for f in schema.fields} if schema is not None else {}
    out: dict[str, Column] = {}
    for expr in aggs:
        try:
            name = expr.meta.output_name()
        except pl.exceptions.ComputeError:
            continue
        roots = expr.meta.root_names()
        if not roots:
            out[name] = Column(name, "events in the window", "events")
            continue
        how, field = _how(expr), fields.get(roots[0])
        if how == "share":
            out[name] = Column(name, f"share of events ({name.replace('_', ' ')})", "ratio")
        elif how == "distinct":
            out[name] = Column(name, f"distinct {roots[0]} values", "distinct", field.doc if field else "")
        else:
            unit = field.unit if field is not None else ""
            if how == "std" and unit == "%":
                unit = "pp"
            out[name] = Column(name, f"{how} of {roots[0]}", unit, field.doc if field else "")
    return out


def family_of(series: str) -> str:
    """The metric name of a Prometheus series ``name{labels}``."""
    return series.split("{", 1)[0]


def is_counter(family: str) -> bool:
    """Whether a metric family is a counter by its name (shown as a per-second rate)."""
    return bool(_COUNTER.search(family))


def prom_unit(family: str) -> str:
    """Unit of a family as drawn: counters per second (``s/s``, ``B/s``, ``/s``), gauges by suffix."""
    base = _COUNTER.sub("", family) if is_counter(family) else family
    unit = next((u for suffix, u in _BASE_UNITS if base.endswith(suffix)), "")
    return f"{unit}/s" if is_counter(family) else unit
