"""``workbench bench models``: detect the simulator's labelled incidents with score nodes.

For each schema, a seeded simulator lays one incident of every applicable kind into
each of ``cycles`` ten-minute cycles after a ``warmup`` (the models' learning time),
with the usual duplicates, bad and late records. The pipeline decodes, validates and
de-duplicates, windows per entity kind that incidents target (hosts and services for
server metrics, countries for user events, source and destination addresses for
network flows) and scores each window stream with a score node; detections are
matched to the labels (:func:`~workbench.evaluate.events.evaluate_events`).

The result, per incident class: detected/total, precision (against the false-positive
episodes of the score nodes that watch that class's entities), recall and mean
time-to-detect; per schema: events/s through the whole pipeline.

Examples
--------
>>> [(p.by, p.features) for p in PLANS["server_metrics"]]
[('host', ('cpu_mean', 'mem_mean', 'count')), ('service', ('latency_p95', 'error_rate'))]

``bench_models(schemas=("server_metrics",), rate=200, hosts=6, cycles=1)`` runs in
about ten seconds (``tests/test_bench_models.py`` does).
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from workbench.config import parse_duration
from workbench.errors import ConfigError
from workbench.evaluate.events import evaluate_events
from workbench.models.threshold import AdaptiveThreshold
from workbench.native import context as native_context
from workbench.operators.aggregations import default_aggs
from workbench.operators.windows import Tumbling
from workbench.pipeline import Pipeline
from workbench.schema import get_schema
from workbench.sources.simulator import INCIDENT_CYCLE, Simulator
from workbench.sources.simulator.incidents import KINDS, kinds_for, schedule

__all__ = ["PLANS", "ScorePlan", "bench_models", "cpu_per_value", "format_cpu_table", "format_table"]


@dataclass(frozen=True)
class ScorePlan:
    """One score node of the benchmark: windows per ``by``, scored on ``features``."""

    by: str
    features: tuple[str, ...]
    fill: dict[str, float] | None = None
    shared: bool = False
    where: pl.Expr | None = None
    params: tuple[tuple[str, Any], ...] = ()  # detector arguments for this node (over the bench's)
    floor: float | None = None  # threshold floor (default: the detector's catalogue threshold)


#: The score nodes per schema: one per entity kind its incidents target.
PLANS: dict[str, tuple[ScorePlan, ...]] = {
    "server_metrics": (
        ScorePlan("host", ("cpu_mean", "mem_mean", "count"), {"count": 0}),
        ScorePlan("service", ("latency_p95", "error_rate")),
    ),
    "user_events": (ScorePlan("country", ("count", "error_rate")),),
    "network_flows": (
        # a scanner is unusual among all sources (it may never have been seen before)
        # (its median and MAD over all sources recomputed once a window, not every 10 rows;
        # the floor is high: a busy internal host uses ten ports where most sources use one)
        ScorePlan("src_ip", ("dst_ports",), shared=True, params=(("refresh", 200),), floor=0.97),
        # a destination's traffic against its own past, where it has enough flows to judge
        ScorePlan("dst_ip", ("bytes_sum",), where=pl.col("flows") >= 20),
    ),
}
_START = datetime(2024, 1, 1, tzinfo=UTC)


def _keep_detections(held: list[pl.DataFrame], frame: pl.DataFrame) -> None:
    held.append(frame.filter(pl.col("is_anomaly")))


def _run_schema(
    schema: str,
    *,
    rate: float,
    hosts: int,
    cycles: int,
    warmup_ms: int,
    window: str,
    detector: str,
    params: dict[str, Any],
    skip_anomalies: int,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    sim0 = Simulator(schema, hosts=hosts, rate=rate, seed=seed)
    origin = _START + timedelta(milliseconds=warmup_ms)
    incidents = [
        inc
        for c in range(cycles)
        for inc in schedule(
            schema, sim0.fleet.entities, start=origin, span=INCIDENT_CYCLE, rate=rate, seed=seed, cycle=c
        )
    ]
    seconds = warmup_ms / 1000 + cycles * INCIDENT_CYCLE.total_seconds()
    sim = Simulator(
        schema, hosts=hosts, rate=rate, seed=seed, incidents=incidents, limit=int(rate * seconds), max_rows=20_000
    )
    s = get_schema(schema)
    pipe = Pipeline(sim, name=f"bench-models-{schema}")
    clean = pipe.head.decode(s).validate(s).dedupe(s.key, time=s.time, ttl="2m")
    detections: dict[str, list[pl.DataFrame]] = {}
    nodes = []
    for plan in PLANS[schema]:
        windows = clean.window(Tumbling(window), by=plan.by, aggs=default_aggs(schema), time=s.time, lateness="5s")
        node = windows.score(
            detector,
            features=list(plan.features),
            by=plan.by,
            fill=plan.fill,
            shared=plan.shared,
            where=plan.where,
            skip_anomalies=skip_anomalies,
            seed=seed,
            params={**params, **dict(plan.params)},
            threshold=None if plan.floor is None else AdaptiveThreshold(floor=plan.floor),
            name=f"score_{plan.by}",
        )
        nodes.append(node)
        held: list[pl.DataFrame] = []
        detections[plan.by] = held
        pipe.output(f"scores_{plan.by}", node)
        pipe.subscribe(f"scores_{plan.by}", functools.partial(_keep_detections, held))
    t0 = time.perf_counter()
    pipe.run()
    elapsed = time.perf_counter() - t0
    ingested = pipe.counts()["ingested"]
    labels = sim.labels
    rows = []
    for plan in PLANS[schema]:
        kinds = [k for k in kinds_for(schema) if KINDS[k][schema] == plan.by]
        if not kinds:
            continue
        empty = pl.DataFrame(schema={plan.by: pl.String, "window_end": pl.Datetime("ms", "UTC")})
        found = pl.concat(detections[plan.by]) if detections[plan.by] else empty
        report = evaluate_events(found, labels.filter(pl.col("kind").is_in(kinds)), by=plan.by, grace=window)
        for r in report.summary().filter(pl.col("kind") != "all").iter_rows(named=True):
            rows.append({"schema": schema, "entity": plan.by, **r})
    run = {
        "schema": schema,
        "events": ingested,
        "seconds": round(elapsed, 3),
        "events_per_s": round(ingested / elapsed) if elapsed else None,
        "window_rows_scored": sum(n.metrics.rows_in for n in nodes),
        "entities": {n.name: n.state_size for n in nodes},
        "drift_events": sum(n.drift_count for n in nodes),
    }
    pipe.close()
    return rows, run


def bench_models(
    *,
    schemas: tuple[str, ...] = ("server_metrics", "user_events", "network_flows"),
    rate: float = 1_000.0,
    hosts: int = 20,
    cycles: int = 3,
    warmup: str = "5m",
    window: str = "10s",
    detector: str = "robust_z",
    params: dict[str, Any] | None = None,
    skip_anomalies: int = 30,
    seed: int = 0,
) -> dict[str, Any]:
    """Simulate labelled streams, score them with score nodes, report detection per incident class.

    Parameters
    ----------
    schemas
        Which simulated streams to run.
    rate, hosts, seed
        Simulator settings (events per second of event time, fleet size, seed).
    cycles
        Ten-minute cycles, each with one incident of every kind the schema has.
    warmup
        Event time before the first cycle (the models learn; no incident).
    window
        Tumbling window size; also the grace after an incident's end.
    detector
        A name in :data:`workbench.models.catalog.DETECTORS`.
    params
        Its arguments; default for ``robust_z``: ``holdoff=10`` (its NAB default, 500
        rows, is 83 minutes of 10 s windows: an incident would damp the next one's scores).
    skip_anomalies
        Consecutive anomalous rows not learned (see :class:`~workbench.models.scoring.Scorer`):
        an incident does not widen the spread the next one is measured against.
    """
    if params is None:
        params = {"holdoff": 10} if detector == "robust_z" else {}
    unknown = [s for s in schemas if s not in PLANS]
    if unknown:
        raise ConfigError(f"bench models: unknown schemas {unknown}; choose from {sorted(PLANS)}")
    if cycles < 1:
        raise ConfigError(f"bench models: cycles must be >= 1, not {cycles}")
    warmup_ms = parse_duration(warmup, what="warmup")
    classes, runs = [], []
    for schema in schemas:
        rows, run = _run_schema(
            schema,
            rate=rate,
            hosts=hosts,
            cycles=cycles,
            warmup_ms=warmup_ms,
            window=window,
            detector=detector,
            params=params,
            skip_anomalies=skip_anomalies,
            seed=seed,
        )
        classes += rows
        runs.append(run)
    return {
        "detector": detector,
        "params": params,
        "skip_anomalies": skip_anomalies,
        "settings": {"rate": rate, "hosts": hosts, "cycles": cycles, "warmup": warmup, "window": window, "seed": seed},
        "classes": classes,
        "runs": runs,
        "all_detected": all(r["detected"] > 0 for r in classes),
    }


def format_table(report: dict[str, Any]) -> str:
    """The per-class table as Markdown."""
    lines = [
        "| schema | incident class | entity | detected/total | precision | recall | mean TTD (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["classes"]:
        ttd = "–" if r["mean_ttd_s"] is None else f"{r['mean_ttd_s']:.1f}"
        precision = "–" if r["precision"] is None else f"{r['precision']:.2f}"
        lines.append(
            f"| {r['schema']} | {r['kind']} | {r['entity']} | {r['detected']}/{r['total']} | {precision} | "
            f"{r['recall']:.2f} | {ttd} |"
        )
    lines += [
        "",
        "| schema | events | seconds | events/s | window rows scored | drift events |",
        "|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        lines.append(
            f"| {run['schema']} | {run['events']:,} | {run['seconds']} | {run['events_per_s']:,} | "
            f"{run['window_rows_scored']:,} | {run['drift_events']} |"
        )
    return "\n".join(lines)


def _river_hst() -> Any:
    """River's HalfSpaceTrees behind a MinMaxScaler (the baseline of the CPU table)."""
    from river import anomaly, preprocessing

    return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=0)


