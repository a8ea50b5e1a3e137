"""Check the metrics and labels a rule set names against the windows it will run on.

A rules file is valid on its own (:func:`~workbench.alerts.loader.load_config`) yet
may name a metric the windows never have — ``cpu_avg`` where the aggregations make
``cpu_mean`` — and then never fire, silently. :func:`window_names` says which columns
and labels a schema's windows have (its aggregations, default or given, and the window
key); :func:`unknown_names` lists every name a rule reads that is not among them.

Examples
--------
>>> from workbench.alerts.loader import load_config
>>> metrics, labels = window_names("server_metrics")
>>> "cpu_mean" in metrics, labels
(True, ['host'])
>>> cfg = load_config({"rules": [
...     {"name": "hot", "kind": "threshold", "metric": "cpu_avg", "value": 90},
...     {"name": "api", "kind": "threshold", "metric": "cpu_mean", "value": 90, "matchers": ['job="api"']}]})
>>> for problem in unknown_names(cfg, ["count", "cpu_mean"], ["host"]):
...     print(problem)
rule 'hot': metric 'cpu_avg' is not a window column; known metrics: count, cpu_mean
rule 'api': matcher label 'job' is not a window label; known labels: host
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import polars as pl

from workbench.alerts.loader import AlertConfig
from workbench.alerts.rules import Absence, Drift, RateOfChange, Rule, Threshold
from workbench.config import format_duration, parse_duration
from workbench.operators.aggregations import default_aggs
from workbench.schema import Schema, get_schema

__all__ = ["too_short_absences", "unknown_names", "window_names"]


def window_names(
    schema: str | Schema, *, aggs: Sequence[pl.Expr] | None = None, by: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """The metric columns and the labels of a schema's windows.

    Parameters
    ----------
    schema
        Built-in schema name, schema file or value.
    aggs
        The window aggregations (default: the schema's, as ``Pipeline.standard`` uses).
    by
        The window key (default: the schema's entity): the labels of every series.
    """
    s = get_schema(schema)
    exprs = default_aggs(s) if aggs is None else aggs
    labels = list(by) if by else s.by
    return [e.meta.output_name() for e in exprs], labels


def _reads(rule: Rule) -> list[tuple[str, str]]:
    """(what, column) pairs a rule reads from the window rows."""
    if isinstance(rule, Drift):
        return [("feature", rule.feature)] if rule.feature is not None else []
    if isinstance(rule, Absence):
        return []
    if isinstance(rule, RateOfChange):
        return [("metric", rule.metric)]
    return [("metric" if c == rule.column else "column", c) for c in rule.columns]


def unknown_names(config: AlertConfig, metrics: Sequence[str], labels: Sequence[str]) -> list[str]:
    """Every metric, column and label a rule names that the windows lack, one message each."""
    known_metrics = f"known metrics: {', '.join(metrics)}"
    known_labels = f"known labels: {', '.join(labels)}"
    problems = []
    for rule in config.rules:
        who = f"rule {rule.name!r}"
        for what, column in _reads(rule):
            if column not in metrics:
                extra = " (made by a detector's score node, not by the windows)" if column.startswith("anomaly") else ""
                problems.append(f"{who}: {what} {column!r} is not a window column{extra}; {known_metrics}")
        if rule.by is not None and rule.by not in labels:
            problems.append(f"{who}: by {rule.by!r} is not a window label; {known_labels}")
        if isinstance(rule, Threshold):
            for name in rule.label_columns:
                if name not in labels:
                    problems.append(f"{who}: matcher label {name!r} is not a window label; {known_labels}")
    return problems


def too_short_absences(config: AlertConfig, every: str | float | timedelta) -> list[str]:
    """Absence rules whose ``after`` is not longer than the time between an entity's windows.

    Such a rule matches between every two windows of a healthy entity.

    Examples
    --------
    >>> from workbench.alerts.loader import load_config
    >>> cfg = load_config({"rules": [{"name": "silent", "kind": "absence", "after": "5s"}]})
    >>> print(*too_short_absences(cfg, "10s"))  # doctest: +NORMALIZE_WHITESPACE
    rule 'silent': after 5s is not longer than the windows' period 10s:
    every entity would be absent between two windows
    """
    period = parse_duration(every, what="window")
    return [
        f"rule {r.name!r}: after {format_duration(r.after_ms)} is not longer than the windows' period "
        f"{format_duration(period)}: every entity would be absent between two windows"
        for r in config.rules
        if isinstance(r, Absence) and r.after_ms <= period
    ]
