"""Test helpers for the connector tests: events, raw-client publishers, private brokers, PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

DSN = "postgresql://postgres@127.0.0.1:5432/test"
BASE_MS = 1_700_000_000_000


def tag() -> str:
    return uuid.uuid4().hex[:10]


def events(start: int, stop: int, *, hosts: int = 4, step_ms: int = 20) -> list[bytes]:
    """Known server_metrics events e<start>…e<stop-1>, event time rising ``step_ms`` each."""
    return [
        json.dumps(
            {
                "event_id": f"e{i}",
                "ts": BASE_MS + i * step_ms,
                "host": f"h{i % hosts}",
                "cpu": float(i % 100),
                "mem": 50.0,
                "latency_ms": 10.0,
                "status": 200,
            }
        ).encode()
        for i in range(start, stop)
    ]


def closing_event(n: int, *, step_ms: int = 20) -> bytes:
    """One event far enough ahead to close every window of events 0…n-1."""
    return json.dumps(
        {
            "event_id": "closer",
            "ts": BASE_MS + n * step_ms + 60_000,
            "host": "zz",
            "cpu": 1.0,
            "mem": 1.0,
            "latency_ms": 1.0,
            "status": 200,
        }
    ).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pg_windows(schema: str) -> tuple[int, int, int]:
    """(rows, distinct (host, window_start), sum(count)) of schema.windows, the closing event's aside."""
    with psycopg.connect(DSN) as c:
        exists = c.execute("select to_regclass(%s)", (f"{schema}.windows",)).fetchone()
        if exists is None or exists[0] is None:
            return 0, 0, 0
        row = c.execute(
            f"select count(*), count(distinct (host, window_start)), coalesce(sum(count), 0) from {schema}.windows "
            "where host <> 'zz'"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])


def pg_drop(schema: str) -> None:
    with psycopg.connect(DSN, autocommit=True) as c:
        c.execute(f"drop schema if exists {schema} cascade")


# -- publishers (raw client libraries) -------------------------------------------------------
class MqttPub:
    def __init__(self, port: int = 1883) -> None:
        self.port, self.t = port, tag()
        self.topic = f"wbtest/{self.t}"
        self.client_id = f"wb-{self.t}"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}/{self.topic}/#?client_id={self.client_id}"

    def _client(self, cid: str = "") -> Any:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid or f"pub-{tag()}", protocol=mqtt.MQTTv5)
        return c

    def setup(self) -> None:
        """Create the consumer's persistent session (messages published before it would be lost)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = self._client(self.client_id)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        c.loop_start()
        c.subscribe(f"{self.topic}/#", qos=1)[1]
        time.sleep(0.3)
        c.disconnect()
        c.loop_stop()

    def publish(self, payloads: list[bytes]) -> None:
        c = self._client()
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        infos = [c.publish(f"{self.topic}/h{i % 4}", p, qos=1) for i, p in enumerate(payloads)]
        for info in infos:
            info.wait_for_publish(10)
        c.disconnect()
        c.loop_stop()

    def cleanup(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = self._client(self.client_id)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        try:
            c.connect("127.0.0.1", self.port, clean_start=True, properties=props)
            c.loop_start()
            time.sleep(0.2)
            c.disconnect()
            c.loop_stop()
        except OSError:
            pass


class RedisPub:
    def __init__(self, port: int = 6379) -> None:
        import redis

        self.port, self.t = port, tag()
        self.stream = f"wbtest-{self.t}"
        self.r = redis.Redis(port=port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.stream}?group=g{self.t}&create=true"

    def setup(self) -> None:
        pass

    def publish(self, payloads: list[bytes]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for p in payloads:
            pipe.xadd(self.stream, {"data": p})
        pipe.execute()

    def cleanup(self) -> None:
        import contextlib

        import redis

        with contextlib.suppress(redis.ConnectionError):
            self.r.delete(self.stream)


class NatsPub:
    def __init__(self, port: int = 4222) -> None:
        self.port, self.t = port, tag()
        self.stream, self.subject = f"WB{self.t}", f"wbtest.{self.t}"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}/{self.subject}.>?stream={self.stream}&durable=d{self.t}"

    async def _js(self, fn: Any) -> Any:
        import nats

        nc = await nats.connect(f"nats://127.0.0.1:{self.port}", connect_timeout=2)
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    def setup(self) -> None:
        async def add(js: Any) -> None:
            await js.add_stream(name=self.stream, subjects=[f"{self.subject}.>"])

        asyncio.run(self._js(add))

    def publish(self, payloads: list[bytes]) -> None:
        async def pub(js: Any) -> None:
            futs = [await js.publish_async(f"{self.subject}.h{i % 4}", p) for i, p in enumerate(payloads)]
            await asyncio.gather(*futs)

        asyncio.run(self._js(pub))

    def cleanup(self) -> None:
        import contextlib

        async def delete(js: Any) -> None:
            await js.delete_stream(self.stream)

        with contextlib.suppress(Exception):
            asyncio.run(self._js(delete))


class KafkaPub:
    """librdkafka's mock cluster (no Kafka broker can be installed here), owned by a producer."""

    _producer: Any = None
    _boot = ""

    def __init__(self) -> None:
        from confluent_kafka import Producer

        if KafkaPub._producer is None:  # one mock cluster per test process, kept alive by its producer
            KafkaPub._producer = Producer({"test.mock.num.brokers": 1, "bootstrap.servers": "mock:1", "log_level": 3})
            md = KafkaPub._producer.list_topics(timeout=10)
            broker = next(iter(md.brokers.values()))
            KafkaPub._boot = f"{broker.host}:{broker.port}"
        self.t = tag()
        self.topic = f"wbtest-{self.t}"

    @property
    def url(self) -> str:
        return f"kafka://{self._boot}/{self.topic}?group=g{self.t}&session.timeout.ms=6000&heartbeat.interval.ms=500"

    def setup(self) -> None:
        pass

    def publish(self, payloads: list[bytes]) -> None:
        p = KafkaPub._producer
        for i, payload in enumerate(payloads):
            # one partition, so event time rises in consumption order (the watermark's concern, not Kafka's)
            p.produce(self.topic, payload, key=f"h{i % 4}".encode(), partition=0)
        p.poll(0)
        assert p.flush(10) == 0

    def cleanup(self) -> None:
        pass


PUBLISHERS = {"mqtt": MqttPub, "redis": RedisPub, "nats": NatsPub, "kafka": KafkaPub}


# -- private brokers (for restarts) ---------------------------------------------------------
class PrivateBroker:
    """A broker process of our own on a free port; ``restart()`` keeps the port and data dir."""

    def __init__(self, kind: str) -> None:
        self.kind, self.port = kind, free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"wb-{kind}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.kind == "mqtt":
            conf = self.dir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                f"persistence_location {self.dir}/\nmax_queued_messages 0\n"
            )
            return ["/usr/sbin/mosquitto", "-c", str(conf)]
        if self.kind == "redis":
            return [
                "/usr/bin/redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.dir),
            ]
        if self.kind == "nats":
            return ["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.dir)]
        raise ValueError(self.kind)

    def start(self) -> None:
        log = open(self.dir / "broker.log", "ab")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log)
        wait_for(self._listening, 10, f"{self.kind} on port {self.port}")

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
