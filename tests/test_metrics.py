"""A pipeline's own /metrics: the collector against the pipeline's numbers, and a real Prometheus scraping it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import polars as pl
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

import workbench as wb
from workbench.alerts.rules import Threshold
from workbench.pipeline.metrics import collector, registry, render, serve
from workbench.sources.frames import FrameSource
from workbench.storage.checkpoints import CheckpointStore

from conftest import metric

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
needs_prometheus = pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="prometheus is not installed")


def records(n: int) -> list[dict]:
    """``n`` records: every 10th out of bounds (mem), every 25th with a bad time, a few duplicates."""
    out = []
    for i in range(n):
        rec = metric(i, host=f"h{i % 3}", cpu=95.0)
        if i % 10 == 0:
            rec["mem"] = 500.0
        if i % 25 == 0:
            rec["ts"] = "oops"
        out.append(rec)
    return out + [metric(1, host="h1", cpu=95.0)]  # a duplicate of record 1


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parsed exposition: (sample name, sorted labels without ``pipeline``) -> value."""
    text = text.decode() if isinstance(text, bytes) else text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "pipeline"))
            out[(s.name, labels)] = s.value
    return out


def pipeline(name: str, frames: list[pl.DataFrame], **kw) -> wb.Pipeline:
    p = wb.Pipeline(FrameSource(frames), name=name, **kw)
    p.standard("server_metrics", wb.Tumbling("10s"))
    p.alerts([Threshold("hot", metric="cpu_mean", value=90), Threshold("cold", metric="cpu_mean", value=-1, op="<")])
    return p


def test_collector_reports_what_the_pipeline_counts():
    rows = records(300)
    p = pipeline("metrics-unit", [pl.DataFrame(rows[:150]), pl.DataFrame(rows[150:])])
    dead = p.collect("dead_letter")
    c = collector(p)
    assert collector(p) is c  # one per pipeline: one latency hook
    p.run()
    got = samples(render(registry(c)))

    for row in p.metrics().iter_rows(named=True):
        labels = (("kind", row["kind"]), ("node", row["node"]))
        for field in ("rows_in", "rows_out", "rejected", "errors", "batches"):
            assert got[(f"workbench_node_{field}_total", labels)] == row[field], (row["node"], field)
        assert got[("workbench_node_state_size", labels)] == row["state_size"]
        # one latency observation per node per batch of the run loop (the end-of-input flush is not one)
        observed = got[("workbench_batch_seconds_count", (("node", row["node"]),))]
        assert observed == (row["batches"] if row["kind"] != "AlertNode" else 2)
    assert got[("workbench_batch_seconds_count", (("node", "*"),))] == p.batches == 2

    counts = p.counts()
    assert got[("workbench_ingested_records_total", ())] == counts["ingested"] == 301
    for outcome in ("valid", "dead_lettered", "duplicates", "late", "dropped"):
        assert got[("workbench_records_total", (("outcome", outcome),))] == counts[outcome]

    by_reason = pl.concat(dead).group_by("node", "reason_code").len().rows()
    reported = {
        (dict(labels)["node"], dict(labels)["reason_code"]): v
        for (name, labels), v in got.items()
        if name == "workbench_dead_letters_total"
    }
    assert reported == {(node, code): n for node, code, n in by_reason}
    assert sum(reported.values()) == counts["dead_lettered"] > 0

    active = p.outputs["alerts"].manager.active()
    for rule in ("hot", "cold"):
        for state in ("pending", "firing"):
            expected = active.filter((pl.col("rule") == rule) & (pl.col("state") == state)).height
            assert got[("workbench_alerts", (("rule", rule), ("state", state)))] == expected
    assert got[("workbench_alerts", (("rule", "hot"), ("state", "firing")))] == 3  # every host is hot

    window = (("kind", "window"), ("node", "window"))
    wm = p.outputs["windows"].watermark.timestamp()
    assert got[("workbench_node_watermark_seconds", window)] == wm
    assert got[("workbench_node_watermark_lag_seconds", window)] == pytest.approx(p.clock.now().timestamp() - wm, abs=5)


class FlakySource(FrameSource):
    """A frame source that reports a broker's health: down, after three reconnects."""

    def health(self):
        return {"connected": False, "reconnects": 3, "last_message_age_s": 12.5, "unacked": 7}


def test_source_health_and_reconnects_are_reported():
    p = wb.Pipeline(FlakySource([pl.DataFrame(records(10))]), name="metrics-source")
    p.standard("server_metrics", wb.Tumbling("10s"))
    p.run()
    got = samples(render(registry(collector(p))))
    source = (("source", "FlakySource"),)
    assert got[("workbench_source_connected", source)] == 0
    assert got[("workbench_source_reconnects_total", source)] == 3
    assert got[("workbench_source_last_message_age_seconds", source)] == 12.5
    assert got[("workbench_source_unacked", source)] == 7
    assert got[("workbench_pipeline_failed", ())] == 0


