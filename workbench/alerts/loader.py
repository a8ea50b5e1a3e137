"""Alert configuration from YAML (or a dict): rules, routes, inhibition, receivers.

The file (one rule group)::

    evaluation_interval: 1m  # optional: the evaluation clock (default 1m) and
    lookback: 5m             # how far back a series' newest sample is seen (default 5m)
    defaults:                # optional: fields every rule gets unless it sets them
      by: host
    rules:
      - name: cpu_high
        kind: threshold      # threshold | anomaly | forecast | rate | drift | absence
        metric: cpu_mean
        op: ">"
        value: 90
        for: 30s
        keep_firing_for: 1m
        severity: critical
        labels: {team: infra}
        summary: "cpu {value:.0f}% on {entity}"
    routes:
      - receivers: [ops]
        matchers: ['severity=~"critical|page"']
        group_by: [alertname]
        group_wait: 30s
        group_interval: 5m
        repeat_interval: 4h
    inhibit:
      - source: ['severity="critical"']
        target: ['severity="warning"']
        equal: [host]
    receivers:
      ops: {kind: webhook, url: "http://127.0.0.1:9000/hook", secret: s3cret}
      log: {kind: jsonl, path: data/alerts.jsonl}

Every error names the file, the rule, the field and the value.

Examples
--------
>>> cfg = load_config({"rules": [{"name": "hot", "kind": "threshold", "metric": "cpu_mean", "value": 90}]})
>>> cfg.rules[0].name, cfg.rules[0].value
('hot', 90)
>>> load_config({"rules": [{"name": "hot", "kind": "threshold", "metric": "cpu_mean", "value": "high"}]})
Traceback (most recent call last):
...
workbench.errors.ConfigError: alert config: rule 'hot': field 'value' must be a number, not 'high'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.alerts.dispatch import Inhibit, Route
from workbench.alerts.rules import KINDS, Rule
from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = ["AlertConfig", "load_config"]


@dataclass(frozen=True)
class AlertConfig:
    """Rules, routes, inhibition rules and receiver settings (not yet built into notifiers)."""

    rules: tuple[Rule, ...]
    routes: tuple[Route, ...] = ()
    inhibit: tuple[Inhibit, ...] = ()
    receivers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    evaluation_interval: str | float = "1m"
    lookback: str | float = "5m"


def _rule(item: Any, defaults: Mapping[str, Any], where: str, n: int) -> Rule:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: rule #{n} must be a mapping, not {item!r}")
    item = {**defaults, **item}
    name = item.get("name")
    who = f"{where}: rule {name!r}" if name else f"{where}: rule #{n}"
    kind = item.pop("kind", None)
    if kind not in KINDS:
        raise ConfigError(f"{who}: field 'kind' must be one of {sorted(KINDS)}, not {kind!r}")
    cls = KINDS[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    args = {}
    for key, value in item.items():
        fname = "for_" if key == "for" else key
        if fname not in names:
            allowed = sorted("for" if f == "for_" else f for f in names)
            raise ConfigError(f"{who}: unknown field {key!r} for kind {kind!r}; allowed: {allowed}")
        args[fname] = value
    try:
        return cls(**args)
    except TypeError as exc:
        missing = str(exc).split("argument", 1)[-1].strip(": ")
        raise ConfigError(f"{who}: missing field(s) for kind {kind!r}: {missing}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _route(item: Any, where: str, n: int) -> Route:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: route #{n} must be a mapping, not {item!r}")
    known = {"receivers", "matchers", "group_by", "group_wait", "group_interval", "repeat_interval", "continue"}
    bad = sorted(set(item) - known)
    if bad:
        raise ConfigError(f"{where}: route #{n}: unknown field(s) {bad}; allowed: {sorted(known)}")
    args = {("continue_" if k == "continue" else k): v for k, v in item.items()}
    for key in ("receivers", "group_by"):
        if key in args and (isinstance(args[key], str) or not isinstance(args[key], list | tuple)):
            raise ConfigError(f"{where}: route #{n}: field {key!r} must be a list, not {args[key]!r}")
    try:
        return Route(**args)
    except ConfigError as exc:
        raise ConfigError(f"{where}: route #{n}: {exc}") from None


def load_config(source: str | Path | Mapping[str, Any]) -> AlertConfig:
    """Read and validate an alert configuration (a YAML file path or a mapping)."""
    if isinstance(source, Mapping):
        data, where = source, "alert config"
    else:
        import yaml

        path = Path(source)
        where = str(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the alert config ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'rules', not {type(data).__name__}")
    sections = ("evaluation_interval", "lookback", "defaults", "rules", "routes", "inhibit", "receivers")
    unknown = sorted(set(data) - set(sections))
    if unknown:
        if "groups" in data:
            from workbench.alerts.promrules import load_prometheus_rules

            return load_prometheus_rules(data, where=where)
        raise ConfigError(f"{where}: unknown section(s) {unknown}; allowed: {', '.join(sections)}")
    clock = {k: data.get(k, d) for k, d in (("evaluation_interval", "1m"), ("lookback", "5m"))}
    for key, value in clock.items():
        if parse_duration(value, what=f"{where}: {key}") <= 0:
            raise ConfigError(f"{where}: {key} must be > 0, not {value!r}")
    defaults = data.get("defaults") or {}
    items = data.get("rules")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: 'rules' must be a non-empty list, not {items!r}")
    rules = tuple(_rule(item, defaults, where, n) for n, item in enumerate(items, 1))
    names = [r.name for r in rules]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ConfigError(f"{where}: rule names must be unique, not repeated {dup}")
    routes = tuple(_route(item, where, n) for n, item in enumerate(data.get("routes") or [], 1))
    inhibit = []
    for n, item in enumerate(data.get("inhibit") or [], 1):
        if not isinstance(item, Mapping) or set(item) - {"source", "target", "equal"}:
            raise ConfigError(f"{where}: inhibit #{n} must have only source, target, equal, not {item!r}")
        try:
            inhibit.append(Inhibit(item.get("source", ()), item.get("target", ()), item.get("equal", ())))
        except ConfigError as exc:
            raise ConfigError(f"{where}: inhibit #{n}: {exc}") from None
    receivers = data.get("receivers") or {}
    if not isinstance(receivers, Mapping) or not all(isinstance(v, Mapping) for v in receivers.values()):
        raise ConfigError(f"{where}: 'receivers' must map names to settings, not {receivers!r}")
    for route in routes:
        for name in route.receivers:
            if receivers and name not in receivers:
                raise ConfigError(f"{where}: route receiver {name!r} is not defined; receivers: {sorted(receivers)}")
    return AlertConfig(rules, routes, tuple(inhibit), dict(receivers), **clock)
