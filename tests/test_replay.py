"""The headless replay: output layout, summary, and exact resumption after a stop or a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from workbench.pipeline.replay import replay

from conftest import cli, line, metric

REQUIRED = [
    "host",
    "window_start",
    "window_end",
    "count",
    "cpu_mean",
    "cpu_max",
    "mem_max",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "error_rate",
]


@pytest.fixture
def events(tmp_path: Path) -> Path:
    """6000 events over 10 minutes on 5 hosts, with duplicates, bad lines and late events."""
    out = []
    for i in range(6000):
        out.append(line(metric(i, host=f"h{i % 5}", seconds=i / 10)))
        if i % 500 == 7:
            out.append(line(metric(i, host=f"h{i % 5}", seconds=i / 10)))  # duplicate
        if i % 700 == 3:
            out.append(b'{"event_id": "broken", "ts": \n')  # broken JSON
        if i % 900 == 5 and i > 1000:
            out.append(line(metric(100_000 + i, host="h1", seconds=i / 10 - 60)))  # a minute late
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(out))
    return path


def _windows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted((out / "windows").glob("*.parquet"))).sort("window_start", "host")


def test_replay_writes_windows_dead_letters_and_summary(events, tmp_path):
    out = tmp_path / "out"
    summary = replay(events, out, max_rows=700)
    w = _windows(out)
    for col in REQUIRED:
        assert col in w.columns
    assert w.schema["window_start"] == pl.Datetime("ms", "UTC")
    dead = pl.read_parquet(sorted((out / "dead_letter").glob("*.parquet")))
    assert dead.height == summary["dead_lettered"] == 9
    assert set(dead.columns) >= {"node", "reason", "raw"}
    on_disk = json.loads((out / "summary.json").read_text())
    for key in ("ingested", "valid", "dead_lettered", "duplicates", "late", "windows", "seconds"):
        assert key in on_disk
    assert on_disk["ingested"] == on_disk["valid"] + on_disk["dead_lettered"] + on_disk["duplicates"] + on_disk["late"]
    assert on_disk["duplicates"] == 12 and on_disk["late"] == 5
    assert on_disk["windows"] == w.height
    assert w["count"].sum() == on_disk["valid"]


def test_stopped_replay_resumes_with_identical_output(events, tmp_path):
    full = tmp_path / "full"
    replay(events, full, max_rows=500, checkpoint_batches=3)
    part = tmp_path / "part"
    first = replay(events, part, max_rows=500, checkpoint_batches=3, max_batches=7)
    assert not first["complete"]
    second = replay(events, part, max_rows=500, checkpoint_batches=3)
    assert second["complete"]
    assert _windows(part).equals(_windows(full))
    assert (
        json.loads((part / "summary.json").read_text())["ingested"]
        == json.loads((full / "summary.json").read_text())["ingested"]
    )
    # running a finished replay again changes nothing
    replay(events, part, max_rows=500, checkpoint_batches=3)
    assert _windows(part).equals(_windows(full))


def test_killed_replay_resumes_with_no_lost_and_no_doubled_rows(events, tmp_path):
    full = tmp_path / "full"
    replay(events, full, max_rows=200, checkpoint_batches=2)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "workbench.cli", "replay", str(events), "--out", str(out), "--max-rows", "200"]
    # slow the run down so it can be killed part-way: a tiny batch size and many checkpoints
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*cmd, "--checkpoint-every", "0s"], env=env, stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((out / "windows").glob("*.parquet"))[2:]:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _windows(out).equals(_windows(full))
    assert json.loads((out / "summary.json").read_text())["complete"]


def test_cli_replay_and_query(events, tmp_path):
    out = tmp_path / "cli"
    run = cli("replay", events, "--out", out, "--window", "1m", "--lateness", "5s")
    assert run.returncode == 0, run.stderr
    assert "replay" not in run.stderr  # no progress bar when not on a terminal
    summary = json.loads(run.stdout)
    q = cli("query", "--lake", out, "--format", "csv", "select count(*) as n, sum(count) as events from windows")
    assert q.returncode == 0, q.stderr
    n, total = q.stdout.splitlines()[1].split(",")
    assert int(n) == summary["windows"] and int(total) == summary["valid"]


def test_cli_reports_user_errors_clearly(tmp_path):
    run = cli("replay", tmp_path / "nope.jsonl", "--out", tmp_path / "o")
    assert run.returncode == 2
    assert "does not exist" in run.stderr and "Traceback" not in run.stderr
    run = cli("replay", "x.jsonl", "--out", "o", "--window=-5s")
    assert run.returncode == 2 and "duration" in run.stderr
