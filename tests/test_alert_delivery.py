"""Delivery against real endpoints on loopback: HTTP, SMTP, Mosquitto, Redis, NATS; the outbox log."""

import asyncio
import email
import json
import subprocess
import threading
import time
import uuid

import pytest
from alert_servers import free_port, hook_server, smtp_server

from workbench.alerts.mail import BusNotifier, EmailNotifier
from workbench.alerts.notifiers import JsonlNotifier, WebhookNotifier
from workbench.alerts.outbox import Outbox
from workbench.bus import Backoff, MqttPublisher, NatsPublisher, PublishError, RedisStreamPublisher


def note(i, receiver="hook"):
    return {"id": f"{receiver}/g/{i}", "receiver": receiver, "status": "firing", "severity": "page", "summary": f"n{i}"}


def test_outbox_webhook_failing_then_recovering_loses_nothing_and_repeats_nothing(tmp_path):
    with hook_server() as hook:
        hook.fail_next = 6  # the endpoint is down for the first six attempts
        box = Outbox({"hook": WebhookNotifier(hook.url, retries=8, backoff=0.02)}, log=tmp_path / "outbox.jsonl")
        box.start()
        t0 = time.perf_counter()
        for i in range(20):
            box.put(note(i))
        put_s = time.perf_counter() - t0
        assert box.drain(30)
        box.close()
    assert [m["id"] for m in hook.received] == [f"hook/g/{i}" for i in range(20)]
    assert hook.attempts == 26
    assert box.stats()["delivered"] == 20 and box.stats()["failed"] == 0
    assert put_s < 1.0  # the pipeline thread never waited for the failing endpoint


def test_outbox_restart_redelivers_pending_and_drops_repeated_ids(tmp_path):
    log = tmp_path / "outbox.jsonl"
    with hook_server() as hook:
        hook.fail_next = 1000
        box = Outbox(
            {"hook": WebhookNotifier(hook.url, retries=0, backoff=0.01)}, log=log, retry_base=0.01, retry_cap=0.01
        )
        box.start()
        for i in range(3):
            box.put(note(i))
        time.sleep(0.2)
        box.close()  # the process stops with three notifications undelivered
        assert hook.received == []
        hook.fail_next = 0
        again = Outbox({"hook": WebhookNotifier(hook.url, retries=0)}, log=log)
        assert again.stats()["pending"] == 3
        again.start()
        for i in range(5):  # a replay after the restart regenerates the same ids, and two new ones
            again.put(note(i))
        assert again.drain(10)
        again.close()
    assert sorted(m["id"] for m in hook.received) == [f"hook/g/{i}" for i in range(5)]
    assert again.stats()["duplicates"] == 3


