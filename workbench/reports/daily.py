"""What the daily report notebook shows, computed from a lake: summary, incidents, alerts, detector quality.

The notebook (``notebooks/reports/daily-report.ipynb``) only calls these and displays
the results. Everything reads the lake with DuckDB or polars within one time range
``[start, end)``; optional outputs (``labels``: the simulator's incidents, ``hosts``:
host → service, ``alerts``) are used when the lake has them and said to be absent
when it does not.

Detector quality is measured at the level of (host, window) rows against the
labelled incidents: a row is *labelled* when its window overlaps an incident of its
host (or of its host's service, when the lake knows the services); a rule *flags* a
row when the host is a fleet outlier in that window — the robust z-score
``(x - median) / (1.4826 · MAD)`` across hosts of any of the rule's metrics at or
above the threshold (the views' anomaly overlay).

Examples
--------
>>> import tempfile
>>> lake = simulate_lake(tempfile.mkdtemp(), events=6_000, hosts=8, seed=2)
>>> report = DailyReport(lake)
>>> sorted(report.lake.outputs())
['dead_letter', 'hosts', 'labels', 'late', 'windows']
>>> report.summary()["hosts"][0]
8
>>> report.incidents().height > 0, report.alerts() is None
(True, True)
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from workbench import clock
from workbench.errors import ConfigError
from workbench.reports.frozen import time_filter
from workbench.storage.lake import Lake

__all__ = ["METRICS", "DailyReport", "parse_time", "simulate_lake", "table"]

#: Metrics the fleet-outlier rule looks at, when the windows have them.
METRICS = ("cpu_mean", "mem_mean", "latency_p95", "error_rate")


def parse_time(value: str | datetime | None, *, what: str = "time") -> datetime | None:
    """An aware datetime from ISO-8601 text (see :func:`workbench.clock.parse_time`); ``what`` names a report field.

    >>> parse_time("2024-01-01", what="start")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: report start: expected ISO-8601 with a UTC offset (...), not '2024-01-01'
    """
    return clock.parse_time(value, what=f"report {what}")


def simulate_lake(
    lake: str | Path, *, events: int = 50_000, seed: int = 0, hosts: int = 20, rate: float = 20.0, window: str = "1m"
) -> Path:
    """Simulate ``events`` events, replay them into the lake ``lake``, and add their ground truth.

    The lake gets ``windows``, ``dead_letter`` and ``late`` (as ``workbench replay``
    writes them), ``labels`` (the incidents) and ``hosts`` (host → service, region).
    """
    from workbench.pipeline.replay import replay, window_spec
    from workbench.sources.simulator import Simulator, write_simulation

    lake = Path(lake)
    with tempfile.TemporaryDirectory(prefix="wb-sim-") as tmp:
        path = Path(tmp) / "events.jsonl"
        write_simulation(path, events=events, seed=seed, hosts=hosts, rate=rate)
        replay(path, lake, spec=window_spec(window), lateness="10s")
        labels = pl.read_json(path.with_name("events.labels.json")) if events else pl.DataFrame()
    store = Lake(lake, partition=False)
    if labels.height:
        labels = labels.with_columns(
            pl.col("start", "end").str.to_datetime(time_zone="UTC", time_unit="ms"),
        )
        store.write("labels", labels, epoch=1, time="start")
    fleet = Simulator("server_metrics", hosts=hosts, seed=seed).fleet
    mapping = pl.DataFrame({"host": list(fleet.hosts), "service": list(fleet.services), "region": list(fleet.regions)})
    store.write("hosts", mapping, epoch=1)
    return lake


def table(frame: pl.DataFrame, *, rows: int = 50) -> Any:
    """An HTML table of ``frame`` for a notebook output (no index, at most ``rows`` rows)."""
    from IPython.display import HTML

    shown = frame.head(rows)
    tz = [c for c, t in shown.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    shown = shown.with_columns(pl.col(tz).dt.strftime("%Y-%m-%d %H:%M:%S"))
    html = shown.to_pandas().to_html(
        index=False, border=0, classes="wb-table", na_rep="–", float_format="{:,.3g}".format
    )
    more = f"<p><em>{frame.height - rows:,} more rows not shown.</em></p>" if frame.height > rows else ""
    return HTML(html + more)


class DailyReport:
    """The report's numbers over ``[start, end)`` of one lake.

    Parameters
    ----------
    lake
        Lake folder (or :class:`~workbench.storage.lake.Lake`).
    start, end
        Aware datetimes or ISO-8601 text; ``None`` or ``""`` is unbounded.
    """

    def __init__(self, lake: str | Path | Lake, *, start: Any = None, end: Any = None) -> None:
        self.lake = lake if isinstance(lake, Lake) else Lake(lake)
        self.start = parse_time(start, what="start")
        self.end = parse_time(end, what="end")
        if self.start and self.end and self.start >= self.end:
            raise ConfigError(f"report: start must be before end, not {self.start} >= {self.end}")
        if "windows" not in self.lake.outputs():
            raise ConfigError(
                f"report: lake {str(self.lake.root)!r} has no 'windows' output; outputs: {self.lake.outputs()}"
            )
        self.windows = time_filter(self.lake.read("windows"), "window_start", self.start, self.end).sort(
            "window_start", "host"
        )
        if self.windows.height == 0:
            raise ConfigError(f"report: no windows in {str(self.lake.root)!r} between {self.start} and {self.end}")

    def _optional(self, output: str) -> pl.DataFrame | None:
        return self.lake.read(output) if output in self.lake.outputs() else None

    @property
    def span(self) -> tuple[datetime, datetime]:
        """First window start and last window end in range."""
        return self.windows["window_start"].min(), self.windows["window_end"].max()  # type: ignore[return-value]

    def headline(self) -> str:
        """One Markdown paragraph: the range, the lake, the volume."""
        first, last = self.span
        s = self.summary().row(0, named=True)
        return (
            f"**{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC** from the lake `{self.lake.root}`: "
            f"{s['events']:,} events in {s['windows']:,} host windows over {s['hosts']} hosts; "
            f"{s['dead_letters']:,} dead letters, {s['late']:,} late events."
        )

    def summary(self) -> pl.DataFrame:
        """One row: windows, hosts, events, mean error rate, p95 latency, dead letters, late events."""
        w = self.windows
        dead = self._optional("dead_letter")
        late = self._optional("late")
        late = time_filter(late, "ts", self.start, self.end) if late is not None else None
        return pl.DataFrame(
            {
                "windows": [w.height],
                "hosts": [w["host"].n_unique()],
                "events": [int(w["count"].sum()) if "count" in w.columns else None],
                "error_rate": [float(w["error_rate"].mean()) if "error_rate" in w.columns else None],  # type: ignore[arg-type]
                "latency_p95_ms": [float(w["latency_p95"].quantile(0.95)) if "latency_p95" in w.columns else None],  # type: ignore[arg-type]
                "dead_letters": [dead.height if dead is not None else 0],
                "late": [late.height if late is not None else 0],
            }
        )

    def worst_hosts(self, metric: str = "cpu_mean", n: int = 10) -> pl.DataFrame:
        """The ``n`` hosts with the highest peak ``metric``, with their mean and windows."""
        if metric not in self.windows.columns:
            raise ConfigError(f"report: no metric {metric!r} in the windows; metrics: {self.windows.columns}")
        return (
            self.windows.group_by("host")
            .agg(
                pl.col(metric).max().alias(f"{metric}_peak"),
                pl.col(metric).mean().alias(f"{metric}_mean"),
                pl.col("window_start").get(pl.col(metric).arg_max()).alias("peak_window"),
                pl.len().alias("windows"),
            )
            .sort(f"{metric}_peak", descending=True)
            .head(n)
        )

    def _hosts_of(self) -> pl.DataFrame | None:
        hosts = self._optional("hosts")
        return (
            hosts.select("host", "service") if hosts is not None and {"host", "service"} <= set(hosts.columns) else None
        )

    def incidents(self) -> pl.DataFrame | None:
        """Labelled incidents overlapping the range, with the host windows they touch (None: no labels)."""
        labels = self._optional("labels")
        if labels is None:
            return None
        first, last = self.span
        labels = labels.filter((pl.col("end") > first) & (pl.col("start") < last)).sort("start")
        touched = self._labelled().group_by("incident_id").agg(pl.len().alias("host_windows"))
        return (
            labels.join(touched, on="incident_id", how="left")
            .with_columns(
                pl.col("host_windows").fill_null(0),
                ((pl.col("end") - pl.col("start")).dt.total_seconds()).alias("seconds"),
            )
            .select("incident_id", "kind", "entity", "start", "end", "seconds", "detail", "host_windows")
        )

    def _labelled(self) -> pl.DataFrame:
        """(host, window_start, incident_id) of every window overlapping an incident of its host or service."""
        labels = self._optional("labels")
        keys = self.windows.select("host", "window_start", "window_end")
        if labels is None or labels.height == 0:
            return keys.with_columns(pl.lit(None, pl.String).alias("incident_id")).clear()
        hosts = self._hosts_of()
        if hosts is not None:
            keys = keys.join(hosts, on="host", how="left")
        parts = [keys.join(labels.select("incident_id", "entity", "start", "end"), left_on="host", right_on="entity")]
        if hosts is not None:
            parts.append(
                keys.join(labels.select("incident_id", "entity", "start", "end"), left_on="service", right_on="entity")
            )
        both = pl.concat([p.select("host", "window_start", "window_end", "incident_id", "start", "end") for p in parts])
        overlap = both.filter((pl.col("window_start") < pl.col("end")) & (pl.col("window_end") > pl.col("start")))
        return overlap.select("host", "window_start", "incident_id").unique()

    def fleet_z(self, metrics: tuple[str, ...] = METRICS) -> pl.DataFrame:
        """Per (host, window): the largest |robust fleet z-score| over ``metrics`` (the views' overlay)."""
        present = [m for m in metrics if m in self.windows.columns]
        if not present:
            raise ConfigError(f"report: none of the metrics {list(metrics)} is in the windows")
        zs = []
        for m in present:
            x = pl.col(m).cast(pl.Float64)
            med = x.median().over("window_start")
            mad = (x - med).abs().median().over("window_start")
            zs.append(((x - med) / (1.4826 * mad)).abs().fill_nan(None).alias(f"z_{m}"))
        frame = self.windows.select("host", "window_start", *zs)
        return frame.with_columns(pl.max_horizontal(*(f"z_{m}" for m in present)).fill_null(0.0).alias("z"))

    def detector_quality(self, thresholds: tuple[float, ...] = (3.0, 3.5, 5.0)) -> pl.DataFrame | None:
        """Precision, recall and F1 of the fleet-outlier rule against the labels (None: no labels)."""
        if self._optional("labels") is None:
            return None
        labelled = self._labelled()
        truth = labelled.select("host", "window_start").unique().with_columns(pl.lit(True).alias("labelled"))
        z = (
            self.fleet_z()
            .join(truth, on=["host", "window_start"], how="left")
            .with_columns(pl.col("labelled").fill_null(False))
        )
        incidents = labelled["incident_id"].n_unique()
        rows = []
        for t in thresholds:
            flagged = z.filter(pl.col("z") >= t)
            tp = flagged.filter(pl.col("labelled")).height
            positives = int(z["labelled"].sum())
            precision = tp / flagged.height if flagged.height else None
            recall = tp / positives if positives else None
            f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
            caught = labelled.join(flagged.select("host", "window_start"), on=["host", "window_start"])
            rows.append(
                {
                    "rule": f"fleet |z| ≥ {t:g}",
                    "flagged": flagged.height,
                    "labelled": positives,
                    "true_positives": tp,
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                    "incidents_caught": f"{caught['incident_id'].n_unique()} of {incidents}",
                }
            )
        return pl.DataFrame(rows, schema_overrides={"precision": pl.Float64, "recall": pl.Float64, "f1": pl.Float64})

    def alerts(self) -> pl.DataFrame | None:
        """Alerts in the range, per rule, severity and entity (None: the lake has no ``alerts`` output).

        The ``alerts`` output holds one row per transition of an alert (``from_state`` →
        ``to_state`` at ``at``, as the alert evaluator writes it): an alert *fired* when it
        went to ``firing``, and *resolved* when it left it. Other layouts are counted by row.
        """
        alerts = self._optional("alerts")
        if alerts is None:
            return None
        when = next((c for c in ("at", "fired_at", "ts", "start", "window_start") if c in alerts.columns), None)
        if when is not None and isinstance(alerts.schema[when], pl.Datetime):
            alerts = time_filter(alerts, when, self.start, self.end)
        keys = [c for c in ("rule", "severity", "entity") if c in alerts.columns]
        if not keys:
            return pl.DataFrame({"alerts": [alerts.height]})
        if "to_state" in alerts.columns:
            aggs = [
                (pl.col("to_state") == "firing").sum().alias("fired"),
                (pl.col("from_state") == "firing").sum().alias("resolved")
                if "from_state" in alerts.columns
                else pl.lit(None, pl.UInt32).alias("resolved"),
            ]
            if when is not None:
                aggs.append(pl.col(when).filter(pl.col("to_state") == "firing").max().alias("last_fired"))
            out = alerts.group_by(keys).agg(aggs).filter(pl.col("fired") > 0)
            return out.sort("fired", *keys, descending=[True, *([False] * len(keys))])
        return alerts.group_by(keys).agg(pl.len().alias("alerts")).sort("alerts", descending=True)
