"""``workbench alerts test``: promtool's rule unit-test files, run through Workbench's engine.

The file is promtool's (``promtool test rules``): ``rule_files`` (Workbench rule files,
or Prometheus rule files whose ``expr`` is a threshold, see
:mod:`~workbench.alerts.promrules`), ``evaluation_interval`` (default 1 m) and
``tests``, each with ``interval``, ``input_series`` (``series``, ``values`` in the
expanding notation ``a+bxn``, ``_``, ``stale``), ``alert_rule_test`` (``eval_time``,
``alertname``, ``exp_alerts`` with ``exp_labels`` and ``exp_annotations``) and
``promql_expr_test`` on the ``ALERTS`` series (``ALERTS{alertname="…", alertstate="…"}``).

As promtool does, the rules are evaluated at ``0, evaluation_interval, …`` up to the
last ``eval_time``, each seeing the samples up to that time; an ``eval_time`` between
two evaluations sees the earlier one; ``exp_alerts`` lists the *firing* alerts (labels:
the series' labels, the rule's labels and ``alertname``). Failures are reported in
promtool's words.

Examples
--------
>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "rules.yml").write_text('''
... groups:
... - name: g
...   rules:
...   - alert: Hot
...     expr: cpu > 90
...     for: 1m
...     annotations: {summary: "{{ $labels.host }} at {{ $value }}"}
... ''')
>>> _ = (d / "test.yml").write_text('''
... rule_files: [rules.yml]
... tests:
... - interval: 1m
...   input_series: [{series: 'cpu{host="a"}', values: "95 95 95 10"}]
...   alert_rule_test:
...   - {eval_time: 0m, alertname: Hot, exp_alerts: []}
...   - eval_time: 1m
...     alertname: Hot
...     exp_alerts: [{exp_labels: {host: a}, exp_annotations: {summary: "a at 95"}}]
...   - {eval_time: 3m, alertname: Hot, exp_alerts: []}
... ''')
>>> result = run_rule_tests(d / "test.yml")
>>> result.passed, result.text().splitlines()[1]
(True, '  SUCCESS')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from workbench.alerts.evaluator import Evaluator
from workbench.alerts.events import EventBuilder
from workbench.alerts.loader import load_config
from workbench.alerts.matchers import Matcher
from workbench.alerts.notation import STALE_VALUE, expand, format_labels, parse_matchers, parse_series
from workbench.alerts.rules import Rule
from workbench.alerts.series import STALE
from workbench.config import format_duration, parse_duration
from workbench.errors import ConfigError

__all__ = ["RuleTestResult", "run_rule_tests", "timeline"]

_NO_LABEL = "__wb_no_label__"  # a second, always-null label: series keys are then JSON objects


@dataclass(frozen=True)
class RuleTestResult:
    """The outcome of one test file: pass/fail and promtool-style error texts."""

    file: str
    errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every expectation held."""
        return not self.errors

    @property
    def head(self) -> str:
        """The first line (promtool prints it on stdout)."""
        return f"Unit Testing:  {self.file}\n"

    @property
    def body(self) -> str:
        """The verdict (promtool prints a failure on stderr)."""
        return "  SUCCESS\n" if self.passed else "  FAILED:\n" + "".join(e + "\n" for e in self.errors)

    def text(self) -> str:
        """The report, as promtool prints it."""
        return self.head + self.body


