"""The rule evaluator: every rule on an evaluation clock in event time, as Prometheus runs it.

Rules are evaluated at the *evaluation times* ``t = k * interval`` (epoch ms, default
every minute, Prometheus' ``evaluation_interval``), not at every window end. Window
rows are *samples*: each value column of each label set (``by``: one column or
several, e.g. ``host`` and ``job``) is a series; an evaluation sees, per series, its
newest sample within the ``lookback`` (5 m) and nothing once it went stale
(:mod:`~workbench.alerts.series`). Every rule is matched against that view at once —
one expression per rule, vectorised over series — and every alert is stepped with one
join, exactly as Prometheus' alerting rule does (:mod:`~workbench.alerts.lifecycle`):
pending, ``for``, firing, ``keep_firing_for`` counted from the first evaluation that
does not match, resolved.

Time only comes from the data: an evaluation time is run once a sample at or after
it arrives (samples at that very time are seen by it), or when :meth:`Evaluator.advance`
moves event time there (a heartbeat: silences and dead man's switches need no data).
A late sample (older than the last evaluation) is seen from the next one on. So a
live run, a replay and a backtest of the same rows produce the same transitions.

Examples
--------
>>> import polars as pl
>>> from workbench.alerts.rules import Threshold
>>> ev = Evaluator([Threshold("hot", metric="cpu_mean", value=90, for_="1m")], by="host")
>>> def sample(end_s, cpu):
...     return pl.DataFrame({"host": ["a"], "window_end": [end_s * 1000], "cpu_mean": [cpu]})
>>> [ev.evaluate(sample(s, 95.0))["to_state"].to_list() for s in (0, 30, 60)]
[['pending'], [], ['firing']]
>>> ev.evaluate(sample(90, 10.0)).height, ev.advance(120_000).select("from_state", "to_state").row(0)
(0, ('firing', 'resolved'))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from workbench.alerts.lifecycle import HIT_SCHEMA, STATE_SCHEMA, TRANSITION_SCHEMA, step
from workbench.alerts.rules import Absence, RateOfChange, Rule, Threshold
from workbench.alerts.series import SeriesStore
from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = ["STATE_SCHEMA", "TRANSITION_SCHEMA", "Evaluator", "entity_expr"]

_MATCH_SCHEMA = pl.Schema({"rule": pl.UInt32, "entity": pl.String, "value": pl.Float64})
_SEEN_SCHEMA = pl.Schema({"entity": pl.String, "last": pl.Int64})
_DRIFT_TIME = ("ts", "time", "event_time", "window_end")


def _epoch_ms(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return expr.dt.epoch("ms") if isinstance(dtype, pl.Datetime) else expr.cast(pl.Int64)


def entity_expr(labels: Sequence[str]) -> pl.Expr:
    """A series' identity as one string: the label's value, or (several labels) a JSON object of the labels set.

    With several labels, a null or empty value is no label (as in Prometheus).

    Examples
    --------
    >>> frame = pl.DataFrame({"host": ["a", "b"], "job": ["x", None]})
    >>> frame.select(entity_expr(["host", "job"]))["host"].to_list()
    ['{"host":"a","job":"x"}', '{"host":"b"}']
    """
    if len(labels) == 1:
        return pl.col(labels[0]).cast(pl.String)
    parts = []
    for c in sorted(labels):
        v = pl.col(c).cast(pl.String).str.replace_all("\\", "\\\\", literal=True)
        v = v.str.replace_all('"', '\\"', literal=True)
        parts.append(pl.when(v != "").then(pl.lit(json.dumps(c) + ':"') + v + pl.lit('"')))
    inner = pl.concat_str(parts, separator=",", ignore_nulls=True).fill_null("")
    return (pl.lit("{") + inner + pl.lit("}")).alias(labels[0])


class Evaluator:
    """Rules on an evaluation clock over the newest samples, and the alert lifecycle state.

    Parameters
    ----------
    rules
        The rules (unique names).
    by
        Label column(s) that, with the value column, identify a series; an alert is
        identified by its rule and all of them (a rule's own ``by`` narrows it to one).
    time
        Event-time column of window rows (``window_end``).
    interval
        Evaluation interval (Prometheus' ``evaluation_interval``).
    lookback
        How far back an evaluation looks for a series' newest sample (PromQL's
        lookback delta).
    forget_after
        Milliseconds after which an entity not seen is forgotten by absence and
        rate rules (bounded state).
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        by: str | Sequence[str] = "host",
        time: str = "window_end",
        interval: str | float = "1m",
        lookback: str | float = "5m",
        forget_after: int = 86_400_000,
    ) -> None:
        names = [r.name for r in rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"rules: names must be unique, not repeated {dup}")
        self.rules = list(rules)
        self.by = by
        self.labels: tuple[str, ...] = (by,) if isinstance(by, str) else tuple(by)
        if not self.labels or not all(isinstance(c, str) and c for c in self.labels):
            raise ConfigError(f"alert rules: 'by' must name one or more label columns, not {by!r}")
        self.time = time
        self.interval_ms = parse_duration(interval, what="alert rules: evaluation_interval")
        self.lookback_ms = parse_duration(lookback, what="alert rules: lookback")
        if self.interval_ms <= 0 or self.lookback_ms <= 0:
            raise ConfigError(
                f"alert rules: evaluation_interval and lookback must be > 0, not {interval!r}, {lookback!r}"
            )
        self.forget_after = forget_after
        self.table = pl.DataFrame(
            {
                "rule": list(range(len(self.rules))),
                "for_ms": [r.for_ms for r in self.rules],
                "keep_ms": [r.keep_ms for r in self.rules],
            },
            schema={"rule": pl.UInt32, "for_ms": pl.Int64, "keep_ms": pl.Int64},
        )
        self._window = [i for i, r in enumerate(self.rules) if r.source == "windows"]
        self._drift = [i for i, r in enumerate(self.rules) if r.source == "drift"]
        self._absence = [i for i, r in enumerate(self.rules) if r.source == "absence"]
        self._rate_by: dict[str, list[str]] = {}
        for r in self.rules:
            if isinstance(r, RateOfChange):
                self._rate_by.setdefault(self.entity_column(r), []).append(r.metric)
        self._seen_by = sorted(
            {
                self.entity_labels(self.rules[i])
                for i in self._absence
                if getattr(self.rules[i], "scope", "") == "entity"
            }
        )
        keys = list(self.labels)
        for i in self._window:
            rule = self.rules[i]
            extra = ((rule.by,) if rule.by else ()) + (rule.label_columns if isinstance(rule, Threshold) else ())
            keys += [c for c in extra if c not in keys]
        self.columns = list(dict.fromkeys(c for i in self._window for c in self.rules[i].columns))
        self.store = SeriesStore(keys, lookback_ms=self.lookback_ms)
        self.state = pl.DataFrame(schema=STATE_SCHEMA)
        self.last_t: int | None = None  # the latest evaluation time
        self.times: list[int] = []  # evaluation times of the last call, in order
        self.seen: dict[tuple[str, ...], pl.DataFrame] = {b: pl.DataFrame(schema=_SEEN_SCHEMA) for b in self._seen_by}
        self.seen_any: int | None = None
        self.previous: dict[str, pl.DataFrame] = {}
        self.pending_drift = pl.DataFrame(schema={"entity": pl.String, "t": pl.Int64, "__rules": pl.List(pl.UInt32)})
        self._hits: dict[tuple[int, ...], list[pl.Expr]] = {}
        #: Called after every evaluation with (time, alert states, transitions): how
        #: alerts reach an Alertmanager the way Prometheus sends them.
        self.on_evaluation: Callable[[int, pl.DataFrame, pl.DataFrame], None] | None = None

    def entity_column(self, rule: Rule) -> str:
        """The (first) column naming a rule's entity."""
        return rule.by or self.labels[0]

    def entity_labels(self, rule: Rule) -> tuple[str, ...]:
        """The labels identifying a rule's alerts (besides the rule's own)."""
        return (rule.by,) if rule.by else self.labels

    # -- inputs ---------------------------------------------------------------------
    def evaluate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Take window rows; run every evaluation time they reach; the transitions (TRANSITION_SCHEMA)."""
        self.times = []
        if frame.height == 0:
            return pl.DataFrame(schema=TRANSITION_SCHEMA)
        if self.time not in frame.columns:
            raise ConfigError(f"alert rules: window rows need a {self.time!r} column, not only {frame.columns}")
        frame = frame.with_columns(_epoch_ms(pl.col(self.time), frame.schema[self.time]).alias("__t"))
        times = frame["__t"].unique().sort().to_list()
        parts = (
            frame.partition_by("__t", as_dict=True, maintain_order=False) if len(times) > 1 else {(times[0],): frame}
        )
        out = []
        for t in times:
            out.append(self._run_until(t - 1))  # evaluations before these samples do not see them
            self._absorb(t, parts[(t,)])
            out.append(self._run_until(t))
        return pl.concat(out)

    def add_drift(self, frame: pl.DataFrame) -> None:
        """Buffer drift events; they match at the next evaluation at or after their time."""
        if frame.height == 0 or not self._drift:
            return
        tcol = next((c for c in _DRIFT_TIME if c in frame.columns), None)
        if tcol is None:
            raise ConfigError(f"drift events: need one of the time columns {_DRIFT_TIME}, not only {frame.columns}")
        parts = []
        for i in self._drift:
            rule = self.rules[i]
            ent = self.entity_column(rule)
            if ent not in frame.columns and "entity" in frame.columns:
                ent = "entity"  # drift events may name their entity column generically
            if ent not in frame.columns or any(c not in frame.columns for c in rule.columns):
                continue
            parts.append(
                frame.filter(rule.condition()).select(
                    pl.col(ent).cast(pl.String).alias("entity"),
                    _epoch_ms(pl.col(tcol), frame.schema[tcol]).alias("t"),
                    pl.lit([i], pl.List(pl.UInt32)).alias("__rules"),
                )
            )
        if parts:
            self.pending_drift = pl.concat([self.pending_drift, *parts])

    def advance(self, t: int) -> pl.DataFrame:
        """Move event time to ``t`` with no new samples: run the evaluation times up to it (a heartbeat)."""
        self.times = []
        return self._run_until(t)

    # -- the evaluation clock -----------------------------------------------------------
    def _run_until(self, t: int) -> pl.DataFrame:
        """Run every evaluation time after the last one, up to and including ``t``."""
        iv = self.interval_ms
        if self.last_t is None:
            first = [x for x in (self.store.newest, self.seen_any, t) if x is not None]
            nxt = -(-min(first) // iv) * iv
        else:
            nxt = self.last_t + iv
        out = [pl.DataFrame(schema=TRANSITION_SCHEMA)]
        while nxt <= t:
            if self._idle(nxt):  # nothing can change before new samples: jump to the last evaluation time
                nxt = t // iv * iv
            out.append(self._evaluate_at(nxt))
            nxt += iv
        return pl.concat(out)

    def _idle(self, t: int) -> bool:
        newest = self.store.newest
        return (
            self.state.height == 0
            and self.pending_drift.height == 0
            and not self._absence
            and (newest is None or newest < t - self.lookback_ms)
        )

    def _absorb(self, t: int, rows: pl.DataFrame) -> None:
        if self._window:
            rows = self._with_previous(t, rows)
            self.store.absorb(rows, self.columns)
        self._remember(t, rows)

    # -- one evaluation ---------------------------------------------------------------
    def _evaluate_at(self, t: int) -> pl.DataFrame:
        self.last_t = t
        self.times.append(t)
        matches: list[pl.DataFrame] = []
        if self._window and self.store.latest.height:
            view = self.store.instant(t)
            cols = set(view.columns)
            idx = [i for i in self._window if all(c in cols for c in self.rules[i].columns)]
            if idx and view.height:
                matches.append(self._match(view, idx))
        if self._drift:
            matches.append(self._drift_matches(t))
        if self._absence:
            matches.append(self._absence_matches(t))
        found = pl.concat([m for m in matches if m.height] or [pl.DataFrame(schema=_MATCH_SCHEMA)])
        hits = found.group_by("rule", "entity").agg(pl.col("value").max().alias("hit_value")).cast(HIT_SCHEMA)
        self.state, transitions = step(self.state, hits, self.table, t)
        if self.on_evaluation is not None:
            self.on_evaluation(t, self.state, transitions)
        return transitions

    def _match(self, rows: pl.DataFrame, idx: list[int]) -> pl.DataFrame:
        """One expression per rule — the row numbers where it matches — then (rule, entity, value) rows.

        Entities and values are gathered with numpy from the few matching rows; value
        expressions shared by several rules (the same metric) are computed once.
        """
        rules = [self.rules[i] for i in idx]
        key = tuple(idx)
        if key not in self._hits:
            self._hits = {
                key: [r.condition().arg_true().implode().alias(str(i)) for i, r in zip(idx, rules, strict=True)]
            }
        hits = rows.select(self._hits[key])
        long = hits.unpivot(variable_name="rule", value_name="row").explode("row").drop_nulls("row")
        if long.height == 0:
            return pl.DataFrame(schema=_MATCH_SCHEMA)
        rule_no = long["rule"].cast(pl.UInt32).to_numpy()
        row_no = long["row"].cast(pl.Int64).to_numpy()
        value_keys: dict[str, int] = {}
        value_exprs: list[pl.Expr] = []
        entity_keys: dict[tuple[str, ...], int] = {}
        vmap = np.zeros(len(self.rules), dtype=np.int64)
        emap = np.zeros(len(self.rules), dtype=np.int64)
        for i, r in zip(idx, rules, strict=True):
            expr = r.value_expr()
            vmap[i] = value_keys.setdefault(str(expr), len(value_keys))
            if vmap[i] == len(value_exprs):
                value_exprs.append(expr)
            emap[i] = entity_keys.setdefault(self.entity_labels(r), len(entity_keys))
        values = rows.select([e.alias(f"v{j}") for j, e in enumerate(value_exprs)]).to_numpy().astype(np.float64)
        entities = rows.select(entity_expr(c).alias(f"e{j}") for j, c in enumerate(entity_keys)).to_numpy()
        return pl.DataFrame(
            {
                "rule": rule_no,
                "entity": entities[row_no, emap[rule_no]],
                "value": values[row_no, vmap[rule_no]],
            },
            schema=_MATCH_SCHEMA,
        )

    def _with_previous(self, t: int, rows: pl.DataFrame) -> pl.DataFrame:
        """Rate rules: each entity's previous value and the seconds since it."""
        for ent, metrics in self._rate_by.items():
            have = [m for m in dict.fromkeys(metrics) if m in rows.columns]
            if ent not in rows.columns or not have:
                continue
            prev = self.previous.get(ent)
            key = pl.col(ent).cast(pl.String)
            rows = rows.with_columns(key.alias("__ent"))
            if prev is not None:
                rows = rows.join(prev, on="__ent", how="left").with_columns(
                    ((pl.col("__t") - pl.col("__prev__t")) / 1000).alias("__prev__dt_s")
                )
            else:
                rows = rows.with_columns(
                    *[pl.lit(None, pl.Float64).alias(f"__prev__{m}") for m in have],
                    pl.lit(None, pl.Float64).alias("__prev__dt_s"),
                )
            latest = rows.group_by("__ent").agg(
                pl.col("__t").max().alias("__prev__t"), *[pl.col(m).last().alias(f"__prev__{m}") for m in have]
            )
            if prev is not None:
                latest = pl.concat([prev.join(latest, on="__ent", how="anti"), latest], how="diagonal_relaxed")
            self.previous[ent] = latest.filter(pl.col("__prev__t") > t - self.forget_after)
            rows = rows.drop([c for c in ("__ent", "__prev__t") if c in rows.columns])
        return rows

    def _remember(self, t: int, rows: pl.DataFrame) -> None:
        self.seen_any = t if self.seen_any is None else max(t, self.seen_any)
        for labels in self._seen_by:
            if labels[0] not in rows.columns:
                continue
            missing = [c for c in labels if c not in rows.columns]
            now = (
                rows.with_columns(pl.lit(None, pl.String).alias(c) for c in missing)
                .select(entity_expr(labels).alias("entity"))
                .unique()
                .with_columns(pl.lit(t, pl.Int64).alias("last"))
            )
            old = self.seen[labels]
            self.seen[labels] = pl.concat([old.join(now, on="entity", how="anti"), now]).filter(
                pl.col("last") > t - self.forget_after
            )

    def _drift_matches(self, t: int) -> pl.DataFrame:
        if self.pending_drift.height == 0:
            return pl.DataFrame(schema=_MATCH_SCHEMA)
        due = self.pending_drift.filter(pl.col("t") <= t)
        self.pending_drift = self.pending_drift.filter(pl.col("t") > t)
        return due.explode("__rules").select(
            pl.col("__rules").alias("rule"), "entity", pl.lit(1.0, pl.Float64).alias("value")
        )

    def _absence_matches(self, t: int) -> pl.DataFrame:
        parts = []
        for i in self._absence:
            rule = self.rules[i]
            assert isinstance(rule, Absence)
            if rule.scope == "source":
                if self.seen_any is not None and t - self.seen_any >= rule.after_ms:
                    parts.append(pl.DataFrame({"rule": [i], "entity": ["*"], "value": [(t - self.seen_any) / 1000]}))
                continue
            seen = self.seen[self.entity_labels(rule)]
            parts.append(
                seen.filter(pl.lit(t) - pl.col("last") >= rule.after_ms).select(
                    pl.lit(i, pl.UInt32).alias("rule"), "entity", ((pl.lit(t) - pl.col("last")) / 1000).alias("value")
                )
            )
        return pl.concat([p.cast(_MATCH_SCHEMA) for p in parts]) if parts else pl.DataFrame(schema=_MATCH_SCHEMA)

    # -- state ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Alert states and the memory of absence and rate rules (frames are immutable: no aliasing)."""
        return {
            "rules": [r.name for r in self.rules],
            "state": self.state.clone(),
            "store": self.store.snapshot(),
            "last_t": self.last_t,
            "seen": {k: v.clone() for k, v in self.seen.items()},
            "seen_any": self.seen_any,
            "previous": {k: v.clone() for k, v in self.previous.items()},
            "pending_drift": self.pending_drift.clone(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot` (the rules must be the same, by name and order)."""
        if state["rules"] != [r.name for r in self.rules]:
            from workbench.errors import CheckpointError

            raise CheckpointError(
                f"alert evaluator: snapshot rules {state['rules']} differ from {[r.name for r in self.rules]}"
            )
        # a snapshot from before the evaluation clock has no samples and no keep_since: start those empty
        old = state["state"]
        self.state = old.with_columns(
            [pl.lit(None, dtype).alias(c) for c, dtype in STATE_SCHEMA.items() if c not in old.columns]
        ).select(list(STATE_SCHEMA))
        if "store" in state:
            self.store.restore(state["store"])
        self.last_t = state["last_t"]
        self.seen = {(k,) if isinstance(k, str) else k: v.clone() for k, v in state["seen"].items()}
        self.seen_any = state["seen_any"]
        self.previous = {k: v.clone() for k, v in state["previous"].items()}
        self.pending_drift = state["pending_drift"].clone()
