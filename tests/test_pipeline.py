"""Pipeline contracts: replacement by name, metrics, enrichment, checkpoints, and the full path under any chunking."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
import time

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import CheckpointStore, Pipeline, Tumbling
from workbench.errors import CheckpointError
from workbench.operators import aggregations as agg
from workbench.testing import FrameSource, offline_windows, server_metrics_frames

from conftest import cli, line, metric


def test_rebuilding_a_pipeline_with_the_same_name_replaces_it(metric_lines):
    first = Pipeline(FrameSource([metric_lines(10)]), name="cell")
    out_first = first.collect(first.standard("server_metrics", Tumbling("10s"), aggs=[agg.count()]))
    # the notebook cell runs again
    second = Pipeline(FrameSource([metric_lines(10)]), name="cell")
    out_second = second.collect(second.standard("server_metrics", Tumbling("10s"), aggs=[agg.count()]))
    assert Pipeline.live("cell") is second
    assert first.subscriptions == 0  # the old one is detached
    second.run()
    first.head.emit(FrameSource([metric_lines(10)]).items[0])  # even if fed, the old graph is gone
    assert sum(o["count"].sum() for o in out_second) == 10
    assert out_first == []


def test_metrics_report_rows_latency_state_and_watermark(metric_lines):
    pipe = Pipeline(FrameSource([metric_lines(30), metric_lines(5)]), name="metrics")
    pipe.standard("server_metrics", Tumbling("10s"))
    pipe.run()
    m = pipe.metrics()
    assert m["node"].to_list() == ["decode", "validate", "horizon", "dedupe", "window"]
    assert set(m.columns) >= {"rows_in", "rows_out", "last_batch_ms", "state_size", "watermark", "rows_per_s"}
    row = {r["node"]: r for r in m.to_dicts()}
    assert row["decode"]["rows_in"] == 35 and row["dedupe"]["rows_out"] == 30
    assert row["dedupe"]["state_size"] == 30
    assert row["window"]["watermark"] is not None


def test_enrich_joins_reference_columns_and_counts_unmatched():
    recs = [metric(i, host=f"h{i % 3}", service=None) for i in range(9)]
    table = pl.DataFrame({"host": ["h0", "h1"], "service": ["checkout", "search"], "owner": ["team-a", "team-b"]})
    pipe = Pipeline(FrameSource([b"".join(line(r) for r in recs)]), name="enrich")
    out = pipe.collect(
        pipe.standard(
            "server_metrics", Tumbling("1m"), by=["service", "owner"], aggs=[agg.count()], enrich=(table, "host")
        )
    )
    pipe.run()
    result = {(r["service"], r["owner"]): r["count"] for r in pl.concat(out).to_dicts()}
    assert result == {("checkout", "team-a"): 3, ("search", "team-b"): 3, (None, None): 3}
    assert [op for op in pipe.operators() if op.name == "enrich"][0].state.unmatched == 3


def _checkpointed(tmp_path, metric_lines):
    store = CheckpointStore(tmp_path / "ck")
    pipe = Pipeline(FrameSource([metric_lines(10)]), name="ck", checkpoints=store)
    pipe.standard("server_metrics", Tumbling("10s"))
    pipe.run()
    return store


def test_corrupt_checkpoint_is_refused_with_a_clear_message(tmp_path, metric_lines):
    store = _checkpointed(tmp_path, metric_lines)
    data = bytearray(store.path.read_bytes())
    data[-5] ^= 0xFF
    store.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="authentication failed"):
        store.load()


def test_checkpoint_from_another_polars_minor_version_loads(tmp_path, metric_lines, monkeypatch):
    # frames are stored as Arrow IPC, not as polars pickles: they are portable across versions
    from workbench.storage import checkpoints

    store = _checkpointed(tmp_path, metric_lines)
    state = store.load()
    real = checkpoints.library_versions
    with monkeypatch.context() as m:
        m.setattr(checkpoints, "library_versions", lambda: {**real(), "polars": "0.19.0"})
        store.save(state)
    again = store.load()
    assert again["versions"]["polars"] == "0.19.0" and again["epoch"] == state["epoch"]


@settings(max_examples=40, deadline=None)
@given(
    data=server_metrics_frames(max_disorder_s=4.0),
    dup_every=st.integers(2, 9),
    cuts=st.lists(st.integers(0, 10**6), max_size=6),
)
def test_full_path_from_ndjson_equals_offline_polars_for_any_chunking(data, dup_every, cuts):
    frame, _ = data
    rows = frame.to_dicts()
    lines = []
    for i, r in enumerate(rows):
        rec = {**r, "ts": int(r["ts"].timestamp() * 1000)}
        lines.append(json.dumps(rec).encode() + b"\n")
        if i % dup_every == 0:
            lines.append(lines[-1])  # an exact duplicate, delivered right after
    blob = b"".join(lines)
    # cut the byte stream at line boundaries, at random
    bounds = sorted({0, len(lines), *(c % (len(lines) + 1) for c in cuts)})
    batches = [b"".join(lines[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert b"".join(batches) == blob
    pipe = Pipeline(FrameSource(batches), name="oracle-full", prefetch=2)
    aggs = [agg.count(), agg.mean("cpu"), agg.quantile("latency_ms", 0.95, "p95")]
    out = pipe.collect(pipe.standard("server_metrics", Tumbling("10s"), aggs=aggs, lateness="4s"))
    pipe.run()
    pipe.check_invariant()
    got = pl.concat(out).sort("window_start", "host") if out else pl.DataFrame()
    offline = frame.unique("event_id", keep="first", maintain_order=True)
    expected = offline_windows(offline, Tumbling("10s"), by="host", aggs=aggs, lateness="4s")
    assert got.height == expected.height
    if expected.height:
        assert got.select("host", "window_start", "count").equals(expected.select("host", "window_start", "count"))
        for col in ("cpu_mean", "p95"):
            assert (got[col] - expected[col]).abs().max() <= 1e-9 * max(1.0, expected[col].abs().max())


def test_replay_shows_a_progress_bar_on_a_terminal(tmp_path, metric_lines):
    path = tmp_path / "e.jsonl"
    path.write_bytes(metric_lines(2000))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal has a size
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "replay", str(path), "--out", str(tmp_path / "o")],
        stdout=subprocess.DEVNULL,
        stderr=slave,
        stdin=slave,
    )
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    assert b"replay" in seen and b"%" in seen


def test_simulate_cli_writes_events_labels_and_faults(tmp_path):
    out = tmp_path / "sim.jsonl"
    run = cli("simulate", "--events", 5000, "--seed", 3, "--out", out)
    assert run.returncode == 0, run.stderr
    counts = json.loads(run.stdout)
    assert out.exists() and (tmp_path / "sim.labels.json").exists() and (tmp_path / "sim.faults.parquet").exists()
    assert counts["lines"] == out.read_bytes().count(b"\n")
    assert json.loads((tmp_path / "sim.labels.json").read_text())  # incidents with ground truth


def test_health_reports_a_stalled_source_and_a_failed_run(metric_lines):
    from workbench import ManualClock
    from workbench.sources.base import RawBatch, Source

    clock = ManualClock()
    release = threading.Event()

    class Stalling(Source):
        def _batches(self):
            yield RawBatch(data=metric_lines(5), offset=1, rows=5)
            release.wait(5)  # a source that goes quiet
            raise ConnectionError("broker went away")

        def seek(self, offset):
            pass

    pipe = Pipeline(Stalling(clock=clock), name="health")
    pipe.standard("server_metrics", Tumbling("10s"))
    pipe.start()
    deadline = time.time() + 5
    while pipe.batches < 1 and time.time() < deadline:
        time.sleep(0.01)
    assert pipe.health()["running"] and not pipe.health()["stale"]
    clock.advance(30)
    assert pipe.health()["stale"] and pipe.health()["last_batch_age_s"] >= 30
    release.set()
    pipe.stop()
    h = pipe.health()
    assert not h["running"] and h["error"] == "ConnectionError: broker went away"


@pytest.mark.parametrize("bulk", [True, False])
def test_sources_say_whether_they_wait(tmp_path, bulk):
    from workbench import FileSource, Simulator

    path = tmp_path / "e.jsonl"
    path.write_bytes(b"")
    assert FileSource(path, follow=not bulk).bulk is bulk
    assert Simulator(realtime=not bulk).bulk is bulk