def _e_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'E', -1, 64)`` (how promtool prints a sample value)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0E+00"
    _, digits, exp = Decimal(repr(abs(value))).normalize().as_tuple()
    text = "".join(map(str, digits))
    exponent = len(text) + int(exp) - 1
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{'-' if value < 0 else ''}{mantissa}E{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"


def _indent(text: str, indent: str) -> str:
    lines = text.split("\n")
    return "\n".join([lines[0], *(indent + line for line in lines[1:])])


def _alerts_text(items: list[tuple[dict[str, str], dict[str, str]]]) -> str:
    """The alerts as promtool prints them (``labelsAndAnnotations.String()``)."""
    if not items:
        return "[]"
    parts = []
    for i, (labels, notes) in enumerate(items):
        one = f"Labels:{format_labels(labels)}\nAnnotations:{format_labels(notes)}"
        parts.append(f"{i}:" + _indent("\n" + one, "  "))
    return "[\n" + ",\n".join(parts) + "\n]"


def _sort_key(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    return sorted(labels.items())


class _Run:
    """One test group: input series evaluated on the rules' clock, state kept per evaluation time."""

    def __init__(self, rules: list[Rule], interval_ms: int, group: Mapping[str, Any], where: str) -> None:
        self.rules = rules
        self.interval_ms = interval_ms
        self.where = where
        step = parse_duration(group.get("interval", interval_ms / 1000), what=f"{where}: interval")
        rows: list[dict[str, Any]] = []
        names: set[str] = set()
        metrics: set[str] = set()
        for item in group.get("input_series") or []:
            if not isinstance(item, Mapping) or "series" not in item:
                raise ConfigError(f"{where}: each input_series needs 'series' and 'values', not {item!r}")
            metric, labels = parse_series(item["series"], what=f"{where}: input series")
            names |= set(labels)
            metrics.add(metric)
            for i, v in enumerate(expand(item.get("values", ""))):
                if v is None:
                    continue
                row: dict[str, Any] = {**labels, "__t": i * step}
                row.update({STALE: metric} if v == STALE_VALUE else {metric: v})
                rows.append(row)
        label_cols = sorted(names)
        schema: dict[str, Any] = {c: pl.String for c in label_cols}
        schema.update({"__t": pl.Int64, STALE: pl.String, **{m: pl.Float64 for m in sorted(metrics - names)}})
        self.frame = pl.from_dicts(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
        by = tuple(label_cols) if len(label_cols) > 1 else (*label_cols, _NO_LABEL)
        self.evaluator = Evaluator(rules, by=by, time="__t", interval=interval_ms / 1000, lookback="5m")
        self.builder = EventBuilder(rules, self.evaluator.entity_labels)
        self.states: dict[int, pl.DataFrame] = {}
        self.done = -1

    def run_until(self, t: int) -> None:
        """Evaluate every evaluation time up to ``t``, keeping the alert states of each."""
        tick = self.done + 1 if self.done >= 0 else 0
        tick = -(-tick // self.interval_ms) * self.interval_ms
        while tick <= t:
            chunk = self.frame.filter((pl.col("__t") > self.done) & (pl.col("__t") <= tick))
            if chunk.height:
                self.evaluator.evaluate(chunk)
            self.evaluator.advance(tick)
            self.states[tick] = self.evaluator.state
            self.done = tick
            tick += self.interval_ms

    def alerts_at(self, t: int) -> list[tuple[Rule, dict[str, str], str, float, dict[str, str]]]:
        """(rule, alert labels, state, value, annotations) of each active alert at the evaluation at or before ``t``."""
        state = self.states[t // self.interval_ms * self.interval_ms]
        out = []
        for rule_no, entity, st, value in state.select("rule", "entity", "state", "value").iter_rows():
            rule = self.rules[rule_no]
            cols = self.evaluator.entity_labels(rule)
            series = json.loads(entity) if len(cols) > 1 else {cols[0]: entity}
            # $labels in annotations are the series' labels, with its metric name
            notes = rule.render_annotations({**series, "__name__": rule.column} if rule.column else series, value)
            out.append((rule, {**series, **self.builder.labels_of(rule)}, st, value, notes))
        return out

    def check_alerts(self, case: Mapping[str, Any]) -> str | None:
        t = parse_duration(case.get("eval_time", 0), what=f"{self.where}: eval_time")
        name = case.get("alertname")
        got = [
            (labels, notes) for rule, labels, st, _, notes in self.alerts_at(t) if rule.name == name and st == "firing"
        ]
        exp = []
        for item in case.get("exp_alerts") or []:
            labels = {str(k): str(v) for k, v in (item.get("exp_labels") or {}).items()}
            notes = {str(k): str(v) for k, v in (item.get("exp_annotations") or {}).items()}
            exp.append(({**labels, "alertname": str(name)}, notes))
        got.sort(key=lambda x: _sort_key(x[0]))
        exp.sort(key=lambda x: _sort_key(x[0]))
        if got == exp:
            return None
        return (
            f"    alertname: {name}, time: {format_duration(t)}, \n"
            f"        exp:{_indent(_alerts_text(exp), ' ' * 12)}, \n"
            f"        got:{_indent(_alerts_text(got), ' ' * 12)}"
        )

    def check_expr(self, case: Mapping[str, Any]) -> str | None:
        expr = str(case.get("expr", ""))
        t = parse_duration(case.get("eval_time", 0), what=f"{self.where}: eval_time")
        what = f"{self.where}: promql_expr_test {expr!r}"
        try:
            metric, _ = parse_series(expr.split("{", 1)[0] or "x", what=what)
        except ConfigError:
            metric = ""
        if metric != "ALERTS":
            raise ConfigError(f'{what} is not supported: only a selector on ALERTS, e.g. ALERTS{{alertname="x"}}')
        body = expr.split("{", 1)[1].rsplit("}", 1)[0] if "{" in expr else ""
        matchers = parse_matchers(body, what=what)
        checks = [Matcher(n, op, v) for n, op, v in matchers]
        got = []
        for _rule, labels, st, _value, _notes in self.alerts_at(t):
            series = {"__name__": "ALERTS", **labels, "alertstate": st}
            if all(m.matches(series) for m in checks):
                got.append((series, 1.0))
        exp = []
        for item in case.get("exp_samples") or []:
            name, labels = parse_series(str(item.get("labels", "")), what=f"{what}: exp_samples")
            exp.append(({"__name__": name, **labels}, float(item.get("value", 0))))
        got.sort(key=lambda x: _sort_key(x[0]))
        exp.sort(key=lambda x: _sort_key(x[0]))
        if got == exp:
            return None

        def text(samples: list[tuple[dict[str, str], float]]) -> str:
            return ", ".join(f"{format_labels(s)} {_e_float(v)}" for s, v in samples) or "nil"

        head = f"    expr: {json.dumps(expr)}, time: {format_duration(t)},"
        return f"{head}\n        exp: {text(exp)}\n        got: {text(got)}"


def run_rule_tests(path: str | Path) -> RuleTestResult:
    """Run a promtool unit-test file through Workbench's rule engine."""
    import yaml

    path = Path(path)
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the test file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("rule_files"), list):
        raise ConfigError(f"{where}: a rule test file needs 'rule_files' (a list) and 'tests'")
    unknown = sorted(set(data) - {"rule_files", "evaluation_interval", "group_eval_order", "tests"})
    if unknown:
        raise ConfigError(f"{where}: field(s) {unknown} are not supported")
    rules: list[Rule] = []
    for name in data["rule_files"]:
        found = sorted(path.parent.glob(str(name))) if any(c in str(name) for c in "*?[") else [path.parent / str(name)]
        if not found:
            raise ConfigError(f"{where}: rule_files pattern {name!r} matches no file")
        for file in found:
            rules += load_config(file).rules
    interval_ms = parse_duration(data.get("evaluation_interval", "1m"), what=f"{where}: evaluation_interval")
    errors: list[str] = []
    for n, group in enumerate(data.get("tests") or [], 1):
        gwhere = f"{where}: test #{n}"
        if not isinstance(group, Mapping):
            raise ConfigError(f"{gwhere}: must be a mapping, not {group!r}")
        bad = sorted(set(group) - {"name", "interval", "input_series", "alert_rule_test", "promql_expr_test"})
        if bad or group.get("external_labels"):
            raise ConfigError(f"{gwhere}: field(s) {bad or ['external_labels']} are not supported")
        run = _Run(rules, interval_ms, group, gwhere)
        alert_cases = sorted(
            group.get("alert_rule_test") or [], key=lambda c: parse_duration(c.get("eval_time", 0), what=gwhere)
        )
        expr_cases = group.get("promql_expr_test") or []
        times = [parse_duration(c.get("eval_time", 0), what=gwhere) for c in [*alert_cases, *expr_cases]]
        run.run_until(max(times, default=0))
        prefix = f"    name: {group['name']},\n" if group.get("name") else ""  # promtool names alert failures only
        errors += [prefix + e for e in map(run.check_alerts, alert_cases) if e is not None]
        errors += [e for e in map(run.check_expr, expr_cases) if e is not None]
    return RuleTestResult(str(path), errors)


def timeline(
    rule_files: list[str | Path],
    group: Mapping[str, Any],
    *,
    evaluation_interval: str | float = "1m",
    until: str | float,
) -> dict[int, list[dict[str, Any]]]:
    """Every evaluation time up to ``until`` (ms) → its active alerts (name, state, labels, annotations, value).

    What Workbench computes for one test group (``interval`` and ``input_series``);
    a test file can be written from it, e.g. to check it against ``promtool``.
    """
    rules = [r for f in rule_files for r in load_config(f).rules]
    interval_ms = parse_duration(evaluation_interval, what="timeline: evaluation_interval")
    run = _Run(rules, interval_ms, group, "timeline")
    end = parse_duration(until, what="timeline: until")
    run.run_until(end)
    return {
        t: [
            {
                "alertname": rule.name,
                "state": st,
                "labels": labels,
                "annotations": notes,
                "value": value,
            }
            for rule, labels, st, value, notes in run.alerts_at(t)
        ]
        for t in sorted(run.states)
    }
