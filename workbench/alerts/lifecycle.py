"""One evaluation of every alert, exactly as Prometheus' alerting rule steps it.

At an evaluation time ``t``, with the series a rule matches (``hits``), each alert
(rule, series) moves — for every alert at once, in one join:

- a match with no active alert starts one: *pending* with ``active_at = t``, or
  *firing* at once when ``for`` is 0 (``t - active_at >= for``);
- a pending alert that matches fires once ``t - active_at >= for``;
- a pending alert that does not match is dropped (*inactive*); ``keep_firing_for``
  never applies to it;
- a firing alert that does not match keeps firing while
  ``t - keep_since < keep_firing_for``, where ``keep_since`` is the *first*
  evaluation that did not match (reset by a match); otherwise it is *resolved*.

This is ``AlertingRule.Eval`` of Prometheus 2.42 (``rules/alerting.go``).

Examples
--------
>>> import polars as pl
>>> table = pl.DataFrame({"rule": [0], "for_ms": [60_000], "keep_ms": [0]}, schema_overrides={"rule": pl.UInt32})
>>> hit = pl.DataFrame({"rule": [0], "entity": ["a"], "hit_value": [95.0]}, schema=HIT_SCHEMA)
>>> state = pl.DataFrame(schema=STATE_SCHEMA)
>>> for t in (0, 60_000):
...     state, tr = step(state, hit, table, t)
...     print(tr.select("from_state", "to_state").row(0))
('inactive', 'pending')
('pending', 'firing')
"""

from __future__ import annotations

import polars as pl

__all__ = ["HIT_SCHEMA", "STATE_SCHEMA", "TRANSITION_SCHEMA", "step"]

STATE_SCHEMA = pl.Schema(
    {
        "rule": pl.UInt32,
        "entity": pl.String,
        "state": pl.String,
        "active_at": pl.Int64,
        "fired_at": pl.Int64,
        "last_match": pl.Int64,
        "keep_since": pl.Int64,
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
HIT_SCHEMA = pl.Schema({"rule": pl.UInt32, "entity": pl.String, "hit_value": pl.Float64})


def step(state: pl.DataFrame, hits: pl.DataFrame, table: pl.DataFrame, t: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The alert states after the evaluation at ``t``, and the transitions it made.

    Parameters
    ----------
    state
        Active (pending and firing) alerts, :data:`STATE_SCHEMA`.
    hits
        One row per (rule, entity) matching at ``t`` with its value, :data:`HIT_SCHEMA`.
    table
        Per rule number: ``for_ms`` and ``keep_ms``.
    t
        The evaluation time (epoch ms).
    """
    if hits.height == 0 and state.height == 0:
        return state, pl.DataFrame(schema=TRANSITION_SCHEMA)
    joined = (
        state.join(hits, on=["rule", "entity"], how="full", coalesce=True)
        .join(table, on="rule", how="left")
        .with_columns(
            pl.col("hit_value").is_not_null().alias("hit"), pl.col("state").fill_null("inactive").alias("old")
        )
    )
    hit, old, now = pl.col("hit"), pl.col("old"), pl.lit(t, pl.Int64)
    active_at = pl.when(old == "inactive").then(now).otherwise(pl.col("active_at"))
    keep_since = (
        pl.when(hit | (old != "firing")).then(pl.lit(None, pl.Int64)).otherwise(pl.coalesce(pl.col("keep_since"), now))
    )
    new = (
        pl.when(hit & (old != "firing"))
        .then(pl.when(now - active_at >= pl.col("for_ms")).then(pl.lit("firing")).otherwise(pl.lit("pending")))
        .when(hit)
        .then(old)
        .when((old == "firing") & (pl.col("keep_ms") > 0) & (now - keep_since < pl.col("keep_ms")))
        .then(pl.lit("firing"))
        .when(old == "firing")
        .then(pl.lit("resolved"))
        .otherwise(pl.lit("inactive"))
    )
    stepped = joined.with_columns(
        new.alias("new"),
        active_at.alias("active_at"),
        keep_since.alias("keep_since"),
        pl.when(hit).then(now).otherwise(pl.col("last_match")).alias("last_match"),
        pl.when(hit).then(pl.col("hit_value")).otherwise(pl.col("value")).alias("value"),
    ).with_columns(
        pl.when((pl.col("new") == "firing") & (old != "firing"))
        .then(now)
        .otherwise(pl.col("fired_at"))
        .alias("fired_at")
    )
    transitions = (
        stepped.filter(pl.col("new") != old)
        .sort("rule", "entity")
        .select(
            "rule",
            "entity",
            old.alias("from_state"),
            pl.col("new").alias("to_state"),
            now.alias("at"),
            "active_at",
            "value",
        )
        .cast(TRANSITION_SCHEMA)
    )
    state = (
        stepped.filter(pl.col("new").is_in(["pending", "firing"]))
        .with_columns(pl.col("new").alias("state"))
        .select(list(STATE_SCHEMA))
        .cast(STATE_SCHEMA)
    )
    return state, transitions