def test_outbox_slow_receiver_never_blocks_put_and_everything_is_delivered(tmp_path):
    gate = threading.Event()

    class Slow(JsonlNotifier):
        def send(self, message):
            gate.wait(10)
            super().send(message)

    box = Outbox({"log": Slow(tmp_path / "out.jsonl")}, log=tmp_path / "outbox.jsonl")
    box.start()
    for i in range(10):
        box.put(note(i, "log"))
    assert box.stats()["pending"] >= 9
    gate.set()
    assert box.drain(10)
    box.close()
    lines = [json.loads(x)["id"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(lines) == sorted(f"log/g/{i}" for i in range(10))


def test_outbox_gives_up_a_resolution_only_after_resolved_ttl(tmp_path):
    from datetime import UTC, datetime

    from workbench.clock import ManualClock

    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    box = Outbox(
        {"hook": WebhookNotifier(f"http://127.0.0.1:{free_port()}/", retries=0, clock=clock)},
        log=tmp_path / "o.jsonl",
        retry_base=1,
        retry_cap=60,
        resolved_ttl=3600,
        clock=clock,
        poll=0.005,
    )
    box.start()
    box.put({**note(1), "group_key": "g", "status": "resolved"})
    while box.stats()["retries"] < 1:
        time.sleep(0.01)
    clock.advance(3000)  # still within resolved_ttl: retried, not given up
    while box.stats()["retries"] < 2:
        time.sleep(0.01)
    assert box.stats()["given_up"] == 0
    clock.advance(700)
    assert box.drain(10)
    box.close()
    last = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[-1])
    assert last["op"] == "failed" and "resolved_ttl" in last["error"]
    assert box.stats()["given_up"] == 1 and box.stats()["failed"] == 1


def test_email_over_smtp():
    with smtp_server() as (port, received):
        EmailNotifier("127.0.0.1", port, sender="wb@example.org", to=["ops@example.org"]).notify(
            {**note(1), "alerts": [{"status": "firing", "summary": "cpu high", "labels": {"host": "h1"}}]}
        )
    assert len(received) == 1
    msg = email.message_from_bytes(received[0].content)
    assert msg["Subject"] == "[FIRING] page: n1"
    assert received[0].rcpt_tos == ["ops@example.org"]
    assert "cpu high [host=h1]" in msg.get_payload(decode=True).decode()


@pytest.mark.services
def test_mqtt_publish_arrives_at_a_real_subscriber():
    import paho.mqtt.client as mqtt

    topic = f"wb-test/{uuid.uuid4().hex}/alerts"
    got, ready = [], threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect("127.0.0.1", 1883)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    assert ready.wait(5)
    notifier = BusNotifier(MqttPublisher("127.0.0.1", 1883), topic)
    notifier.notify(note(1))
    notifier.notify(note(2))
    notifier.close()
    deadline = time.time() + 5
    while len(got) < 2 and time.time() < deadline:
        time.sleep(0.02)
    sub.loop_stop()
    sub.disconnect()
    assert [json.loads(p)["id"] for p in got] == ["hook/g/1", "hook/g/2"]


@pytest.mark.services
def test_redis_stream_xadd_with_maxlen():
    import redis

    key = f"wb-test-alerts-{uuid.uuid4().hex}"
    client = redis.Redis("127.0.0.1", 6379)
    try:
        pub = RedisStreamPublisher(maxlen=10)
        for i in range(300):
            pub.publish(key, json.dumps({"i": i}).encode())
        pub.close()
        entries = client.xrange(key)
        assert len(entries) < 300  # trimmed (MAXLEN ~ trims whole nodes)
        assert json.loads(entries[-1][1][b"payload"]) == {"i": 299}
    finally:
        client.delete(key)
        client.close()


@pytest.mark.services
def test_nats_jetstream_publish_is_stored_in_the_stream():
    import nats

    name = f"WBTEST_{uuid.uuid4().hex[:10].upper()}"
    subject = f"wbtest.{name.lower()}.alerts"
    pub = NatsPublisher("nats://127.0.0.1:4222", stream=name, subjects=[f"wbtest.{name.lower()}.>"])
    notifier = BusNotifier(pub, subject)
    notifier.notify(note(1))
    notifier.notify(note(2))
    notifier.close()

    async def read():
        nc = await nats.connect("nats://127.0.0.1:4222")
        js = nc.jetstream()
        try:
            msgs = [await js.get_msg(name, seq) for seq in (1, 2)]
            return [json.loads(m.data)["id"] for m in msgs]
        finally:
            await js.delete_stream(name)
            await nc.close()

    assert asyncio.run(read()) == ["hook/g/1", "hook/g/2"]


def test_publisher_connection_error_is_one_clear_error():
    port = free_port()
    pub = RedisStreamPublisher("127.0.0.1", port, backoff=Backoff(retries=1, base=0.01))
    with pytest.raises(PublishError, match=rf"redis://127\.0\.0\.1:{port}/0: cannot publish to 'x': ConnectionError"):
        pub.publish("x", b"1")
    mq = MqttPublisher("127.0.0.1", port, backoff=Backoff(retries=1, base=0.01))
    with pytest.raises(PublishError, match=rf"mqtt://127\.0\.0\.1:{port}: cannot publish to 'x'"):
        mq.publish("x", b"1")
    nt = NatsPublisher(f"nats://127.0.0.1:{port}", backoff=Backoff(retries=0, base=0.01), timeout=1)
    with pytest.raises(PublishError, match=rf"nats://127\.0\.0\.1:{port}: cannot publish to 'x'"):
        nt.publish("x", b"1")
    nt.close()


def test_redis_publisher_reconnects_after_a_private_server_restart(tmp_path):
    port = free_port()

    def server():
        return subprocess.Popen(
            ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    import redis

    def wait_up():
        for _ in range(100):
            try:
                redis.Redis("127.0.0.1", port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("private redis did not start")

    proc = server()
    try:
        wait_up()
        pub = RedisStreamPublisher("127.0.0.1", port, backoff=Backoff(retries=30, base=0.05, cap=0.2))
        pub.publish("s", b"before")
        proc.terminate()
        proc.wait(5)
        restarted: list = []
        timer = threading.Timer(0.5, lambda: restarted.append(server()))
        timer.start()
        pub.publish("s", b"after")  # fails, backs off, reconnects once the server is back
        timer.join()
        assert pub.reconnects >= 1
        assert [e[1][b"payload"] for e in redis.Redis("127.0.0.1", port).xrange("s")] == [b"after"]
        pub.close()
    finally:
        proc.kill()
        for p in restarted:
            p.terminate()
            p.wait(5)


def test_outbox_log_is_compacted_and_still_drops_repeats(tmp_path):
    log = tmp_path / "o.jsonl"
    box = Outbox({"log": JsonlNotifier(tmp_path / "out.jsonl")}, log=log, keep_ids=5)
    box.start()
    for i in range(30):
        box.put(note(i, "log"))
    assert box.drain(10)
    box.close()
    assert box.stats()["compactions"] >= 1
    assert len(log.read_text().splitlines()) <= 2 * 5 + 2 * 10
    again = Outbox({"log": JsonlNotifier(tmp_path / "out.jsonl")}, log=log, keep_ids=5)
    again.start()
    again.put(note(29, "log"))  # a recent id: still known, dropped
    assert again.drain(5)
    again.close()
    assert again.stats()["duplicates"] == 1
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 30


def test_receivers_from_yaml_settings_deliver_through_a_pipeline(tmp_path):
    import polars as pl

    import workbench as wb
    from workbench.alerts.receivers import build_receivers
    from workbench.testing import FrameSource, server_metrics_frame

    with hook_server() as hook:
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            "evaluation_interval: 10s\n"  # the frame spans less than a minute
            "rules:\n  - {name: any, kind: threshold, metric: count, value: 0}\n"
            "routes:\n  - {receivers: [ops, log], group_wait: 0s}\n"
            f"receivers:\n  ops: {{kind: webhook, url: '{hook.url}', secret: k}}\n"
            f"  log: {{kind: jsonl, path: '{tmp_path / 'a.jsonl'}'}}\n"
        )
        pipe = wb.Pipeline(FrameSource([server_metrics_frame(300, hosts=2)]), name="alerts-yaml-receivers")
        pipe.standard("server_metrics", wb.Tumbling("10s"), lateness="0s")
        node = pipe.alerts(rules, outbox=tmp_path / "outbox.jsonl")
        pipe.run()
        assert node.manager.outbox.drain(10)
        node.manager.close()
    assert [m["status"] for m in hook.received] == ["firing"]
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 1
    assert pl.DataFrame(hook.received[0]["alerts"])["fingerprint"].to_list() == ["any/h0", "any/h1"]
    with pytest.raises(Exception, match=r"receiver 'm' \(email\): .*to"):
        build_receivers({"m": {"kind": "email", "host": "x"}})
