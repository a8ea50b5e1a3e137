"""Prometheus remote write into Workbench: the receiver's answers (204/400/401/413/503), its
dead letters and stale markers, and Debian's Prometheus scraping the node exporter and
remote-writing into ``workbench run``, checked sample for sample against its own
``query_range``."""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cramjam
import polars as pl
import pytest

from workbench import Pipeline, Tumbling
from workbench.sources import from_url
from workbench.sources.remote_write import (
    STALE_NAN_BITS,
    RemoteWriteSource,
    decode_write_request,
    encode_write_request,
    samples_frame,
)
from workbench.storage.lake import Lake

STALE = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
T0 = 1_700_000_000_000


def _post(source: RemoteWriteSource, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(source.host, source.port, timeout=30)
    try:
        conn.request(
            "POST",
            source.path,
            body=body,
            headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf", **(headers or {})},
        )
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class Running:
    """A pipeline over a remote-write source on a free port, run on its own thread."""

    def __init__(self, **options: object) -> None:
        self.source = from_url("remote-write://127.0.0.1:0/api/v1/write", **options)
        assert isinstance(self.source, RemoteWriteSource)
        self.pipe = Pipeline(self.source, name=f"rw-{id(self)}")
        self.pipe.standard("prom_samples", Tumbling("10s"), lateness="1h", events=True)
        self.events = self.pipe.collect("events")
        self.dead = self.pipe.collect("dead_letter")
        self.source.listen()
        self.pipe.start()

    def rows(self) -> pl.DataFrame:
        """The stored samples, ``ts`` as epoch milliseconds."""
        if not self.events:
            return pl.DataFrame()
        return pl.concat(self.events).with_columns(pl.col("ts").dt.epoch("ms"))

    def close(self) -> None:
        self.pipe.close()
        self.source.close()


@pytest.fixture
def running() -> Iterator[Running]:
    r = Running()
    yield r
    r.close()


def test_samples_frame_has_the_scrape_row_shape_and_leaves_stale_markers_out():
    body = encode_write_request(
        [
            ({"__name__": "node_load1", "instance": "h:9100", "job": "node"}, [(T0, 0.5), (T0 + 1000, math.nan)]),
            ({"__name__": "up", "instance": "h:9100", "job": "node", "q": 'a"b\\c'}, [(T0, 1.0), (T0 + 1000, STALE)]),
        ]
    )
    frame, stale = samples_frame(decode_write_request(body))
    assert frame.columns == ["event_id", "ts", "instance", "metric", "labels", "series", "value", "rate"]
    assert frame["series"].to_list() == [
        'node_load1{instance="h:9100",job="node"}',
        'node_load1{instance="h:9100",job="node"}',
        'up{instance="h:9100",job="node",q="a\\"b\\\\c"}',
    ]
    assert frame["instance"].to_list() == ["h:9100"] * 3
    assert frame["ts"].to_list() == [T0, T0 + 1000, T0]
    v = frame["value"].to_list()
    assert v[0] == 0.5 and math.isnan(v[1]) and v[2] == 1.0  # an ordinary NaN is a value
    assert stale == [('up{instance="h:9100",job="node",q="a\\"b\\\\c"}', T0 + 1000)]
    assert frame["event_id"].n_unique() == 3 and frame["event_id"].str.len_chars().max() <= 40


def test_accepted_samples_reach_the_pipeline_and_a_stale_marker_marks_the_series(running: Running):
    labels = {"__name__": "temp", "job": "j", "instance": "a"}
    status, _ = _post(running.source, encode_write_request([(labels, [(T0, 1.5), (T0 + 15_000, 2.5)])]))
    assert status == 204
    got = running.rows()
    assert got.select("series", "ts", "value").rows() == [
        ('temp{instance="a",job="j"}', T0, 1.5),
        ('temp{instance="a",job="j"}', T0 + 15_000, 2.5),
    ]
    assert _post(running.source, encode_write_request([(labels, [(T0 + 30_000, STALE)])]))[0] == 204
    assert running.rows().height == 2  # the marker is not a value
    assert running.source.stale == {'temp{instance="a",job="j"}': T0 + 30_000}
    assert _post(running.source, encode_write_request([(labels, [(T0 + 45_000, 3.0)])]))[0] == 204
    assert running.source.stale == {}  # reporting again: no longer stale
    # Prometheus sends a request again when it saw no answer: dedupe drops the repeat
    assert _post(running.source, encode_write_request([(labels, [(T0 + 45_000, 3.0)])]))[0] == 204
    assert running.rows().height == 3 and running.pipe.counts()["duplicates"] == 1
    assert running.source.health()["stale_markers"] == 1


def test_counters_get_a_rate_across_requests_and_through_a_reset(running: Running):
    c = {"__name__": "requests_total", "job": "j"}
    g = {"__name__": "temperature", "job": "j"}
    first = encode_write_request([(c, [(T0, 10.0), (T0 + 2000, 16.0)]), (g, [(T0, 5.0)])])
    assert _post(running.source, first)[0] == 204
    assert _post(running.source, encode_write_request([(c, [(T0 + 4000, 3.0), (T0 + 5000, 5.0)])]))[0] == 204
    rows = running.rows().sort("series", "ts")
    assert rows.filter(pl.col("metric") == "requests_total")["rate"].to_list() == [None, 3.0, 1.5, 2.0]
    assert rows.filter(pl.col("metric") == "temperature")["rate"].to_list() == [None]
    assert running.source.snapshot()["last"].rows() == [('requests_total{job="j"}', T0 + 5000, 5.0)]


def test_garbage_is_400_and_a_dead_letter_with_a_reason_code(running: Running):
    assert _post(running.source, b"\xff" * 12)[0] == 400  # no snappy length header
    assert _post(running.source, bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff not protobuf")))[0] == 400
    assert _post(running.source, b"\x10\x00\x01")[0] == 400  # announces 16 bytes, holds garbage
    deadline = time.monotonic() + 10
    while sum(d.height for d in running.dead) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    dead = pl.concat(running.dead)
    assert sorted(dead["reason_code"].to_list()) == ["bad_protobuf", "bad_snappy", "bad_snappy"]
    assert dead["raw"][0] == b"\xff" * 12
    counts = running.pipe.counts()
    assert counts["dead_lettered"] == 3 and counts["ingested"] == 3 and counts["valid"] == 0


def test_413_for_a_big_body_and_for_a_snappy_header_announcing_too_much():
    r = Running(max_body=1000, max_decoded=10_000)
    try:
        assert _post(r.source, b"\x00" * 1001)[0] == 413
        # a 20-byte body announcing 1 GB decompressed: refused on its header, never decompressed
        announcing = bytes([0x80, 0x94, 0xEB, 0xDC, 0x03]) + b"\x00" * 15
        status, text = _post(r.source, announcing)
        assert status == 413 and "decompressed size" in text
        deadline = time.monotonic() + 10
        while sum(d.height for d in r.dead) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        dead = pl.concat(r.dead)
        assert dead["reason_code"].to_list() == ["too_large", "too_large"]
        assert "1,000,000,000 bytes" in dead["reason"][1]
        ok = encode_write_request([({"__name__": "x"}, [(T0, 1.0)])])
        assert _post(r.source, ok)[0] == 204  # still serving
    finally:
        r.close()


def test_401_without_the_bearer_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("WB_TEST_RW_TOKEN", "s3cret-token")
    r = Running(token_env="WB_TEST_RW_TOKEN")
    body = encode_write_request([({"__name__": "x"}, [(T0, 1.0)])])
    try:
        assert _post(r.source, body)[0] == 401
        assert _post(r.source, body, {"Authorization": "Bearer wrong"})[0] == 401
        assert _post(r.source, body, {"Authorization": "Bearer s3cret-token"})[0] == 204
        assert r.source.health()["unauthorized"] == 2
        assert "s3cret" not in json.dumps(r.source.health()) and "s3cret" not in r.source.shown
    finally:
        r.close()
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    src = RemoteWriteSource("remote-write://127.0.0.1:0/api/v1/write", token_file=str(token))
    src.listen()
    try:
        assert _post(src, body)[0] == 401  # nobody reads the queue: only the refusal is answered
    finally:
        src.close()


def test_503_when_the_bounded_queue_is_full():
    # nothing consumes this source: the first request waits in the queue, the next one is refused
    src = RemoteWriteSource("remote-write://127.0.0.1:0/api/v1/write", max_pending=1, ack_timeout="3s")
    src.listen()
    body = encode_write_request([({"__name__": "x"}, [(T0, 1.0)])])
    first: list[int] = []
    t = threading.Thread(target=lambda: first.append(_post(src, body)[0]))
    try:
        t.start()
        deadline = time.monotonic() + 5
        while src.health()["in_flight"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        status, text = _post(src, body)
        assert status == 503 and "busy" in text
        t.join(10)
        assert first == [503]  # never stored within ack_timeout: Prometheus must send it again
        assert src.health()["busy"] == 1 and src.health()["timeouts"] == 1
    finally:
        src.close()


# -- the real thing: Debian's Prometheus remote-writing into `workbench run` ------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(port: int, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not _up(port):
        assert time.monotonic() < deadline, f"{what} did not listen on 127.0.0.1:{port}"
        time.sleep(0.2)


def _query(prom: int, path: str, **params: str) -> list[dict]:
    url = f"http://127.0.0.1:{prom}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


SERIES = ["node_load1", "node_memory_MemAvailable_bytes", 'node_cpu_seconds_total{cpu="0",mode="idle"}', "up"]


@pytest.mark.services
def test_prometheus_remote_writes_into_workbench_exactly_what_it_stores(tmp_path: Path):
    prometheus = shutil.which("prometheus")
    exporter = shutil.which("prometheus-node-exporter")
    if prometheus is None or exporter is None:
        pytest.fail("Debian's prometheus and prometheus-node-exporter are needed: run .ci/services")
    helpers: list[subprocess.Popen] = []  # the node exporter (when the test runs one), then Prometheus
    node = 9100
    if not _up(node):  # the service is not up: the test runs its own exporter
        node = _free_port()
        helpers.append(subprocess.Popen([exporter, f"--web.listen-address=127.0.0.1:{node}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        _wait(node, "node exporter")
    rw, prom = _free_port(), _free_port()
    token = tmp_path / "token"
    token.write_text("rw-token-for-the-test\n")
    out = tmp_path / "out"
    wb = subprocess.Popen(
        [str(Path(sys.executable).parent / "workbench"), "run",
         "--source", f"remote-write://127.0.0.1:{rw}/api/v1/write",
         "--out", str(out), "--keep-events", "--window", "10s", "--checkpoint-every", "1s"],
        env={**os.environ, "WORKBENCH_REMOTE_WRITE_TOKEN": "rw-token-for-the-test"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait(rw, "workbench's remote-write receiver")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{node}']}}]\n"
            "remote_write:\n"
            f"  - url: http://127.0.0.1:{rw}/api/v1/write\n"
            f"    authorization: {{credentials_file: {token}}}\n"
            "    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}\n"
            "    metadata_config: {send: false}\n"
        )
        helpers.append(
            subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
        _wait(prom, "prometheus")
        time.sleep(30)
        end = time.time() - 5  # what Prometheus has surely sent (batches go out within 1 s)
        start = end - 20
        wanted = {}
        for sel in SERIES:
            selector = sel if sel != "up" else 'up{job="node"}'
            raw = _query(prom, "/api/v1/query", query=f"{selector}[25s]", time=f"{end:.3f}")
            ranged = _query(prom, "/api/v1/query_range", query=selector, start=f"{start:.3f}", end=f"{end:.3f}",
                            step="1s")  # fmt: skip
            assert len(raw) == 1 and len(ranged) == 1, (sel, raw, ranged)
            wanted[sel] = (raw[0], ranged[0])
    finally:
        for p in reversed(helpers):  # Prometheus first: it flushes what it holds, then Workbench stops
            p.terminate()
            p.wait(30)
        wb.send_signal(signal.SIGINT)
        stdout, stderr = wb.communicate(timeout=60)
    assert wb.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["dead_lettered"] == 0 and summary["valid"] > 1000, summary
    assert "rw-token" not in stdout + stderr
    events = Lake(out / "lake").read("events")
    compared = 0
    for raw, ranged in wanted.values():
        metric = raw["metric"]
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
        series = f"{metric['__name__']}{{{labels}}}"
        mine = events.filter(pl.col("series") == series).sort("ts")
        ts = mine["ts"].dt.epoch("ms").to_list()
        values = mine["value"].to_list()
        assert ts, f"workbench stored nothing of {series}"
        first = ts[0]
        # every raw sample Prometheus holds in the window (from Workbench's first one on), exactly
        theirs = [(round(float(t) * 1000), float(v)) for t, v in raw["values"] if round(float(t) * 1000) >= first]
        ours = [(t, v) for t, v in zip(ts, values, strict=True) if first <= t <= round(end * 1000)]
        ours = [(t, v) for t, v in ours if t >= round((end - 25) * 1000)]
        assert ours == theirs, series
        if metric["__name__"].endswith("_total"):  # a counter's rate, from the same consecutive samples
            rate = dict(zip(ts, mine["rate"].to_list(), strict=True))
            for (t0, v0), (t1, v1) in zip(theirs, theirs[1:], strict=False):
                assert rate[t1] == (v1 - v0 if v1 >= v0 else v1) / ((t1 - t0) / 1000), (series, t1)
        # and query_range: at each step, the newest sample at or before it (lookback 5 m)
        for t, v in ranged["values"]:
            at = round(float(t) * 1000)
            if at < first:
                continue
            newest = max((i for i, x in enumerate(ts) if x <= at), default=None)
            assert newest is not None and values[newest] == float(v), (series, at)
            compared += 1
    assert compared >= 40
