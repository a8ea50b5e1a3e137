"""Event-level evaluation: detection windows with grace, time-to-detect, false-positive episodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import ConfigError
from workbench.evaluate.events import evaluate_events
from workbench.sources.simulator.incidents import Incident, incidents_frame

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


LABELS = incidents_frame(
    [
        Incident("a", "cpu_saturation", "server_metrics", "h1", at(100), at(160)),
        Incident("b", "host_silent", "server_metrics", "h2", at(300), at(360)),
        Incident("c", "latency_degradation", "server_metrics", "checkout", at(500), at(560)),
    ]
)


def dets(*pairs: tuple[str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"host": [h for h, _ in pairs], "window_end": [at(s) for _, s in pairs]},
        schema={"host": pl.String, "window_end": pl.Datetime("ms", "UTC")},
    )


def test_detected_within_the_window_plus_grace_and_time_to_detect():
    report = evaluate_events(dets(("h1", 130), ("h1", 150), ("h2", 375)), LABELS, by="host", grace="20s")
    got = {r["incident_id"]: (r["detected"], r["ttd_s"]) for r in report.incidents.iter_rows(named=True)}
    assert got == {"a": (True, 30.0), "b": (True, 75.0), "c": (False, None)}
    assert report.false_positives.height == 0
    late = evaluate_events(dets(("h2", 385)), LABELS, by="host", grace="20s")
    assert late.incidents.filter(pl.col("incident_id") == "b")["detected"].item() is False
    assert late.false_positives.height == 1


def test_a_detection_on_another_entity_is_a_false_positive_and_episodes_group_them():
    report = evaluate_events(
        dets(("h9", 130), ("h9", 140), ("h9", 150), ("h9", 900), ("h1", 10)), LABELS, by="host", episode_gap="30s"
    )
    assert report.false_positives.select("entity", "detections").rows() == [("h1", 1), ("h9", 3), ("h9", 1)]
    summary = {r["kind"]: r for r in report.summary().iter_rows(named=True)}
    assert summary["all"]["detected"] == 0 and summary["all"]["precision"] == 0.0
    assert summary["all"]["false_positive_episodes"] == 3


def test_entity_map_lets_a_host_detect_its_service_incident_and_is_anomaly_filters():
    frame = dets(("web-1", 510), ("web-1", 520)).with_columns(is_anomaly=pl.Series([False, True]))
    report = evaluate_events(frame, LABELS, by="host", entity_map={"web-1": "checkout"})
    row = report.incidents.filter(pl.col("incident_id") == "c").row(0, named=True)
    assert row["detected"] and row["ttd_s"] == 20.0 and report.detections == 1
    summary = report.summary().filter(pl.col("kind") == "latency_degradation").row(0, named=True)
    assert (summary["precision"], summary["recall"]) == (1.0, 1.0)


def test_missing_columns_are_named():
    with pytest.raises(ConfigError, match=r"detections lack \['window_end'\]"):
        evaluate_events(pl.DataFrame({"host": ["h1"]}), LABELS, by="host")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["h1", "h2", "h3"]), st.floats(0, 1000)), max_size=40))
def test_every_detection_is_either_matched_or_in_exactly_one_episode(pairs):
    report = evaluate_events(dets(*pairs), LABELS, by="host", grace="10s")
    matched = sum(
        1
        for h, s in pairs
        for r in LABELS.iter_rows(named=True)
        if r["entity"] == h and r["start"] <= at(s) <= r["end"] + timedelta(seconds=10)
    )
    assert matched + report.false_positives["detections"].sum() == len(pairs)
    recall = report.summary().filter(pl.col("kind") == "all")["recall"].item()
    assert recall == report.incidents["detected"].mean()
