"""Prometheus rule files read as Workbench rules: alerting rules whose ``expr`` is a threshold.

A team keeps one rule file for Prometheus and Workbench when each alerting rule's
``expr`` is a threshold on one metric — ``name{matchers} OP number`` with ``OP`` one of
``> >= < <= == !=`` and matchers ``=``, ``!=``, ``=~``, ``!~`` — which becomes a
:class:`~workbench.alerts.rules.Threshold` on the column ``name``. ``for``,
``keep_firing_for``, ``labels`` and ``annotations`` (``$labels``/``$value`` templates)
carry over; the alert has a ``severity`` label only when ``labels`` sets one. Anything
else (recording rules, other PromQL, templated labels, groups with different
intervals) is refused with a "not supported" message naming the file, group and rule.

Examples
--------
>>> cfg = load_prometheus_rules({"groups": [{"name": "g", "interval": "30s", "rules": [
...     {"alert": "Hot", "expr": 'cpu{job="api"} > 90', "for": "1m", "labels": {"severity": "page"}}]}]})
>>> rule = cfg.rules[0]
>>> rule.metric, rule.op, rule.value, rule.matchers, rule.for_, cfg.evaluation_interval
('cpu', '>', 90.0, ('job="api"',), '1m', '30s')
>>> load_prometheus_rules({"groups": [{"name": "g", "rules": [{"alert": "Up", "expr": "rate(x[5m]) > 1"}]}]})
... # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: prometheus rules: group 'g': rule 'Up': expr 'rate(x[5m]) > 1' is not supported: ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workbench.alerts.loader import AlertConfig
from workbench.alerts.rules import SEVERITIES, Rule, Threshold
from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = ["load_prometheus_rules", "parse_threshold"]

_NUMBER = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|inf|NaN)"
_EXPR = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*(>=|<=|==|!=|>|<)\s*(" + _NUMBER + r")\s*$", re.S)
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_SUPPORTED = "only a threshold on one metric, name{matchers} OP number (OP one of > >= < <= == !=)"


def parse_threshold(expr: str, *, what: str) -> tuple[str, tuple[str, ...], str, float]:
    """``name{matchers} OP number`` → (metric, matchers, op, number)."""
    m = _EXPR.match(expr) if isinstance(expr, str) else None
    if m is None:
        raise ConfigError(f"{what}: expr {expr!r} is not supported: {_SUPPORTED}")
    matchers: list[str] = []
    body = (m.group(2) or "").strip()
    pos = 0
    while pos < len(body):
        mm = _MATCHER.match(body, pos)
        if mm is None or mm.end() == pos:
            raise ConfigError(f'{what}: expr {expr!r} is not supported: label matchers must be name OP "value"')
        value = bytes(mm.group(3), "utf-8").decode("unicode_escape")
        matchers.append(f'{mm.group(1)}{mm.group(2)}"{value}"')
        pos = mm.end()
    return m.group(1), tuple(matchers), m.group(3), float(m.group(4))


def _rule(item: Any, who: str, names: set[str]) -> Rule:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{who}: each rule must be a mapping, not {item!r}")
    if "record" in item:
        raise ConfigError(f"{who}: recording rule {item['record']!r} is not supported (only alerting rules)")
    name = item.get("alert")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{who}: rule needs 'alert' (a name), not {item!r}")
    who = f"{who}: rule {name!r}"
    unknown = sorted(set(item) - {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"})
    if unknown:
        raise ConfigError(f"{who}: field(s) {unknown} are not supported")
    if name in names:
        raise ConfigError(f"{who}: several rules with one alert name are not supported")
    names.add(name)
    metric, matchers, op, value = parse_threshold(str(item.get("expr", "")), what=who)
    labels = item.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{who}: 'labels' must be a mapping, not {labels!r}")
    labels = {str(k): str(v) for k, v in labels.items()}
    templated = sorted(k for k, v in labels.items() if "{{" in v)
    if templated:
        raise ConfigError(f"{who}: templated label value(s) {templated} are not supported (annotations may be)")
    severity = labels.get("severity", "warning")
    try:
        return Threshold(
            name,
            metric=metric,
            op=op,
            value=value,
            matchers=matchers,
            for_=item.get("for", 0),
            keep_firing_for=item.get("keep_firing_for", 0),
            labels=labels,
            annotations={str(k): str(v) for k, v in (item.get("annotations") or {}).items()},
            severity=severity if severity in SEVERITIES else "warning",
            severity_label=False,
        )
    except ConfigError as exc:
        raise ConfigError(f"{who}: {exc}") from None


def load_prometheus_rules(data: Mapping[str, Any], *, where: str = "prometheus rules") -> AlertConfig:
    """A Prometheus rule file (its parsed YAML) as an :class:`AlertConfig` of threshold rules."""
    groups = data.get("groups")
    if set(data) != {"groups"} or not isinstance(groups, list) or not groups:
        raise ConfigError(
            f"{where}: a Prometheus rule file has one key, 'groups' (a non-empty list), not {sorted(data)}"
        )
    rules: list[Rule] = []
    intervals: set[int] = set()
    names: set[str] = set()
    interval: str | float = "1m"
    for n, group in enumerate(groups, 1):
        if not isinstance(group, Mapping) or not isinstance(group.get("rules"), list):
            raise ConfigError(f"{where}: group #{n} must be a mapping with 'name' and 'rules', not {group!r}")
        who = f"{where}: group {group.get('name', n)!r}"
        unknown = sorted(set(group) - {"name", "interval", "rules"})
        if unknown:
            raise ConfigError(f"{who}: field(s) {unknown} are not supported")
        if "interval" in group:
            interval = group["interval"]
            intervals.add(parse_duration(interval, what=f"{who}: interval"))
        rules += [_rule(item, who, names) for item in group["rules"]]
    if len(intervals) > 1:
        raise ConfigError(f"{where}: groups with different intervals in one file are not supported")
    if not rules:
        raise ConfigError(f"{where}: no alerting rules")
    return AlertConfig(tuple(rules), evaluation_interval=interval)
