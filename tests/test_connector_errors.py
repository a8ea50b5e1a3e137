"""Connector behaviour that is not recovery: one clear message per configuration error,
dead letters keep the raw payload, HTTP JSON polling, the PostgreSQL upsert and the
pipeline's commit hook (acks only after a durable checkpoint)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import polars as pl
import psycopg
import pytest
from connectors import DSN, PUBLISHERS, KafkaPub, PrivateBroker, events, free_port, pg_drop, tag, wait_for

from workbench import CheckpointStore, ConfigError, Pipeline, SourceError, Tumbling
from workbench.errors import SinkError
from workbench.sources import from_url
from workbench.testing import FrameSource, server_metrics_frame


# -- one message per configuration error -------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("mqtt://127.0.0.1:{port}/a/#", r"cannot connect: ConnectionRefusedError"),
        ("redis://127.0.0.1:{port}/s?group=g", r"cannot connect: ConnectionError: .*refused"),
        ("nats://127.0.0.1:{port}/a.>?stream=S", r"no NATS server answered at nats://127.0.0.1:\d+"),
        ("kafka://127.0.0.1:{port}/t?group=g&connect_timeout=1", r"no Kafka broker answered at 127.0.0.1:\d+"),
        ("http://127.0.0.1:{port}/api", r"cannot connect: .*refused"),
    ],
)
def test_a_refused_connection_is_one_error_naming_the_url(url: str, pattern: str) -> None:
    url = url.format(port=free_port())
    src = from_url(url.replace("&connect_timeout=1", ""), **({"connect_timeout": 1} if "kafka" in url else {}))
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=pattern) as info:
        list(src.batches())
    assert url.split("?")[0].split("://")[1].split("/")[0] in str(info.value)
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("mqtt://127.0.0.1:1883", "no topic"),
        ("redis://127.0.0.1:6379/s", "consumer group is required"),
        ("kafka://127.0.0.1:9092/t", "consumer group is required"),
        ("redis://127.0.0.1:6379/s?group=g&colour=red", "unknown option 'colour'"),
        ("mqtt://127.0.0.1:1883/a/#?qos=2", "qos must be 0 or 1"),
        ("mqtt://127.0.0.1:port/a", "port must be a number"),
    ],
)
def test_bad_urls_are_config_errors(url: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        from_url(url)


@pytest.mark.services
def test_unknown_streams_and_topics_are_named() -> None:
    t = tag()
    with pytest.raises(SourceError, match=f"stream 'nope{t}' does not exist"):
        list(from_url(f"redis://127.0.0.1:6379/nope{t}?group=g").batches())
    with pytest.raises(SourceError, match=f"stream 'NOPE{t}' not found"):
        list(from_url(f"nats://127.0.0.1:4222/x{t}?stream=NOPE{t}").batches())
    with pytest.raises(SourceError, match=f"no stream for subject 'x{t}'"):
        list(from_url(f"nats://127.0.0.1:4222/x{t}").batches())
    kafka = KafkaPub()
    with pytest.raises(SourceError, match=f"topic 'nope{t}': .*[Uu]nknown topic"):
        list(from_url(f"kafka://{kafka._boot}/nope{t}?group=g").batches())


@pytest.mark.services
def test_auth_failures_say_so() -> None:
    redis = PrivateBroker("redis")
    mqtt = PrivateBroker("mqtt")
    try:
        redis_cmd = redis.command()
        redis.command = lambda: [*redis_cmd, "--requirepass", "s3cret"]  # type: ignore[method-assign]
        redis.start()
        with pytest.raises(SourceError, match="authentication failed"):
            list(from_url(f"redis://:wrong@127.0.0.1:{redis.port}/s?group=g").batches())
        mqtt_cmd = mqtt.command()
        conf = mqtt.dir / "mosquitto.conf"
        conf.write_text(conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
        mqtt.command = lambda: mqtt_cmd  # type: ignore[method-assign]
        mqtt.start()
        with pytest.raises(SourceError, match="refused the connection: Not authorized"):
            list(from_url(f"mqtt://someone:pw@127.0.0.1:{mqtt.port}/a/#").batches())
    finally:
        redis.close()
        mqtt.close()


# -- dead letters keep the raw payload ---------------------------------------------------------------
@pytest.mark.services
@pytest.mark.parametrize("kind", ["mqtt", "redis", "nats"])
def test_undecodable_messages_go_to_dead_letter_with_their_payload(kind: str) -> None:
    pub = PUBLISHERS[kind]()
    pub.setup()
    try:
        good = events(0, 3)
        pretty = json.dumps(json.loads(events(3, 4)[0]), indent=2).encode()  # one record over several lines
        bad = [b"not json at all", b'{"event_id": "x", "ts": "oops", "host": "h"}']
        pub.publish([good[0], bad[0], good[1], pretty, bad[1], good[2]])
        pipe = Pipeline(from_url(pub.url, max_delay=0.1), name=f"dead-{kind}", checkpoint_batches=1)
        pipe.standard("server_metrics", Tumbling("1s"))
        dead = pipe.collect("dead_letter")
        pipe.start()
        wait_for(lambda: pipe.counts()["ingested"] >= 6, 20, "six messages")
        pipe.stop()
        counts = pipe.counts()
        assert counts["valid"] == 4 and counts["dead_lettered"] == 2, counts
        raws = [bytes(r) for r in pl.concat(dead)["raw"].to_list()]
        assert b"not json at all" in raws and bad[1] in raws
        assert pipe.health()["source"]["acked"] == 6
    finally:
        pub.cleanup()


# -- HTTP JSON polling ----------------------------------------------------------------------
def test_http_json_endpoint_is_polled_into_windows_and_repeats_are_deduplicated() -> None:
    body = b"[" + b",".join(events(0, 50)) + b"]"
    hits: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(time.monotonic())
            self.send_response(200 if self.path == "/api" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if self.path == "/api" else b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(SourceError, match="HTTP 404"):
            list(from_url(f"{base}/missing").batches())
        pipe = Pipeline(from_url(f"{base}/api", interval=0.2), name="http-json", checkpoint_batches=1)
        pipe.standard("server_metrics", Tumbling("1s"), lateness="0s")
        pipe.start()
        wait_for(lambda: pipe.counts()["ingested"] >= 150, 20, "three polls")
        pipe.stop()
        counts = pipe.counts()
        assert counts["valid"] == 50 and counts["duplicates"] == counts["ingested"] - 50, counts
        assert pipe.health()["source"]["polls"] >= 3
    finally:
        server.shutdown()


# -- PostgreSQL sink -----------------------------------------------------------------------
@pytest.mark.services
def test_postgres_sink_upserts_so_a_replay_doubles_nothing(tmp_path: Any) -> None:
    schema = f"wbtest_{tag()}"
    frames = [server_metrics_frame(400, hosts=3, seed=s) for s in range(2)]
    try:
        for run in range(2):  # the second run replays the same input: same keys, no new rows
            pipe = Pipeline(FrameSource(frames), name=f"pg-{run}", checkpoints=CheckpointStore(tmp_path / str(run)))
            pipe.standard("server_metrics", Tumbling("10s"), lateness="0s")
            pipe.to_postgres(DSN, outputs=["windows"], schema=schema)
            got = pipe.collect("windows")
            pipe.run()
            expected = pl.concat(got)
            with psycopg.connect(DSN) as c:
                rows = c.execute(f"select host, window_start, count from {schema}.windows").fetchall()
            assert len(rows) == expected.height
            assert sum(r[2] for r in rows) == expected["count"].sum()
        bad = Pipeline(FrameSource([]), name="pg-bad")
        bad.standard("server_metrics", Tumbling("10s"))
        with pytest.raises(SinkError, match=r"cannot connect: .*127\.0\.0\.1.*refused"):
            bad.to_postgres(f"postgresql://postgres:pw@127.0.0.1:{free_port()}/test")
    finally:
        pg_drop(schema)


# -- the commit hook --------------------------------------------------------------------------
class Recording(FrameSource):
    """A source that records, at each commit, the offset the checkpoint on disk holds."""

    def __init__(self, frames: list[pl.DataFrame], store: CheckpointStore) -> None:
        super().__init__(frames)
        self.store = store
        self.commits: list[tuple[int, int | None]] = []

    def commit(self, offset: Any) -> None:
        state = self.store.load()
        self.commits.append((offset, None if state is None else state["source"]["offset"]))


def test_a_source_is_committed_only_what_a_durable_checkpoint_covers(tmp_path: Any) -> None:
    store = CheckpointStore(tmp_path)
    src = Recording([server_metrics_frame(50, seed=i) for i in range(7)], store)
    pipe = Pipeline(src, name="commit-hook", checkpoints=store, checkpoint_batches=3)
    pipe.standard("server_metrics", Tumbling("10s"))
    pipe.run()
    assert [c[0] for c in src.commits] == [3, 6, 7]
    assert all(offset == on_disk for offset, on_disk in src.commits)


@pytest.mark.services
def test_batches_are_cut_at_max_rows_and_payload_newlines_do_not_split_records() -> None:
    from workbench.sources.broker import joined_lines

    assert joined_lines([b"a", b"b\nc"]) == b"a\nb c\n"
    assert joined_lines([]) == b""
    pub = PUBLISHERS["redis"]()
    try:
        pub.publish(events(0, 250))
        src = from_url(pub.url, max_rows=100, max_delay=5)
        sizes = []
        for batch in src.batches():
            sizes.append(batch.rows)
            assert batch.data is not None and batch.data.count(b"\n") == batch.rows
            src.commit(batch.offset)
            if sum(sizes) >= 250:
                src.stop()
        assert sizes == [100, 100, 50] or (max(sizes) <= 100 and sum(sizes) == 250), sizes
    finally:
        pub.cleanup()
