"""``extra: keep-numeric`` on a live source: the undeclared numeric fields of a Redis stream's
first batch become metrics (windows for them, no dead letters), flat entries and JSON payloads
alike, through ``workbench run`` and a project's pipeline."""

from __future__ import annotations

import json
import threading
import uuid

import polars as pl
import pytest
import redis

from workbench.pipeline.ingest import ingest
from workbench.project.config import Project
from workbench.project.infer import prime_schema
from workbench.sources.frames import FrameSource
from workbench.sources.primed import PrimedSource
from workbench.storage.lake import Lake

SCHEMA = "time: {field: at, format: iso}\nkey: none\nentity: server\nextra: keep-numeric\nfields:\n  server: str\n"


def test_prime_schema_learns_extras_from_the_first_batch_and_loses_nothing():
    frames = [pl.DataFrame({"at": [f"2024-01-01T00:00:0{i}Z"], "server": ["a"], "disk": [float(i)]}) for i in range(3)]
    source, schema = prime_schema(FrameSource(frames), _schema_obj())
    assert isinstance(source, PrimedSource)
    assert schema.field("disk").kind == "float" and not schema.field("disk").required
    assert [b.frame["disk"].to_list() for b in source.batches()] == [[0.0], [1.0], [2.0]]


def test_prime_schema_without_a_record_in_time_keeps_the_declared_fields(caplog):
    source, schema = prime_schema(FrameSource([]), _schema_obj(), wait=1)
    assert not isinstance(source, PrimedSource) and "disk" not in schema.names


def _schema_obj():
    import yaml

    from workbench.schema_file import schema_from_mapping

    return schema_from_mapping(yaml.safe_load(SCHEMA), where="test", name="s")


@pytest.mark.services
def test_keep_numeric_on_a_live_redis_stream(tmp_path):
    r = redis.Redis("127.0.0.1", 6379)
    stream = f"wb-keep-numeric-{uuid.uuid4().hex[:8]}"
    schema = tmp_path / "s.yaml"
    schema.write_text(SCHEMA)
    try:
        for i in range(20):  # flat entries: every field is text in Redis
            r.xadd(stream, {"at": f"2024-01-01T00:00:{i:02d}Z", "server": "a", "disk_io": str(1.5 * i), "temp": "40"})
        for i in range(20, 40):  # JSON payloads
            r.xadd(stream, {"data": json.dumps({"at": f"2024-01-01T00:00:{i:02d}Z", "server": "b", "disk_io": 2.0,
                                                "temp": 41})})  # fmt: skip
        out = tmp_path / "out"
        summary = ingest(f"redis://127.0.0.1:6379/{stream}?group=wb", out, schema=str(schema), seconds=6,
                         lateness="0s", spec=None)  # fmt: skip
        assert summary["valid"] == 40 and summary["dead_lettered"] == 0, summary
        windows = Lake(out / "lake").read("windows").sort("server", "window_start")
        assert {"disk_io_mean", "disk_io_max", "temp_mean"} <= set(windows.columns)
        a = windows.filter(pl.col("server") == "a")
        assert a["disk_io_max"].to_list() == [13.5, 28.5] and a["temp_mean"].to_list() == [40.0, 40.0]
        # the last window stays open: a live source that stops does not flush
        assert windows.filter(pl.col("server") == "b")["disk_io_mean"].to_list() == [2.0]

        # a project file on the same stream: its pipeline learns them too, and the run ends on stop
        project = tmp_path / "workbench.yaml"
        project.write_text(f"source: redis://127.0.0.1:6379/{stream}?group=wb2\nschema: s.yaml\noutputs: {{out: p}}\n")
        stop = threading.Event()
        pipe = Project.load(project).pipeline(stop=stop)
        got = pipe.collect("windows")
        threading.Timer(5, pipe.source.stop).start()
        pipe.run()
        pipe.close()
        frame = pl.concat(got)
        assert "disk_io_mean" in frame.columns and pipe.counts()["valid"] == 40
    finally:
        r.delete(stream)


@pytest.mark.services
def test_keep_numeric_on_a_served_live_source(tmp_path):
    """``workbench serve --source … --schema s.yaml``: the served pipeline learns the extras too."""
    import time

    from workbench.apps.live import _connected
    from workbench.config import Settings

    r = redis.Redis("127.0.0.1", 6379)
    stream = f"wb-keep-numeric-served-{uuid.uuid4().hex[:8]}"
    schema = tmp_path / "s.yaml"
    schema.write_text(SCHEMA)
    try:
        for i in range(20):
            r.xadd(stream, {"at": f"2024-01-01T00:00:{i:02d}Z", "server": "a", "disk_io": str(1.5 * i), "temp": "40"})
        settings = Settings(
            source=f"redis://127.0.0.1:6379/{stream}?group=wbs",
            schema=str(schema),
            lake=tmp_path / "lake",
            checkpoints=tmp_path / "checkpoints",
            window="10s",
            lateness="0s",
        )
        live = _connected(settings)
        try:
            assert {"disk_io", "temp"} <= set(live.pipeline.source.schema.names)
            deadline = time.monotonic() + 30
            while live.pipeline.counts()["valid"] < 20 and time.monotonic() < deadline:
                time.sleep(0.2)
            counts = live.pipeline.counts()
            assert counts["valid"] == 20 and counts["dead_lettered"] == 0, counts
            assert {"disk_io_mean", "temp_mean"} <= set(live.feed.metrics)  # the dashboard's metric choices
        finally:
            live.pipeline.close()
    finally:
        r.delete(stream)