def _time_streams(name: str, values: Any, warm: int) -> float:
    """CPU µs per value of one ``name`` detector per row of ``values`` (streams × rows), after ``warm`` rows."""
    from workbench.models.catalog import DETECTORS

    n, total = values.shape
    if name == "river_hst":
        models = [_river_hst() for _ in range(n)]
    else:
        models = [DETECTORS["context" if name == "context_python" else name]() for _ in range(n)]
    for i in range(warm):
        for b in range(n):
            x = {"value": float(values[b, i])}
            models[b].score_one(x)
            models[b].learn_one(x)
    xs = [[{"value": float(v)} for v in values[:, i]] for i in range(warm, total)]
    t0 = time.process_time()
    for row in xs:
        for model, x in zip(models, row, strict=True):
            model.score_one(x)
            model.learn_one(x)
    return (time.process_time() - t0) / (n * (total - warm)) * 1e6


def cpu_per_value(
    *,
    detectors: tuple[str, ...] = ("context", "river_hst"),
    streams: tuple[int, ...] = (1, 100),
    warm: int = 100,
    rows: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """CPU per value of detectors scoring ``streams`` streams side by side, in one process.

    Each of ``n`` streams (a seeded daily-like wave with noise, its own phase and scale) has
    its own detector, as a score node gives each entity one; every stream first learns
    ``warm`` rows (not timed), then ``rows`` rows are scored and learned (test-then-train)
    round-robin across the streams, timed with the process's CPU clock. ``river_hst`` is
    river's ``MinMaxScaler() | HalfSpaceTrees()``; ``context_python`` is the ``context``
    detector on its pure-Python memory (the reference its C kernel replaces, see
    :mod:`workbench.native.context`); other names are catalogue detectors.
    ``ratio`` is a case's µs per value over ``river_hst``'s for the same streams; ``fleet``
    is the CPU seconds 10,000 entities × 10 metrics (100,000 values) would take per window
    at the largest batch's cost.
    """
    import numpy as np

    from workbench.models.catalog import DETECTORS

    if warm < 0 or rows < 1 or not streams or min(streams) < 1:
        raise ConfigError(f"bench models: cpu needs warm >= 0, rows >= 1, streams >= 1; not {warm}, {rows}, {streams}")
    extra = ("river_hst", "context_python")
    unknown = [d for d in detectors if d not in extra and d not in DETECTORS]
    if unknown:
        raise ConfigError(f"bench models: unknown detectors {unknown}; choose from {[*sorted(DETECTORS), *extra]}")
    cases: list[dict[str, Any]] = []
    for n in streams:
        rng = np.random.default_rng(seed)
        t = np.arange(warm + rows)
        phase, scale = rng.uniform(0, 2 * np.pi, (n, 1)), rng.uniform(1, 100, (n, 1))
        values = scale * (1 + 0.3 * np.sin(2 * np.pi * t / 144 + phase) + 0.05 * rng.normal(size=(n, warm + rows)))
        for name in detectors:
            with native_context.disabled() if name == "context_python" else contextlib.nullcontext():
                us = _time_streams(name, values, warm)
            cases.append({"detector": name, "streams": n, "values": n * rows, "us_per_value": round(us, 1)})
    base = {c["streams"]: c["us_per_value"] for c in cases if c["detector"] == "river_hst"}
    for c in cases:
        c["ratio"] = round(c["us_per_value"] / base[c["streams"]], 2) if base.get(c["streams"]) else None
    largest = max(streams)
    fleet = {c["detector"]: round(c["us_per_value"] * 100_000 / 1e6, 2) for c in cases if c["streams"] == largest}
    return {"warm": warm, "rows": rows, "seed": seed, "cases": cases, "fleet_cpu_s_per_window": fleet}


def format_cpu_table(report: dict[str, Any]) -> str:
    """The CPU-per-value table and the fleet figure as Markdown."""
    lines = ["| detector | streams | values timed | µs CPU per value | × river HST |", "|---|---|---|---|---|"]
    for c in report["cases"]:
        ratio = "–" if c["ratio"] is None else f"{c['ratio']:.2f}"
        lines.append(f"| {c['detector']} | {c['streams']:,} | {c['values']:,} | {c['us_per_value']:,} | {ratio} |")
    lines.append("")
    for name, seconds in report["fleet_cpu_s_per_window"].items():
        lines.append(
            f"fleet, {name}: 10,000 entities × 10 metrics = {seconds:,} s CPU per window "
            f"({seconds / 10:.2f} cores for 10 s windows)"
        )
    return "\n".join(lines)
