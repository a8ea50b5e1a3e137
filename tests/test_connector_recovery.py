"""Crash and outage recovery against the real brokers on loopback.

* SIGKILL (MQTT, Redis, NATS on the shared servers; Kafka on librdkafka's mock
  cluster): ``workbench run --source URL`` in a child process is killed part-way, more
  events are published while it is down, it is started again: every event is in a
  window (sum of counts = events published) and neither PostgreSQL nor the lake
  holds a duplicate window row.
* Broker restart: a PRIVATE broker on a free port is killed and started again while
  the pipeline runs; health turns red within 10 s and the pipeline recovers by itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from connectors import (
    DSN,
    PUBLISHERS,
    PrivateBroker,
    closing_event,
    events,
    pg_drop,
    pg_windows,
    tag,
    wait_for,
)

from workbench import Pipeline, Tumbling
from workbench.sources import from_url
from workbench.storage.lake import Lake

pytestmark = pytest.mark.services

# Mosquitto drops QoS 1 messages queued for a session past max_queued_messages (1000 by
# default, as on the shared broker): keep the MQTT backlog under it.
N = {"mqtt": 800, "redis": 2_000, "nats": 2_000, "kafka": 2_000}
ROOT = Path(__file__).resolve().parents[1]


def _child(url: str, out: Path, schema: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "workbench.cli", "run", "--source", url, "--out", str(out),
        "--postgres", DSN, "--pg-schema", schema, "--window", "1s", "--lateness", "1s",
        "--checkpoint-every", "0.3", "--max-rows", "200", "--max-delay", "0.1",
    ]  # fmt: skip
    log = open(out.parent / f"{out.name}.log", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow  # ~30 s each on a loaded 2-core machine: two child processes start
@pytest.mark.parametrize("kind", ["mqtt", "redis", "nats", "kafka"])  # kafka: librdkafka's mock cluster
def test_sigkill_part_way_loses_nothing_and_duplicates_nothing(kind: str, tmp_path: Path) -> None:
    pub = PUBLISHERS[kind]()
    n = N[kind]
    half, three_q = n // 2, n * 3 // 4
    schema = f"wbtest_{tag()}"
    out = tmp_path / "run"
    pub.setup()
    children: list[subprocess.Popen[bytes]] = []
    try:
        pub.publish(events(0, half))
        first = _child(pub.url, out, schema)
        children.append(first)
        step = n // 20
        feeder = threading.Thread(target=lambda: [pub.publish(events(i, i + step)) for i in range(half, three_q, step)])
        feeder.start()
        progress = lambda: pg_windows(schema)[2] >= n // 8 or first.poll() is not None  # noqa: E731
        wait_for(progress, 60, "the first run to write windows")
        assert first.poll() is None, (out.parent / "run.log").read_text()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        feeder.join()
        pub.publish(events(three_q, n))  # while the pipeline is down
        second = _child(pub.url, out, schema)
        children.append(second)
        pub.publish([closing_event(n)])
        wait_for(lambda: pg_windows(schema)[2] >= n, 60, f"all {n} events in PostgreSQL windows", every=0.3)
        assert second.poll() is None, (out.parent / "run.log").read_text()[-3000:]
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (out.parent / "run.log").read_text()[-3000:]
        rows, distinct, total = pg_windows(schema)
        assert total == n and rows == distinct
        lake = Lake(out / "lake").read("windows").filter(pl.col("host") != "zz")
        assert lake["count"].sum() == n
        assert lake.select("host", "window_start").is_duplicated().sum() == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        pub.cleanup()
        pg_drop(schema)


@pytest.mark.parametrize("kind", ["mqtt", "redis", "nats"])
def test_broker_restart_recovers_and_health_shows_the_outage(kind: str) -> None:
    broker = PrivateBroker(kind)
    broker.start()
    pub = PUBLISHERS[kind](broker.port)
    pub.setup()
    try:
        pipe = Pipeline(from_url(pub.url, max_delay=0.1, backoff=(0.2, 1.0)), name=f"restart-{kind}",
                        checkpoint_batches=1)  # fmt: skip
        pipe.standard("server_metrics", Tumbling("1s"), lateness="1s")
        got = pipe.collect("windows")
        pipe.start()
        wait_for(lambda: pipe.health()["source"].get("connected"), 10, "the first connection")
        pub.publish(events(0, 500))
        wait_for(lambda: pipe.counts()["valid"] >= 500, 20, "the first 500 events")
        assert not pipe.health()["stale"]

        broker.kill()
        t0 = time.monotonic()
        wait_for(lambda: pipe.health()["stale"], 10, "health to turn red")
        red_after = time.monotonic() - t0
        health = pipe.health()
        assert health["source"]["connected"] is False and health["source"]["error"]
        from workbench.feeds.feed import Feed
        from workbench.views.graph import pipeline_svg

        assert "DISCONNECTED · last msg" in pipeline_svg(Feed(pipe))  # the pipeline view shows the outage
        time.sleep(1.5)  # an outage of a few reconnect attempts
        broker.start()
        if kind == "mqtt":  # mosquitto's persisted session may lag a kill -9; subscribe again to be sure
            pub.setup()
        wait_for(lambda: pipe.health()["source"].get("connected"), 20, "the reconnection")
        pub.publish([*events(500, 1_000), closing_event(1_000)])
        wait_for(lambda: pipe.counts()["valid"] >= 1_001, 20, "the events published after the restart")
        health = pipe.health()
        assert not health["stale"] and health["source"]["reconnects"] >= 1 and red_after < 10
        pipe.stop()
        assert pipe.error is None
        windows = pl.concat(got)
        assert windows.filter(pl.col("host") != "zz")["count"].sum() == 1_000
    finally:
        pub.cleanup()
        broker.close()


def test_a_restarted_nats_source_replays_what_a_killed_one_fetched_first_and_in_order() -> None:
    pub = PUBLISHERS["nats"]()
    pub.setup()
    try:
        old, new = events(0, 10), events(10, 15)
        pub.publish(old)
        killed = from_url(pub.url)
        killed._connect()
        assert [m[0] for m in killed._receive(10, 2.0)] == old
        killed._close()  # gone without an ack, as a SIGKILL leaves it: 10 messages pending on the consumer
        pub.publish(new)
        restarted = from_url(pub.url)
        t0 = time.monotonic()
        restarted._connect()
        got = restarted._receive(20, 2.0)
        assert [m[0] for m in got] == old + new  # not after ack_wait (60 s), and before the newer ones
        assert time.monotonic() - t0 < 10
        restarted._close()  # a reconnect of the same source keeps the consumer: nothing is delivered twice
        restarted._connect()
        assert restarted._receive(20, 0.5) == []
        restarted._close()
    finally:
        pub.cleanup()
