"""``workbench run --cluster local:2`` on a broker, a worker SIGKILLed mid-stream: nothing lost, nothing doubled.

The real Redis server and NATS JetStream on loopback. Half the events are published, a
worker process of the ``LocalCluster`` is killed once checkpoints are being written,
then the rest are published (and one event far ahead that closes every window). The
run must recover within itself (restore the key groups from the manifest, replay from
the logged offsets: the broker re-delivers what no checkpoint covered) and end with
exactly the windows the events make — in PostgreSQL, with its commit row at the
checkpoint's epoch, and in the lake — each window once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import psutil
import psycopg
import pytest
from connectors import DSN, PUBLISHERS, closing_event, events, pg_drop, pg_windows, tag, wait_for

from workbench.storage.checkpoints import CheckpointStore
from workbench.storage.lake import Lake
from workbench.storage.postgres import COMMITS

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.long]

ROOT = Path(__file__).resolve().parents[1]
N = 4_000


def _expected(n: int) -> pl.DataFrame:
    """The 1 s windows of events 0…n-1, by host: (host, window_start, count)."""
    rows = [json.loads(e) for e in events(0, n)]
    frame = pl.DataFrame({"host": [r["host"] for r in rows], "ts": [r["ts"] for r in rows]})
    return (
        frame.with_columns(pl.from_epoch((pl.col("ts") // 1000) * 1000, time_unit="ms").alias("window_start"))
        .group_by("host", "window_start")
        .agg(pl.len().alias("count"))
        .select("host", pl.col("window_start").dt.replace_time_zone("UTC"), pl.col("count").cast(pl.Int64))
        .sort("host", "window_start")
    )


def _workers(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(kind: str, tmp_path: Path) -> None:
    pub = PUBLISHERS[kind]()
    schema = f"wbtest_{tag()}"
    out = tmp_path / "run"
    log_path = tmp_path / "run.log"
    pub.setup()
    proc = None
    try:
        pub.publish(events(0, N // 2))
        cmd = [
            sys.executable, "-m", "workbench.cli", "run", "--source", pub.url, "--out", str(out),
            "--postgres", DSN, "--pg-schema", schema, "--window", "1s", "--lateness", "1s",
            "--checkpoint-every", "0.3", "--max-rows", "50", "--max-delay", "0.1", "--cluster", "local:2",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, env={**os.environ})

        def log_text() -> str:
            return log_path.read_text(errors="replace")[-3000:]

        def midway() -> bool:
            assert proc is not None and proc.poll() is None, log_text()
            return len(_workers(proc)) >= 2 and pg_windows(schema)[2] > 0

        wait_for(midway, 120, "the cluster run to commit its first windows")
        killed = _workers(proc)[-1]
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        pub.publish([*events(N // 2, N), closing_event(N)])
        wait_for(lambda: pg_windows(schema)[2] >= N or proc.poll() is not None, 180, f"all {N} events in windows")
        assert proc.poll() is None, log_text()
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, log_text()
        summary = json.loads(stdout)
        assert summary["recoveries"] >= 1, summary  # the worker loss was seen and recovered from

        with psycopg.connect(DSN) as c:
            got = pl.DataFrame(
                c.execute(
                    f"select host, window_start, count from {schema}.windows where host <> 'zz' "
                    "order by host, window_start"
                ).fetchall(),
                schema={"host": pl.String, "window_start": pl.Datetime("us", "UTC"), "count": pl.Int64},
                orient="row",
            )
            [(epoch,)] = c.execute(f"select epoch from {schema}.{COMMITS}").fetchall()
        want = _expected(N).with_columns(pl.col("window_start").dt.cast_time_unit("us"))
        assert got.equals(want), (got.height, want.height)
        state = CheckpointStore(out / "checkpoint").load()
        assert state is not None and epoch == state["epoch"]

        lake = Lake(out / "lake").read("windows").filter(pl.col("host") != "zz")
        assert lake["count"].sum() == N
        assert lake.select("host", "window_start").is_duplicated().sum() == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        pub.cleanup()
        pg_drop(schema)
