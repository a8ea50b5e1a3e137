"""Pipeline outputs published to the real local brokers: one JSON message per row, at least once."""

from __future__ import annotations

import json
import threading
import uuid

import polars as pl
import pytest

import workbench as wb
from workbench.bus import MqttPublisher, RedisStreamPublisher
from workbench.bus.sink import BusSink

pytestmark = pytest.mark.services


def _pipeline(path, name):
    pipe = wb.Pipeline(wb.FileSource(path, max_rows=50), name=name)
    events = pipe.head.decode("server_metrics").validate("server_metrics").dedupe("event_id", ttl="10m")
    pipe.output("events", events)
    windows = events.window(wb.Tumbling("10s"), by="host", lateness="5s", aggs=wb.aggregations.SERVER_METRICS_AGGS)
    pipe.output("windows", windows)
    return pipe


def test_validated_events_reach_a_redis_stream_once_each_with_bad_lines_left_out(tmp_path, metric_lines):
    import redis

    lines = metric_lines(120) + b'{"broken\n' + metric_lines(5)  # 5 duplicates of e0..e4 and one bad line
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines)
    stream = f"wb-test-events-{uuid.uuid4().hex[:8]}"
    pipe = _pipeline(path, f"bus-{stream}")
    pipe.publish(RedisStreamPublisher(), outputs=["events"], topic=stream)
    pipe.run()
    client = redis.Redis("127.0.0.1", 6379)
    try:
        rows = [json.loads(e[1][b"payload"]) for e in client.xrange(stream)]
    finally:
        client.delete(stream)
    assert sorted(r["event_id"] for r in rows) == sorted(f"e{i}" for i in range(120))
    assert pipe.counts()["dead_lettered"] == 1 and pipe.counts()["duplicates"] == 5
    first = next(r for r in rows if r["event_id"] == "e1")
    assert first["host"] == "h1" and first["ts"].endswith("+00:00")  # event time as ISO-8601 with its offset


def test_window_rows_reach_a_real_mqtt_subscriber(tmp_path, metric_lines):
    import paho.mqtt.client as mqtt

    path = tmp_path / "events.jsonl"
    path.write_bytes(metric_lines(100))
    topic = f"wb-test/{uuid.uuid4().hex[:8]}/windows"
    got: list[dict] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", 1883)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        pipe = _pipeline(path, f"bus-mqtt-{uuid.uuid4().hex[:8]}")
        windows = pipe.collect("windows")
        pipe.publish(MqttPublisher(), outputs=["windows"], topic=topic)
        pipe.run()
        expected = pl.concat(windows)
        deadline = threading.Event()
        for _ in range(50):
            if len(got) >= expected.height:
                break
            deadline.wait(0.1)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert len(got) == expected.height
    assert sorted((r["host"], r["window_start"]) for r in got) == sorted(
        (h, s.isoformat()) for h, s in expected.select("host", "window_start").iter_rows()
    )


def test_rows_are_published_before_the_checkpoint_and_a_rollback_forgets_them():
    from streamz import Stream

    sent: list[bytes] = []

    class Failing:
        def publish(self, topic, payload):
            if len(sent) == 2:
                raise wb.WorkbenchError("broker gone")
            sent.append(payload)

        def close(self):
            pass

    source = Stream()
    sink = BusSink(source, Failing(), "out")
    source.emit(pl.DataFrame({"k": [1, 2, 3]}))
    with pytest.raises(wb.WorkbenchError, match="broker gone"):
        sink.commit(1)  # the checkpoint is not written: the epoch is replayed, so nothing is lost
    sink.rollback(1)
    assert sink.held_rows == 0 and len(sent) == 2


def test_max_held_bounds_the_rows_waiting():
    from streamz import Stream

    sent: list[bytes] = []

    class Recorder:
        def publish(self, topic, payload):
            sent.append(payload)

        def close(self):
            pass

    source = Stream()
    sink = BusSink(source, Recorder(), "out", max_held=5)
    for i in range(4):
        source.emit(pl.DataFrame({"k": [i, i]}))
    assert sink.held_rows <= 5 and len(sent) + sink.held_rows * 1 == 8
    with pytest.raises(wb.ConfigError, match="bus sink 'out': max_held must be > 0, not 0"):
        BusSink(source, Recorder(), "out", max_held=0)
