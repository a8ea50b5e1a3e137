"""Event-level precision, recall and time-to-detect against labelled incidents.

An incident is *detected* when a detection falls in its ``[start, end + grace]`` on its
entity; its time-to-detect (TTD) is the first such detection minus ``start``. A
detection that falls in no incident of its entity is a false positive; false positives
of one entity no more than ``episode_gap`` apart are one *episode* (one page to a
human), and precision counts episodes, not rows::

    recall    = detected incidents / incidents
    precision = detected incidents / (detected incidents + false-positive episodes)

Detections are rows with an entity column, a time column (a window's end) and, when
present, ``is_anomaly`` (only true rows count). ``entity_map`` maps a detection's
entity to others it stands for (a host to its service), so per-host detections can
find a per-service incident.

Examples
--------
>>> import polars as pl
>>> from datetime import UTC, datetime, timedelta
>>> from workbench.sources.simulator.incidents import Incident, incidents_frame
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> labels = incidents_frame([Incident("i1", "cpu_saturation", "server_metrics", "h1",
...                                    t0 + timedelta(minutes=5), t0 + timedelta(minutes=6))])
>>> dets = pl.DataFrame({"host": ["h1", "h1", "h2", "h2"],
...                      "window_end": [t0 + timedelta(minutes=m) for m in (5.5, 5.7, 1, 1.2)]})
>>> report = evaluate_events(dets, labels, by="host")
>>> report.summary().select("kind", "detected", "total", "precision", "recall", "mean_ttd_s").rows()
[('cpu_saturation', 1, 1, 0.5, 1.0, 30.0), ('all', 1, 1, 0.5, 1.0, 30.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = ["EventReport", "evaluate_events"]


@dataclass(frozen=True)
class EventReport:
    """The outcome of :func:`evaluate_events`.

    Parameters
    ----------
    incidents
        One row per incident: the label columns plus ``detected``, ``first_detection``
        and ``ttd_s``.
    false_positives
        One row per false-positive episode: ``entity``, ``start``, ``end``, ``detections``.
    detections
        Detections evaluated.
    """

    incidents: pl.DataFrame
    false_positives: pl.DataFrame
    detections: int

    def summary(self) -> pl.DataFrame:
        """Per incident kind, then ``all``: detected, total, precision, recall, mean TTD (s).

        Precision per kind divides by all false-positive episodes (they carry no kind).
        """
        fp = self.false_positives.height
        per_kind = (
            self.incidents.group_by("kind")
            .agg(
                pl.col("detected").sum().cast(pl.Int64).alias("detected"),
                pl.len().cast(pl.Int64).alias("total"),
                pl.col("ttd_s").filter(pl.col("detected")).mean().alias("mean_ttd_s"),
            )
            .sort("kind")
        )
        overall = self.incidents.select(
            pl.lit("all").alias("kind"),
            pl.col("detected").sum().cast(pl.Int64).alias("detected"),
            pl.len().cast(pl.Int64).alias("total"),
            pl.col("ttd_s").filter(pl.col("detected")).mean().alias("mean_ttd_s"),
        )
        rows = pl.concat([per_kind, overall], how="vertical_relaxed")
        return rows.with_columns(
            precision=pl.when(pl.col("detected") + fp > 0)
            .then(pl.col("detected") / (pl.col("detected") + fp))
            .otherwise(None),
            recall=pl.when(pl.col("total") > 0).then(pl.col("detected") / pl.col("total")).otherwise(None),
            false_positive_episodes=pl.lit(fp, dtype=pl.Int64),
        ).select("kind", "detected", "total", "precision", "recall", "mean_ttd_s", "false_positive_episodes")


def evaluate_events(
    detections: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    by: str = "host",
    time: str = "window_end",
    grace: str | float | timedelta = "30s",
    episode_gap: str | float | timedelta = "2m",
    entity_map: dict[str, str] | None = None,
) -> EventReport:
    """Match detections to labelled incidents (see the module docstring).

    Parameters
    ----------
    detections
        Rows with ``by`` and ``time`` (and optionally ``is_anomaly``).
    labels
        Incidents as :func:`~workbench.sources.simulator.incidents.incidents_frame` gives them.
    by, time
        Entity and event-time columns of ``detections``.
    grace
        A detection up to this long after an incident's end still detects it.
    episode_gap
        False positives of one entity closer than this are one episode.
    entity_map
        Further entities a detection's entity stands for (e.g. host → service).
    """
    missing = [c for c in (by, time) if c not in detections.columns]
    if missing:
        raise ConfigError(f"evaluate_events: detections lack {missing}; they have {detections.columns}")
    grace_ms = parse_duration(grace, what="grace")
    gap_ms = parse_duration(episode_gap, what="episode_gap")
    if "is_anomaly" in detections.columns:
        detections = detections.filter(pl.col("is_anomaly"))
    dets = detections.select(
        pl.col(by).cast(pl.String).alias("entity"), pl.col(time).cast(pl.Datetime("ms", "UTC")).alias("time")
    ).with_row_index("det")
    candidates = dets
    if entity_map:
        mapping = pl.DataFrame({"entity": list(entity_map), "also": list(entity_map.values())})
        also = dets.join(mapping, on="entity").select("det", pl.col("also").alias("entity"), "time")
        candidates = pl.concat([dets, also])
    incidents = labels.with_columns(pl.col("entity").cast(pl.String))
    hits = candidates.join(incidents.select("incident_id", "entity", "start", "end"), on="entity").filter(
        (pl.col("time") >= pl.col("start")) & (pl.col("time") <= pl.col("end") + pl.duration(milliseconds=grace_ms))
    )
    first = hits.group_by("incident_id").agg(pl.col("time").min().alias("first_detection"))
    scored = (
        incidents.join(first, on="incident_id", how="left")
        .with_columns(
            detected=pl.col("first_detection").is_not_null(),
            ttd_s=(pl.col("first_detection") - pl.col("start")).dt.total_milliseconds() / 1000.0,
        )
        .sort("start")
    )
    false = dets.join(hits.select("det").unique(), on="det", how="anti").sort("entity", "time")
    episodes = (
        false.with_columns(
            new=(pl.col("time").diff().over("entity").dt.total_milliseconds().fill_null(gap_ms + 1) > gap_ms)
        )
        .with_columns(episode=pl.col("new").cum_sum().over("entity"))
        .group_by("entity", "episode")
        .agg(pl.col("time").min().alias("start"), pl.col("time").max().alias("end"), pl.len().alias("detections"))
        .sort("start", "entity")
        .select("entity", "start", "end", pl.col("detections").cast(pl.Int64))
    )
    return EventReport(scored, episodes, dets.height)
