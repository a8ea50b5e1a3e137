"""``workbench bench connectors``: sustained events/s from each broker into window results.

For every connector the benchmark starts a PRIVATE broker on a free port (so no
shared server is loaded or changed), then at the same time

* a second process publishes ``events`` server-metrics events as fast as the raw
  client library allows and reports the broker's publish rate (events/s until the
  broker acknowledged the last one), and
* this process runs (at once, or with ``--backlog`` once all is published) the
  standard pipeline (decode → validate → dedupe → 1 s windows) from the source URL,
  checkpointing every second — acknowledgements only after checkpoints, as in
  production — until every event is in a window.

The pipeline rate is events / (time from the first message to the last window).
Kafka runs against librdkafka's mock cluster (there is no Kafka broker here), so its
numbers are the client's, not a broker's.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError

__all__ = ["bench_connectors"]

_BASE_MS = 1_700_000_000_000
_BINARIES = {"mqtt": "/usr/sbin/mosquitto", "redis": "/usr/bin/redis-server", "nats": "/usr/sbin/nats-server"}


def _payloads(n: int, hosts: int = 100) -> list[bytes]:
    return [
        json.dumps(
            {"event_id": f"e{i}", "ts": _BASE_MS + i, "host": f"h{i % hosts}", "cpu": float(i % 100), "mem": 50.0,
             "latency_ms": 12.5, "status": 200}
        ).encode()
        for i in range(n)
    ] + [json.dumps({"event_id": "end", "ts": _BASE_MS + n + 60_000, "host": "zz", "cpu": 0.0, "mem": 0.0,
                     "latency_ms": 0.0, "status": 200}).encode()]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"broker on port {port} did not start")


def _broker(kind: str, port: int, folder: Path) -> subprocess.Popen[bytes]:
    if kind == "mqtt":
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n"
        )
        cmd = [_BINARIES[kind], "-c", str(conf)]
    elif kind == "redis":
        cmd = [_BINARIES[kind], "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)]
    else:
        cmd = [_BINARIES[kind], "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(folder)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port)
    return proc


# -- the publisher (second process) ------------------------------------------------------------
def _publish(kind: str, target: str, n: int) -> float:
    """Publish ``n`` events (+ one closing event); the publish rate in events/s."""
    payloads = _payloads(n)
    if kind == "mqtt":
        import paho.mqtt.client as mqtt

        port, topic = target.split("/", 1)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{port}", protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(1000)
        c.connect("127.0.0.1", int(port))
        c.loop_start()
        t0 = time.perf_counter()
        for i in range(0, len(payloads), 1000):  # paho's own queue is bounded: publish in chunks
            infos = [c.publish(f"{topic}/h{j % 8}", p, qos=1) for j, p in enumerate(payloads[i : i + 1000])]
            for info in infos:
                info.wait_for_publish(120)
        seconds = time.perf_counter() - t0
        c.disconnect()
        c.loop_stop()
    elif kind == "redis":
        import redis

        port, stream = target.split("/", 1)
        r = redis.Redis(port=int(port))
        t0 = time.perf_counter()
        for i in range(0, len(payloads), 1000):
            pipe = r.pipeline(transaction=False)
            for p in payloads[i : i + 1000]:
                pipe.xadd(stream, {"data": p})
            pipe.execute()
        seconds = time.perf_counter() - t0
    elif kind == "nats":
        import nats

        port, subject = target.split("/", 1)

        async def main() -> float:
            nc = await nats.connect(f"nats://127.0.0.1:{port}")
            js = nc.jetstream()
            t0 = time.perf_counter()
            for i in range(0, len(payloads), 1000):
                futs = [await js.publish_async(subject, p) for p in payloads[i : i + 1000]]
                await asyncio.gather(*futs)
            seconds = time.perf_counter() - t0
            await nc.close()
            return seconds

        seconds = asyncio.run(main())
    else:
        from confluent_kafka import Producer

        boot, topic = target.split("/", 1)
        prod = Producer({"bootstrap.servers": boot, "linger.ms": 5, "log_level": 3})
        t0 = time.perf_counter()
        for p in payloads:
            while True:
                try:
                    prod.produce(topic, p, partition=0)
                    break
                except BufferError:
                    prod.poll(0.01)
        prod.flush(120)
        seconds = time.perf_counter() - t0
    return len(payloads) / seconds


# -- the consumer (this process) -------------------------------------------------------------
def _consume(url: str, n: int, folder: Path, timeout: float) -> dict[str, Any]:
    from workbench.operators.windows import Tumbling
    from workbench.pipeline import Pipeline
    from workbench.sources.factory import from_url
    from workbench.storage.checkpoints import CheckpointStore

    src = from_url(url, max_rows=20_000, max_delay=0.2)
    pipe = Pipeline(src, name=f"bench:{url}", checkpoints=CheckpointStore(folder / "checkpoint"), checkpoint_every=1)
    windowed = [0]
    done_at = [0.0]

    def count(frame: Any) -> None:
        windowed[0] += int(frame.filter(frame["host"] != "zz")["count"].sum())
        if windowed[0] >= n and not done_at[0]:
            done_at[0] = time.perf_counter()

    first = [0.0]

    def arrived(batch: Any) -> None:
        if batch.rows and not first[0]:
            first[0] = time.perf_counter()

    pipe.subscribe_raw(arrived)  # before the graph: streamz emits to downstreams in order
    pipe.standard("server_metrics", Tumbling("1s"), lateness="1s", dedupe_ttl=120)
    pipe.subscribe("windows", count)
    pipe.start()
    end = time.monotonic() + timeout
    while not done_at[0] and time.monotonic() < end and pipe.running:
        time.sleep(0.05)
    pipe.stop(timeout=30)
    return {"windowed": windowed[0], "done_at": done_at[0], "first_at": first[0], "health": src.health(), "pipe": pipe}


def _bench_one(kind: str, n: int, timeout: float, backlog: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"wb-bench-{kind}-"))
    broker = None
    owner: Any = None
    try:
        tag = f"{int(time.time() * 1000) % 10**9}"
        if kind == "kafka":
            from confluent_kafka import Producer

            owner = Producer({"test.mock.num.brokers": 1, "bootstrap.servers": "mock:1", "log_level": 3})
            b = next(iter(owner.list_topics(timeout=10).brokers.values()))
            boot = f"{b.host}:{b.port}"
            owner.produce(f"bench{tag}", b"", partition=0)  # the topic exists before the consumer starts
            owner.flush(10)
            url, target = f"kafka://{boot}/bench{tag}?group=bench", f"{boot}/bench{tag}"
            n_expect = n
        else:
            port = _free_port()
            broker = _broker(kind, port, folder)
            if kind == "mqtt":
                url, target = f"mqtt://127.0.0.1:{port}/bench/#?client_id=bench&max_inflight=1000", f"{port}/bench"
            elif kind == "redis":
                import redis

                redis.Redis(port=port).xgroup_create(f"bench{tag}", "bench", id="0", mkstream=True)
                url, target = f"redis://127.0.0.1:{port}/bench{tag}?group=bench", f"{port}/bench{tag}"
            else:
                import nats

                async def add() -> None:
                    nc = await nats.connect(f"nats://127.0.0.1:{port}")
                    await nc.jetstream().add_stream(name="BENCH", subjects=["bench.>"])
                    await nc.close()

                asyncio.run(add())
                url, target = f"nats://127.0.0.1:{port}/bench.>?stream=BENCH&durable=bench", f"{port}/bench.x"
            n_expect = n
        if kind == "mqtt":  # the session must exist before publishing, or the broker drops the messages
            from workbench.sources.factory import from_url
            from workbench.sources.mqtt import MqttSource

            probe = from_url(url)
            assert isinstance(probe, MqttSource)
            probe._open()
            probe._shut()
        pub = subprocess.Popen(
            [sys.executable, "-m", "workbench.bench.connectors", kind, target, str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        if backlog:  # the pipeline starts on a full backlog: its own capacity, not the publisher's
            out, _ = pub.communicate(timeout=300)
            got = _consume(url, n_expect, folder, timeout)
        else:
            got = _consume(url, n_expect, folder, timeout)
            out, _ = pub.communicate(timeout=120)
        publish_eps = float(out.strip().splitlines()[-1]) if out.strip() else None
        seconds = (got["done_at"] or time.perf_counter()) - got["first_at"]  # first message → last window
        pipe = got["pipe"]
        return {
            "events": n,
            "publish_events_per_s": None if publish_eps is None else round(publish_eps),
            "pipeline_events_per_s": round(got["windowed"] / seconds) if seconds else None,
            "seconds": round(seconds, 2),
            "windowed": got["windowed"],
            "complete": got["windowed"] == n,
            "duplicates": pipe.counts()["duplicates"],
            "batches": pipe.batches,
            "acked": got["health"].get("acked"),
            "broker": "librdkafka mock cluster" if kind == "kafka" else f"private {_BINARIES[kind]}",
        }
    finally:
        if broker is not None:
            broker.kill()
            broker.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def bench_connectors(
    *, events: int = 100_000, connectors: list[str] | None = None, timeout: float = 300, backlog: bool = False
) -> dict:
    """Run the benchmark for each connector; a dict of results by connector.

    With ``backlog`` the pipeline starts only once every event is published (it then
    drains a full backlog: its own capacity); otherwise both run at once.
    """
    report: dict[str, Any] = {"events": events, "mode": "backlog" if backlog else "live"}
    for kind in connectors or ["mqtt", "redis", "nats"]:
        if kind not in ("mqtt", "redis", "nats", "kafka"):
            raise ConfigError(f"bench connectors: unknown connector {kind!r}; use mqtt, redis, nats, kafka")
        report[kind] = _bench_one(kind, events, timeout, backlog)
        print(f"bench connectors: {kind}: {report[kind]}", file=sys.stderr, flush=True)  # noqa: T201 - progress
    return report


if __name__ == "__main__":  # the publisher process: KIND TARGET N → prints events/s
    print(_publish(sys.argv[1], sys.argv[2], int(sys.argv[3])))  # noqa: T201