def test_registry_is_not_the_global_one():
    p = pipeline("metrics-private", [pl.DataFrame(records(20))])
    reg = registry(collector(p))
    p.run()
    assert b"workbench_node_rows_in_total" in render(reg)
    assert b"workbench_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_dead_letters_by_reason_survive_a_restart(tmp_path):
    rows = records(200)
    frames = [pl.DataFrame(rows[:100]), pl.DataFrame(rows[100:])]
    store = CheckpointStore(tmp_path / "cp")
    first = wb.Pipeline(FrameSource(frames), name="metrics-resume", checkpoints=store, checkpoint_batches=1)
    first.standard("server_metrics", wb.Tumbling("10s"))
    first.run(max_batches=1)
    before = first.operators()[1].metrics.reasons
    assert before and sum(before.values()) == first.operators()[1].metrics.rejected
    first.close()

    again = wb.Pipeline(FrameSource(frames), name="metrics-resume", checkpoints=store, checkpoint_batches=1)
    again.standard("server_metrics", wb.Tumbling("10s"))
    again.restore()
    assert again.operators()[1].metrics.reasons == before
    assert again.operators()[1].metrics.reasons is not before  # restored, not aliased


def test_serve_refuses_a_taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(wb.ConfigError, match=rf"metrics: cannot listen on 127.0.0.1:{port}"):
            serve(registry(), port)
    with pytest.raises(wb.ConfigError, match=r"metrics: port must be in \[0, 65535\], not 70000"):
        serve(registry(), 70000)


# -- a real Prometheus scrapes `workbench run --metrics-port` ------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value is not None:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def start_prometheus(tmp_path: Path, target: str) -> tuple[subprocess.Popen, str]:
    """Prometheus scraping ``target`` every second, on a free port, storing in ``tmp_path``."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: workbench\n    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def query(base: str, promql: str) -> dict[tuple[tuple[str, str], ...], float] | None:
    """Prometheus's instant query result by labels (without job/instance/pipeline), None while empty."""
    body = json.loads(get(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}"))
    result = body["data"]["result"]
    if not result:
        return None
    drop = {"__name__", "job", "instance", "pipeline"}
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k not in drop)): float(r["value"][1]) for r in result
    }


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.mark.slow
@needs_prometheus
def test_prometheus_scrapes_workbench_run(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(r) + "\n" for r in records(1000)) + "{broken\n")
    port = free_port()
    run = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", "--source", f"file://{events}?follow=true"]
        + ["--out", str(tmp_path / "out"), "--metrics-port", str(port), "--seconds", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    prom = None
    try:
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        wait_for("workbench's /metrics", lambda: b"workbench_node_rows_in_total" in get(metrics_url) or None)
        wait_for("the first batch", lambda: samples(get(metrics_url)).get(("workbench_pipeline_batches_total", ())))
        prom, base = start_prometheus(tmp_path, f"127.0.0.1:{port}")
        rows_in = wait_for(
            "Prometheus to hold decode's rows in",
            lambda: query(base, 'workbench_node_rows_in_total{node="decode"}'),
        )
        dead = wait_for("Prometheus to hold dead letters", lambda: query(base, "workbench_dead_letters_total"))
        up = wait_for("the scrape's up", lambda: query(base, 'up{job="workbench"}'))
    finally:
        if prom is not None:
            stop(prom)
        stop(run)  # SIGTERM: the run checkpoints and prints its summary
    out, err = run.communicate()
    assert run.returncode == 0, err.decode()
    assert f"metrics at http://127.0.0.1:{port}/metrics".encode() in err
    summary = json.loads(out)

    assert up == {(): 1.0}
    assert rows_in == {(("kind", "decode"), ("node", "decode")): summary["ingested"]} and summary["ingested"] == 1002
    lake = pl.read_parquet(tmp_path / "out" / "lake" / "dead_letter" / "**" / "*.parquet")
    by_reason = lake.group_by("node", "reason_code").len().rows()
    expected = {(("node", n), ("reason_code", c)): float(k) for n, c, k in by_reason}
    assert dead == expected
    assert sum(dead.values()) == summary["dead_lettered"] == 121


@pytest.mark.slow
@needs_prometheus
def test_prometheus_scrapes_the_served_app(served_monitor, tmp_path):
    base_url = served_monitor.rsplit("/", 1)[0]
    text = get(f"{base_url}/metrics")
    got = samples(text)
    assert got[("workbench_pipelines_in_process", ())] == 1
    assert any(name == "workbench_sessions" for name, _ in got)
    assert ("process_resident_memory_bytes", ()) in got
    target = urllib.parse.urlsplit(base_url).netloc
    prom, base = start_prometheus(tmp_path, target)
    try:
        ingested = wait_for(
            "Prometheus to hold the served pipeline", lambda: query(base, "workbench_ingested_records_total")
        )
        pipelines = wait_for("pipelines in process", lambda: query(base, "workbench_pipelines_in_process"))
        sessions = wait_for("sessions", lambda: query(base, "workbench_sessions"))
        # the latency histogram was attached when the pipeline started: it has observed batches
        batches = wait_for("observed batches", lambda: query(base, 'workbench_batch_seconds_count{node="*"} > 0'))
    finally:
        stop(prom)
    health = json.loads(get(f"{base_url}/workbench/health"))
    assert pipelines == {(): 1.0} == {(): float(health["pipelines_in_process"])}
    assert set(sessions) == {(("app", "/monitor"),)}
    assert set(batches) == {(("node", "*"),)}
    assert 0 < ingested[()] <= health["counts"]["ingested"]  # a live pipeline: the scrape came first
