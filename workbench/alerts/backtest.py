"""Backtesting: run rules over stored window rows with the live code path, and score them.

:func:`backtest` reads window rows from the Parquet lake (``Lake``), feeds them in
window-end order to a fresh :class:`~workbench.alerts.manager.AlertManager` — the very
object the live ``alerts`` node uses — and returns the alert events and notifications
it would have produced, with:

- a **flap score** per rule: extra firing episodes per alert, ``(episodes − alerts) /
  alerts`` (0: each alert fired once; 1: each fired twice on average);
- the **alerts it fired** (:func:`fired_alerts`): rule, labels, start, end and peak value;
- where incident labels exist (the simulator's ``*.labels.json``): **precision**
  (episodes overlapping an incident on their entity, within ``grace`` after its end,
  over all episodes), **recall** (incidents with such an episode over all incidents)
  and **time to detect** (first such episode's start − incident start), per incident
  kind too.

:func:`compare` puts two results side by side (a rule and its changed version).

Examples
--------
>>> import polars as pl, tempfile
>>> from datetime import datetime, UTC
>>> from workbench.alerts.rules import Threshold
>>> from workbench.storage.lake import Lake
>>> lake = Lake(tempfile.mkdtemp())
>>> ends = [datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC) for s in (10, 20, 30, 40)]
>>> _ = lake.write("windows", pl.DataFrame({"host": ["a"] * 4, "window_start": ends, "window_end": ends,
...                                          "cpu_mean": [95.0, 10.0, 95.0, 10.0]}), epoch=1)
>>> result = backtest([Threshold("hot", metric="cpu_mean", value=90)], lake, evaluation_interval="10s")
>>> result.summary().select("rule", "alerts", "episodes", "flap_score").row(0)
('hot', 1, 2, 1.0)
>>> result.fired.select("rule", "entity", "start", "peak").rows()[0]
('hot', 'a', datetime.datetime(2024, 1, 1, 0, 0, 10, tzinfo=zoneinfo.ZoneInfo(key='UTC')), 95.0)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from workbench.alerts.dispatch import Inhibit, Route
from workbench.alerts.events import EVENT_SCHEMA
from workbench.alerts.loader import AlertConfig, load_config
from workbench.alerts.manager import AlertManager
from workbench.alerts.rules import RateOfChange, Rule, Threshold
from workbench.config import parse_duration
from workbench.errors import ConfigError
from workbench.storage.lake import Lake

__all__ = ["BacktestResult", "backtest", "compare", "episodes", "fired_alerts", "load_labels"]

TS = pl.Datetime("ms", "UTC")


def load_labels(path: str | Path) -> pl.DataFrame:
    """Incidents from a simulator ``*.labels.json`` (incident_id, kind, entity, start, end)."""
    rows = json.loads(Path(path).read_text())
    frame = pl.DataFrame(rows, schema_overrides={"start": pl.String, "end": pl.String}) if rows else None
    if frame is None:
        return pl.DataFrame(
            schema={"incident_id": pl.String, "kind": pl.String, "entity": pl.String, "start": TS, "end": TS}
        )
    return frame.select(
        "incident_id",
        "kind",
        pl.col("entity").cast(pl.String),
        pl.col("start").str.to_datetime(time_zone="UTC").dt.cast_time_unit("ms"),
        pl.col("end").str.to_datetime(time_zone="UTC").dt.cast_time_unit("ms"),
    )


def episodes(events: pl.DataFrame, *, until: datetime | None = None) -> pl.DataFrame:
    """Firing episodes (rule, fingerprint, entity, start, end) from alert events; ``end`` null while open."""
    fired = events.filter(pl.col("to_state") == "firing").select(
        "rule", "fingerprint", "entity", pl.col("at").alias("start")
    )
    ended = events.filter(pl.col("from_state") == "firing").select("fingerprint", pl.col("at").alias("end"))
    if fired.height == 0:
        return pl.DataFrame(
            schema={"rule": pl.String, "fingerprint": pl.String, "entity": pl.String, "start": TS, "end": TS}
        )
    fired = fired.sort("fingerprint", "start").with_columns(pl.int_range(pl.len()).over("fingerprint").alias("n"))
    ended = ended.sort("fingerprint", "end").with_columns(pl.int_range(pl.len()).over("fingerprint").alias("n"))
    out = fired.join(ended, on=["fingerprint", "n"], how="left").drop("n")
    return out.sort("start", "fingerprint")


def fired_alerts(
    events: pl.DataFrame, frame: pl.DataFrame, rules: Sequence[Rule], *, by: str = "host", time: str = "window_end"
) -> pl.DataFrame:
    """The alerts that fired: one row per firing episode, with its labels and peak value.

    Columns: ``rule``, ``entity``, ``labels`` (JSON, as the events carry them), ``start``,
    ``end`` (null while still firing at the end) and ``peak``: the most extreme value of
    the rule's matching window rows of that entity from ``start`` to ``end`` (the largest,
    or for ``<``/``<=`` thresholds the smallest); for rules not read from window columns
    (absence, drift, rate) the value at firing. Rows are matched to episodes by entity.
    """
    firing = events.filter(pl.col("to_state") == "firing").select(
        "fingerprint", pl.col("at").alias("start"), "labels", pl.col("value").alias("at_firing")
    )
    eps = episodes(events).join(firing, on=["fingerprint", "start"], how="left").with_row_index("__episode")
    parts = []
    for rule in rules:
        mine = eps.filter(pl.col("rule") == rule.name)
        if mine.height == 0:
            continue
        peak = pl.lit(None, pl.Float64).alias("peak")
        readable = rule.source == "windows" and not isinstance(rule, RateOfChange)
        if readable and frame.height and all(c in frame.columns for c in (*rule.columns, by, time)):
            lowest = isinstance(rule, Threshold) and rule.op in ("<", "<=")
            rows = (
                frame.filter(rule.condition())
                .select(
                    pl.col(by).cast(pl.String).alias("entity"), pl.col(time).alias("__t"), rule.value_expr().alias("v")
                )
                .sort("__t")
            )
            hits = rows.join_asof(
                mine.select("__episode", "entity", "start", "end").sort("start"),
                left_on="__t",
                right_on="start",
                by="entity",
                strategy="backward",
                check_sortedness=False,  # both sorted above, on the whole column
            ).filter(pl.col("__episode").is_not_null() & (pl.col("end").is_null() | (pl.col("__t") <= pl.col("end"))))
            agg = pl.col("v").min() if lowest else pl.col("v").max()
            mine = mine.join(hits.group_by("__episode").agg(agg.alias("peak")), on="__episode", how="left")
        else:
            mine = mine.with_columns(peak)
        parts.append(mine.with_columns(pl.coalesce("peak", "at_firing").alias("peak")))
    schema: dict[str, pl.DataType] = {
        "rule": pl.String(),
        "entity": pl.String(),
        "labels": pl.String(),
        "start": TS,
        "end": TS,
        "peak": pl.Float64(),
    }
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).sort("start", "rule", "entity").select(list(schema))


@dataclass
class BacktestResult:
    """What a rule set would have done over a stretch of history."""

    name: str
    rules: list[Rule]
    events: pl.DataFrame
    notifications: list[dict[str, Any]]
    labels: pl.DataFrame | None = None
    grace_ms: int = 60_000
    windows: int = 0
    seconds: float = 0.0
    fired: pl.DataFrame | None = None
    episodes: pl.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.episodes = episodes(self.events)

    def _matched(self) -> pl.DataFrame:
        """Episode × incident pairs on the same entity that overlap (within grace after the end)."""
        assert self.labels is not None
        eps = self.episodes.with_columns(pl.col("end").fill_null(pl.datetime(9999, 1, 1, time_zone="UTC")))
        pairs = eps.join(self.labels, on="entity", how="inner", suffix="_inc")
        grace = pl.duration(milliseconds=self.grace_ms)
        return pairs.filter((pl.col("start") <= pl.col("end_inc") + grace) & (pl.col("end") >= pl.col("start_inc")))

    def summary(self) -> pl.DataFrame:
        """One row per rule: alerts, episodes, flap score, and precision / mean TTD when labelled."""
        eps = self.episodes
        per = pl.DataFrame({"rule": [r.name for r in self.rules]}).join(
            eps.group_by("rule").agg(
                pl.col("fingerprint").n_unique().alias("alerts"), pl.len().cast(pl.Int64).alias("episodes")
            ),
            on="rule",
            how="left",
        )
        per = per.with_columns(pl.col("alerts").fill_null(0), pl.col("episodes").fill_null(0))
        per = per.with_columns(
            pl.when(pl.col("alerts") > 0)
            .then((pl.col("episodes") - pl.col("alerts")) / pl.col("alerts"))
            .otherwise(0.0)
            .alias("flap_score")
        )
        if self.labels is None:
            return per
        m = self._matched()
        tp = m.select("rule", "fingerprint", "start").unique().group_by("rule").agg(pl.len().alias("true_episodes"))
        ttd = (
            m.group_by("rule", "incident_id")
            .agg(((pl.col("start") - pl.col("start_inc")).min().dt.total_milliseconds() / 1000).alias("ttd"))
            .group_by("rule")
            .agg(pl.col("ttd").clip(lower_bound=0).mean().alias("mean_ttd_s"), pl.len().alias("incidents_hit"))
        )
        per = per.join(tp, on="rule", how="left").join(ttd, on="rule", how="left")
        return per.with_columns(
            pl.when(pl.col("episodes") > 0)
            .then(pl.col("true_episodes").fill_null(0) / pl.col("episodes"))
            .otherwise(None)
            .alias("precision")
        ).drop("true_episodes")

    def overall(self) -> dict[str, Any]:
        """Totals for the rule set: alerts, episodes, flap score; precision, recall, mean TTD when labelled."""
        eps = self.episodes
        alerts = eps["fingerprint"].n_unique() if eps.height else 0
        out: dict[str, Any] = {
            "name": self.name,
            "windows": self.windows,
            "events": self.events.height,
            "notifications": len(self.notifications),
            "alerts": alerts,
            "episodes": eps.height,
            "flap_score": (eps.height - alerts) / alerts if alerts else 0.0,
        }
        if self.labels is not None:
            m = self._matched()
            true_eps = m.select("fingerprint", "start").unique().height
            hit = m["incident_id"].n_unique() if m.height else 0
            ttd = m.group_by("incident_id").agg(((pl.col("start") - pl.col("start_inc")).min()).alias("d"))
            out.update(
                precision=true_eps / eps.height if eps.height else None,
                recall=hit / self.labels.height if self.labels.height else None,
                incidents=self.labels.height,
                detected=hit,
                mean_ttd_s=(
                    float(ttd["d"].dt.total_milliseconds().clip(lower_bound=0).mean()) / 1000  # type: ignore[arg-type]
                    if ttd.height
                    else None
                ),
            )
        return out

    def by_kind(self) -> pl.DataFrame:
        """Per incident kind: incidents, detected, mean time to detect (labels needed)."""
        if self.labels is None:
            raise ConfigError(f"backtest {self.name!r}: by_kind needs incident labels")
        m = self._matched()
        first = m.group_by("incident_id").agg(((pl.col("start") - pl.col("start_inc")).min()).alias("d"))
        return (
            self.labels.join(first, on="incident_id", how="left")
            .group_by("kind")
            .agg(
                pl.len().alias("incidents"),
                pl.col("d").is_not_null().sum().alias("detected"),
                (pl.col("d").dt.total_milliseconds().clip(lower_bound=0).mean() / 1000).alias("mean_ttd_s"),
            )
            .sort("kind")
        )


def _read(lake: Lake, output: str, start: datetime | None, end: datetime | None, time: str) -> pl.DataFrame:
    if output not in lake.outputs():
        raise ConfigError(f"backtest: lake {lake.root} has no output {output!r}; outputs: {lake.outputs()}")
    where = []
    if start is not None:
        where.append(f"{time} >= TIMESTAMPTZ '{start.isoformat()}'")
    if end is not None:
        where.append(f"{time} < TIMESTAMPTZ '{end.isoformat()}'")
    sql = f"select * from {output}" + (" where " + " and ".join(where) if where else "")
    frame = lake.query(sql)
    if frame.height and isinstance(frame.schema[time], pl.Datetime):
        frame = frame.with_columns(pl.col(time).dt.convert_time_zone("UTC").dt.cast_time_unit("ms"))
    # the order a live run emitted them in: window end, then (stable) file order
    return frame.sort(time, maintain_order=True) if frame.height else frame


def backtest(
    rules: Sequence[Rule] | AlertConfig | str | Path,
    lake: Lake | str | Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    output: str = "windows",
    labels: pl.DataFrame | str | Path | None = None,
    routes: Sequence[Route] | None = None,
    inhibit: Sequence[Inhibit] = (),
    by: str = "host",
    time: str = "window_end",
    grace: str | float = "1m",
    batch_windows: int = 64,
    name: str = "rules",
    evaluation_interval: str | float | None = None,
) -> BacktestResult:
    """Run ``rules`` over the window rows of ``lake`` between ``start`` and ``end``.

    Rows are fed ``batch_windows`` window ends at a time (results do not depend on it:
    evaluation runs on the rules' evaluation clock, and is property-tested so).
    ``evaluation_interval`` defaults to the rules file's (1 m).
    """
    import time as _time

    if isinstance(rules, str | Path):
        name = Path(rules).stem if name == "rules" else name
        rules = load_config(rules)
    if isinstance(rules, AlertConfig):
        routes = routes if routes is not None else (list(rules.routes) or None)
        inhibit = inhibit or rules.inhibit
        evaluation_interval = evaluation_interval or rules.evaluation_interval
        rules = list(rules.rules)
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    if isinstance(labels, str | Path):
        labels = load_labels(labels)
    frame = _read(lake, output, start, end, time)
    manager = AlertManager(
        rules,
        routes=routes,
        inhibit=inhibit,
        by=by,
        time=time,
        history=10_000_000,
        evaluation_interval=evaluation_interval or "1m",
    )
    t0 = _time.perf_counter()
    parts: list[pl.DataFrame] = []
    n_windows = 0
    if frame.height:
        ends = frame[time].unique(maintain_order=True)
        n_windows = ends.len()
        bucket = pl.Series(range(n_windows)) // batch_windows
        key = pl.DataFrame({time: ends, "__b": bucket})
        for (_,), part in (
            frame.join(key, on=time, how="left", maintain_order="left")
            .partition_by("__b", as_dict=True, include_key=False, maintain_order=True)
            .items()
        ):
            parts.append(manager.process(part))
    events = pl.concat(parts) if parts else pl.DataFrame(schema=EVENT_SCHEMA)
    return BacktestResult(
        name,
        list(rules),
        events,
        list(manager.notifications),
        labels=labels,
        grace_ms=parse_duration(grace, what="backtest grace"),
        windows=n_windows,
        seconds=_time.perf_counter() - t0,
        fired=fired_alerts(events, frame, list(rules), by=by, time=time),
    )


def compare(a: BacktestResult, b: BacktestResult) -> pl.DataFrame:
    """Two results side by side: one row per overall measure, then per rule."""
    oa, ob = a.overall(), b.overall()
    na, nb = a.name, (b.name if b.name != a.name else f"{b.name} (2)")
    rows = [{"measure": k, na: str(oa.get(k)), nb: str(ob.get(k))} for k in oa if k != "name"]
    sa, sb = a.summary(), b.summary()
    for rule in sorted(set(sa["rule"]) | set(sb["rule"])):
        for col in [c for c in sa.columns if c != "rule"]:
            va = sa.filter(pl.col("rule") == rule)[col].to_list() if col in sa.columns else []
            vb = sb.filter(pl.col("rule") == rule)[col].to_list() if col in sb.columns else []
            rows.append({"measure": f"{rule}.{col}", na: str(va[0]) if va else "-", nb: str(vb[0]) if vb else "-"})
    return pl.DataFrame(rows, schema={"measure": pl.String, na: pl.String, nb: pl.String})
