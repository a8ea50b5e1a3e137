"""Alert events: evaluator transitions with names, fingerprints, labels and summaries.

An alert event is one transition of one alert, the row of the ``alerts`` output and of
the store's ``alert_events`` table (:data:`EVENT_SCHEMA`). Building them is vectorised
(one join with a per-rule table, string concatenation for fingerprints and label JSON);
only transitions into or out of *firing* get a rendered summary.

Examples
--------
>>> import polars as pl
>>> from workbench.alerts.rules import Threshold
>>> b = EventBuilder([Threshold("hot", metric="cpu_mean", value=90)], lambda rule: ("host",))
>>> tr = pl.DataFrame({"rule": [0], "entity": ["a"], "from_state": ["inactive"], "to_state": ["firing"],
...                    "at": [10_000], "active_at": [10_000], "value": [95.0]}, schema_overrides={"rule": pl.UInt32})
>>> b.build(tr).select("fingerprint", "summary", "labels").row(0)
('hot/a', 'hot on a: 95', '{"alertname": "hot", "host": "a", "severity": "warning"}')
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from workbench.alerts.rules import Rule

__all__ = ["EVENT_SCHEMA", "EventBuilder"]

TS = pl.Datetime("ms", "UTC")
EVENT_SCHEMA: dict[str, Any] = {
    "fingerprint": pl.String,
    "rule": pl.String,
    "entity": pl.String,
    "from_state": pl.String,
    "to_state": pl.String,
    "at": TS,
    "active_at": TS,
    "value": pl.Float64,
    "severity": pl.String,
    "summary": pl.String,
    "labels": pl.String,
}


class EventBuilder:
    """Turns transitions (rule number, entity, states, times, value) into alert events.

    An alert's labels are its series' labels, overridden by the rule's ``severity``
    and ``labels``, then ``alertname`` (Prometheus' order).
    """

    def __init__(self, rules: Sequence[Rule], entity_labels: Callable[[Rule], tuple[str, ...] | str]) -> None:
        self.rules = list(rules)
        self.entity_labels = entity_labels
        self._by_name = {r.name: r for r in self.rules}
        self._table: pl.DataFrame | None = None

    def labels_of(self, rule: Rule) -> dict[str, str]:
        """The labels a rule puts on each of its alerts (over the series' labels)."""
        own = {"severity": rule.severity} if rule.severity_label else {}
        return {**own, **rule.labels, "alertname": rule.name}

    def _rule_table(self) -> pl.DataFrame:
        """Per rule: name, severity, and the labels JSON around the entity value (sorted keys)."""
        if self._table is None:
            rows = []
            for i, rule in enumerate(self.rules):
                cols = self.entity_labels(rule)
                cols = (cols,) if isinstance(cols, str) else cols
                own = self.labels_of(rule)
                multi, const = len(cols) > 1, len(cols) == 1 and cols[0] in own
                if multi or const:
                    pre, post = json.dumps(own, sort_keys=True), ""
                else:
                    pre, post = json.dumps({**own, cols[0]: "\x00"}, sort_keys=True).split('"\\u0000"')
                rows.append(
                    {
                        "rule": i,
                        "name": rule.name,
                        "severity": rule.severity,
                        "pre": pre,
                        "post": post,
                        "multi": multi,
                        "const": const,
                    }
                )
            self._table = pl.DataFrame(rows, schema_overrides={"rule": pl.UInt32})
        return self._table

    def build(self, transitions: pl.DataFrame) -> pl.DataFrame:
        """Transitions with the rule's name, labels, fingerprint — vectorised — and summaries.

        Summaries are rendered (a Python ``str.format``) for transitions into or out of
        *firing* only — what notifications and people see; pending ↔ inactive churn
        carries none, so a storm of pending alerts costs no Python per alert. Series
        with several labels (the entity is their JSON object) get their labels merged
        in Python, per transition.
        """
        if transitions.height == 0:
            return pl.DataFrame(schema=EVENT_SCHEMA)
        entity_json = (
            pl.col("entity").str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
        )
        joined = transitions.join(self._rule_table(), on="rule", how="left", maintain_order="left")
        labels = (
            pl.when(pl.col("multi") | pl.col("const"))
            .then(pl.col("pre"))
            .otherwise(pl.concat_str(pl.col("pre"), pl.lit('"'), entity_json, pl.lit('"'), pl.col("post")))
        )
        out = joined.select(
            (pl.col("name") + "/" + pl.col("entity")).alias("fingerprint"),
            pl.col("name").alias("rule"),
            "entity",
            "from_state",
            "to_state",
            pl.col("at").cast(TS),
            pl.col("active_at").cast(TS),
            "value",
            "severity",
            pl.lit(None, pl.String).alias("summary"),
            labels.alias("labels"),
        )
        if joined["multi"].any():
            merged = [
                json.dumps({**json.loads(e), **json.loads(lab)}, sort_keys=True) if m else lab
                for e, lab, m in zip(out["entity"], out["labels"], joined["multi"], strict=True)
            ]
            out = out.with_columns(pl.Series("labels", merged, dtype=pl.String))
        firing = (pl.col("to_state") == "firing") | (pl.col("from_state") == "firing")
        shown = out.filter(firing)
        if shown.height:
            texts = [
                self._by_name[r].render(entity=e, value=v, labels=json.loads(lab))
                for r, e, v, lab in shown.select("rule", "entity", "value", "labels").iter_rows()
            ]
            idx = out.with_row_index("__i").filter(firing)["__i"]
            summary = pl.Series("summary", [None] * out.height, dtype=pl.String).scatter(idx, texts)
            out = out.with_columns(summary)
        return out
