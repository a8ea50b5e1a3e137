"""The rule evaluator: every rule over a window batch in one polars ``select``, in event time.

An *evaluation* happens at each distinct window end of a batch (``t``, epoch ms): the
rows of that window are matched against every rule at once — one expression per
rule, vectorised over entities — and the alert states are stepped with one join:

- a new match becomes *pending* (or *firing* at once when ``for_`` is 0);
- a pending alert matching for at least ``for_`` becomes *firing*;
- a pending alert that stops matching goes back to *inactive*;
- a firing alert that has not matched for ``keep_firing_for`` is *resolved*.

Time only comes from the data (window ends, drift event times, or :meth:`advance`),
so a live run, a replay and a backtest of the same rows produce the same transitions.
Evaluation times never go backwards (a late window is evaluated at the newest time).

Examples
--------
>>> import polars as pl
>>> from workbench.alerts.rules import Threshold
>>> ev = Evaluator([Threshold("hot", metric="cpu_mean", value=90, for_="20s")], by="host")
>>> def window(end_s, cpu):
...     return pl.DataFrame({"host": ["a"], "window_end": [end_s * 1000], "cpu_mean": [cpu]})
>>> [ev.evaluate(window(s, 95.0))["to_state"].to_list() for s in (10, 20, 30)]
[['pending'], [], ['firing']]
>>> ev.evaluate(window(40, 10.0)).select("from_state", "to_state").row(0)
('firing', 'resolved')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from workbench.alerts.rules import Absence, RateOfChange, Rule
from workbench.errors import ConfigError

__all__ = ["STATE_SCHEMA", "TRANSITION_SCHEMA", "Evaluator"]

STATE_SCHEMA = pl.Schema(
    {
        "rule": pl.UInt32,
        "entity": pl.String,
        "state": pl.String,
        "active_at": pl.Int64,
        "fired_at": pl.Int64,
        "last_match": pl.Int64,
        "value": pl.Float64,
    }
)
TRANSITION_SCHEMA = pl.Schema(
    {
        "rule": pl.UInt32,
        "entity": pl.String,
        "from_state": pl.String,
        "to_state": pl.String,
        "at": pl.Int64,
        "active_at": pl.Int64,
        "value": pl.Float64,
    }
)
_MATCH_SCHEMA = pl.Schema({"rule": pl.UInt32, "entity": pl.String, "value": pl.Float64})
_SEEN_SCHEMA = pl.Schema({"entity": pl.String, "last": pl.Int64})
_DRIFT_TIME = ("ts", "time", "event_time", "window_end")


def _epoch_ms(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return expr.dt.epoch("ms") if isinstance(dtype, pl.Datetime) else expr.cast(pl.Int64)


class Evaluator:
    """Vectorised rule evaluation and alert lifecycle state.

    Parameters
    ----------
    rules
        The rules (unique names).
    by
        Default entity column for rules without their own ``by``.
    time
        Event-time column of window rows (``window_end``).
    forget_after
        Milliseconds after which an entity not seen is forgotten by absence and
        rate rules (bounded state).
    """

    def __init__(
        self, rules: Sequence[Rule], *, by: str = "host", time: str = "window_end", forget_after: int = 86_400_000
    ) -> None:
        names = [r.name for r in rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"rules: names must be unique, not repeated {dup}")
        self.rules = list(rules)
        self.by = by
        self.time = time
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
                self.entity_column(self.rules[i])
                for i in self._absence
                if getattr(self.rules[i], "scope", "") == "entity"
            }
        )
        self.state = pl.DataFrame(schema=STATE_SCHEMA)
        self.last_t: int | None = None
        self.times: list[int] = []  # evaluation times of the last call, in order
        self.seen: dict[str, pl.DataFrame] = {b: pl.DataFrame(schema=_SEEN_SCHEMA) for b in self._seen_by}
        self.seen_any: int | None = None
        self.previous: dict[str, pl.DataFrame] = {}
        self.pending_drift = pl.DataFrame(schema={"entity": pl.String, "t": pl.Int64, "__rules": pl.List(pl.UInt32)})
        self._cache: dict[tuple[str, ...], list[pl.Expr]] = {}

    def entity_column(self, rule: Rule) -> str:
        """The column naming a rule's entity."""
        return rule.by or self.by

    # -- inputs ---------------------------------------------------------------------
    def evaluate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Evaluate every window end in ``frame`` in time order; the transitions (TRANSITION_SCHEMA)."""
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
        out = [self._evaluate_at(t, parts[(t,)]) for t in times]
        return pl.concat(out) if len(out) > 1 else out[0]

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
        """Evaluate drift, absence and anti-flap at ``t`` with no new windows (a heartbeat)."""
        self.times = []
        return self._evaluate_at(t, None)

    # -- one evaluation ---------------------------------------------------------------
    def _evaluate_at(self, t: int, rows: pl.DataFrame | None) -> pl.DataFrame:
        t = t if self.last_t is None else max(t, self.last_t)
        self.last_t = t
        self.times.append(t)
        matches: list[pl.DataFrame] = []
        evaluated: list[int] = list(self._drift) + list(self._absence)
        if rows is not None and rows.height:
            rows = self._with_previous(t, rows)
            window_rules = [i for i in self._window if self._evaluable(self.rules[i], rows)]
            evaluated += window_rules
            if window_rules:
                matches.append(self._match(rows, window_rules))
            self._remember(t, rows)
        matches.append(self._drift_matches(t))
        matches.append(self._absence_matches(t))
        found = pl.concat([m for m in matches if m.height] or [pl.DataFrame(schema=_MATCH_SCHEMA)])
        return self._step(t, found, evaluated)

    def _evaluable(self, rule: Rule, rows: pl.DataFrame) -> bool:
        cols = set(rows.columns)
        return self.entity_column(rule) in cols and all(c in cols for c in rule.columns)

    def _match(self, rows: pl.DataFrame, idx: list[int]) -> pl.DataFrame:
        """One expression per rule — the row numbers where it matches — then (rule, entity, value) rows.

        Entities and values are gathered with numpy from the few matching rows; value
        expressions shared by several rules (the same metric) are computed once.
        """
        rules = [self.rules[i] for i in idx]
        hits = rows.select([r.condition().arg_true().implode().alias(str(i)) for i, r in zip(idx, rules, strict=True)])
        long = hits.unpivot(variable_name="rule", value_name="row").explode("row").drop_nulls("row")
        if long.height == 0:
            return pl.DataFrame(schema=_MATCH_SCHEMA)
        rule_no = long["rule"].cast(pl.UInt32).to_numpy()
        row_no = long["row"].cast(pl.Int64).to_numpy()
        value_keys: dict[str, int] = {}
        value_exprs: list[pl.Expr] = []
        entity_keys: dict[str, int] = {}
        vmap = np.zeros(len(self.rules), dtype=np.int64)
        emap = np.zeros(len(self.rules), dtype=np.int64)
        for i, r in zip(idx, rules, strict=True):
            expr = r.value_expr()
            vmap[i] = value_keys.setdefault(str(expr), len(value_keys))
            if vmap[i] == len(value_exprs):
                value_exprs.append(expr)
            emap[i] = entity_keys.setdefault(self.entity_column(r), len(entity_keys))
        values = rows.select([e.alias(f"v{j}") for j, e in enumerate(value_exprs)]).to_numpy().astype(np.float64)
        entities = rows.select(pl.col(c).cast(pl.String).alias(f"e{j}") for j, c in enumerate(entity_keys)).to_numpy()
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
        self.seen_any = t
        for ent in self._seen_by:
            if ent not in rows.columns:
                continue
            now = (
                rows.select(pl.col(ent).cast(pl.String).alias("entity"))
                .unique()
                .with_columns(pl.lit(t, pl.Int64).alias("last"))
            )
            old = self.seen[ent]
            self.seen[ent] = pl.concat([old.join(now, on="entity", how="anti"), now]).filter(
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
            seen = self.seen[self.entity_column(rule)]
            parts.append(
                seen.filter(pl.lit(t) - pl.col("last") >= rule.after_ms).select(
                    pl.lit(i, pl.UInt32).alias("rule"), "entity", ((pl.lit(t) - pl.col("last")) / 1000).alias("value")
                )
            )
        return pl.concat([p.cast(_MATCH_SCHEMA) for p in parts]) if parts else pl.DataFrame(schema=_MATCH_SCHEMA)

    def _step(self, t: int, matches: pl.DataFrame, evaluated: list[int]) -> pl.DataFrame:
        """Advance every alert state by one evaluation at ``t``: one full join, no loop per entity."""
        hits = matches.group_by("rule", "entity").agg(pl.col("value").max().alias("hit_value"))
        joined = (
            self.state.join(hits, on=["rule", "entity"], how="full", coalesce=True)
            .join(self.table, on="rule", how="left")
            .with_columns(
                pl.col("hit_value").is_not_null().alias("hit"),
                pl.col("rule").is_in(pl.Series(evaluated, dtype=pl.UInt32).implode()).alias("evaluated"),
                pl.col("state").fill_null("inactive").alias("old"),
            )
        )
        hit, old = pl.col("hit"), pl.col("old")
        active_at = pl.when(old == "inactive").then(pl.lit(t)).otherwise(pl.col("active_at"))
        new = (
            pl.when(hit & (old == "inactive"))
            .then(pl.when(pl.col("for_ms") == 0).then(pl.lit("firing")).otherwise(pl.lit("pending")))
            .when(hit & (old == "pending"))
            .then(
                pl.when(pl.lit(t) - active_at >= pl.col("for_ms")).then(pl.lit("firing")).otherwise(pl.lit("pending"))
            )
            .when(hit | ~pl.col("evaluated"))
            .then(old)
            .when((old == "firing") & (pl.lit(t) - pl.col("last_match") < pl.col("keep_ms")))
            .then(pl.lit("firing"))
            .when(old == "firing")
            .then(pl.lit("resolved"))
            .otherwise(pl.lit("inactive"))
        )
        stepped = joined.with_columns(
            new.alias("new"),
            active_at.alias("active_at"),
            pl.when(hit).then(pl.lit(t)).otherwise(pl.col("last_match")).alias("last_match"),
            pl.when(hit).then(pl.col("hit_value")).otherwise(pl.col("value")).alias("value"),
        ).with_columns(
            pl.when((pl.col("new") == "firing") & (old != "firing"))
            .then(pl.lit(t))
            .otherwise(pl.col("fired_at"))
            .alias("fired_at")
        )
        changed = stepped.filter(pl.col("new") != old).sort("rule", "entity")
        transitions = changed.select(
            "rule",
            "entity",
            old.alias("from_state"),
            pl.col("new").alias("to_state"),
            pl.lit(t, pl.Int64).alias("at"),
            "active_at",
            "value",
        ).cast(TRANSITION_SCHEMA)
        self.state = (
            stepped.filter(pl.col("new").is_in(["pending", "firing"]))
            .with_columns(pl.col("new").alias("state"))
            .select(list(STATE_SCHEMA))
            .cast(STATE_SCHEMA)
        )
        return transitions

    # -- state ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Alert states and the memory of absence and rate rules (frames are immutable: no aliasing)."""
        return {
            "rules": [r.name for r in self.rules],
            "state": self.state.clone(),
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
        self.state = state["state"].clone()
        self.last_t = state["last_t"]
        self.seen = {k: v.clone() for k, v in state["seen"].items()}
        self.seen_any = state["seen_any"]
        self.previous = {k: v.clone() for k, v in state["previous"].items()}
        self.pending_drift = state["pending_drift"].clone()
