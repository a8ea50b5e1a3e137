"""Bring your own data: schema files, ``schema infer`` / ``schema check``, and never silently wrong."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from connectors import free_port

import workbench as wb
from workbench.errors import CheckpointError, SchemaError
from workbench.operators import aggregations as agg
from workbench.reports.offline import unpack_scripts
from workbench.schema_file import load_schema
from workbench.testing import FrameSource

from conftest import cli

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
METRICS = ["cpu", "mem", "latency_ms", "status", "disk_io"]


@pytest.fixture
def servers(tmp_path: Path) -> Path:
    """A normal export: time field ``observed_at`` in ISO-8601, memory in MB, an extra metric ``disk_io``."""
    lines = []
    for i in range(2400):
        rec = {
            "id": f"m{i}",
            "observed_at": (T0 + timedelta(seconds=i / 4)).isoformat().replace("+00:00", "Z"),
            "server": f"web-{i % 4}",
            "cpu": 5.0 + i % 90,
            "mem": 8000.0 + (i * 37) % 8000,  # MB, where server_metrics has percent
            "latency_ms": 10.0 + i % 300,
            "status": 200 if i % 20 else 503,
            "disk_io": (i % 50) / 2,
        }
        lines.append(json.dumps(rec))
    path = tmp_path / "servers.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_infer_then_replay_with_the_schema_file_has_no_dead_letters_and_windows_for_every_metric(servers, tmp_path):
    schema = tmp_path / "S.yaml"
    run = cli("schema", "infer", servers, "--out", schema)
    assert run.returncode == 0, run.stderr
    draft = schema.read_text()
    assert "field: observed_at" in draft and "format: iso" in draft and "key: id" in draft
    assert "entity: server" in draft and 'unit: "ms"' in draft and "# min: 8000" in draft

    out = tmp_path / "DIR"
    run = cli("replay", servers, "--schema", schema, "--out", out, "--window", "1m")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["dead_lettered"] == 0 and summary["valid"] == 2400
    windows = pl.read_parquet(sorted((out / "windows").glob("*.parquet")))
    assert windows.height == summary["windows"] == 4 * 10
    for m in METRICS:
        for suffix in ("mean", "max", "p95"):
            assert f"{m}_{suffix}" in windows.columns
    assert windows["count"].sum() == 2400 and windows["server"].n_unique() == 4

    q = cli("query", "--lake", out, "--format", "csv", "select round(max(mem_max)) as m from windows")
    assert q.returncode == 0, q.stderr
    assert float(q.stdout.splitlines()[1]) == max(8000.0 + (i * 37) % 8000 for i in range(2400))


def test_the_same_file_with_the_built_in_schema_exits_3_naming_mem_out_of_bounds(servers, tmp_path):
    """Its time field and id have other names, but a wrong value is named before a field missing everywhere."""
    run = cli("replay", servers, "--schema", "server_metrics", "--out", tmp_path / "builtin")
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == (
        "workbench: 100.0 % of the records (2,400 of 2,400) were dead-lettered, over --max-dead-share 0.5; top reasons:"
    )
    assert lines[1].split()[:3] == ["2,400", "out_of_bounds", "mem"]
    assert "e.g. field 'mem' = 8000.0 is outside [0, 100]" in lines[1]
    summary = json.loads(run.stdout)
    assert summary["dead_lettered"] == 2400
    assert summary["dead_letter_reasons"][0] == {
        "reason_code": "out_of_bounds",
        "field": "mem",
        "count": 2400,
        "example": "field 'mem' = 8000.0 is outside [0, 100]",
    }
    # a share allowed explicitly: the same run is a success
    assert cli("replay", servers, "--out", tmp_path / "b3", "--max-dead-share", "1").returncode == 0


def test_schema_check_counts_rejections_per_reason_with_an_example(servers, tmp_path):
    run = cli("schema", "check", servers, "--schema", "server_metrics")
    assert run.returncode == 3
    assert "2,400 rejected (100.0 %)" in run.stdout
    assert "out_of_bounds  mem  e.g. field 'mem' = " in run.stdout
    assert '"id": "m0"' in run.stdout  # the example's raw record
    schema = tmp_path / "s.yaml"
    assert cli("schema", "infer", servers, "--out", schema).returncode == 0
    run = cli("schema", "check", servers, "--schema", schema)
    assert run.returncode == 0 and "0 rejected" in run.stdout


def test_a_resumed_replay_with_another_window_is_refused_and_fresh_starts_over(servers, tmp_path):
    out = tmp_path / "out"
    assert cli("replay", servers, "--out", out, "--window", "1m", "--max-dead-share", "1").returncode == 0
    run = cli("replay", servers, "--out", out, "--window", "5m", "--max-dead-share", "1")
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("workbench: error: checkpoint ")
    assert "window: Tumbling(size='1m', offset=0) then, Tumbling(size='5m', offset=0) now" in run.stderr
    assert "--fresh" in run.stderr
    run = cli("replay", servers, "--out", out, "--window", "5m", "--max-dead-share", "1", "--fresh")
    assert run.returncode == 0, run.stderr


def test_a_resume_with_another_schema_is_refused_in_python(servers, tmp_path):
    schema = tmp_path / "s.yaml"
    cli("schema", "infer", servers, "--out", schema)
    out = tmp_path / "o"
    wb.replay(servers, out, schema=schema, max_batches=0)
    text = schema.read_text().replace("key: id", "key: hash")
    (tmp_path / "s2.yaml").write_text(text)
    with pytest.raises(CheckpointError, match=r"schema dedupe, key: \['key', 'id'\] then, \['hash', None\] now"):
        wb.replay(servers, out, schema=tmp_path / "s2.yaml")


def test_dead_letters_carry_code_field_ingest_time_and_offset(servers, tmp_path):
    out = tmp_path / "o"
    wb.replay(servers, out, schema="server_metrics", max_rows=1000)
    dead = pl.read_parquet(sorted((out / "dead_letter").glob("*.parquet")))
    assert dead.columns == ["node", "reason_code", "field", "reason", "raw", "ingested_at", "offset"]
    assert dead.schema["ingested_at"] == pl.Datetime("ms", "UTC")
    grouped = dead.group_by("reason_code", "field").len()
    assert grouped.rows() == [("out_of_bounds", "mem", 2400)]
    # the byte offset where each record's batch starts: three batches of 1000 records
    starts = sorted({int(o) for o in dead["offset"]})
    assert len(starts) == 3 and starts[0] == 0
    data = servers.read_bytes()
    assert starts[1] == len(b"".join(data.splitlines(keepends=True)[:1000]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", "select * from dead_letter"], "query: Catalog Error: Table with name dead_letter does not exist"),
        (["query", "selec 1"], 'query: Parser Error: syntax error at or near "selec"'),
        (["replay", "{data}", "--out", "{tmp}/o", "--by", "nope"], "--by 'nope': not a field of schema"),
        (["replay", "{data}", "--out", "{tmp}/o", "--schema", "{tmp}/missing.yaml"], "cannot be read"),
        (["schema", "infer", "{tmp}/nope.csv"], "does not exist"),
    ],
)
def test_former_tracebacks_are_one_line_errors_with_exit_2(args, message, servers, tmp_path):
    lake = tmp_path / "lake"
    wb.replay(servers, lake, schema="server_metrics", max_batches=0)
    argv = [a.format(data=servers, tmp=tmp_path) for a in args]
    if argv[0] == "query":
        argv += ["--lake", str(tmp_path / "o2")]
        (tmp_path / "o2" / "windows").mkdir(parents=True)
    run = cli(*argv)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("workbench: error: ") and run.stderr.count("\n") == 1, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    debug = cli(*argv, "--debug")
    assert "Traceback" in debug.stderr


def test_output_folders_are_created(tmp_path):
    out = tmp_path / "a" / "b" / "sim.jsonl"
    run = cli("simulate", "--events", "50", "--out", out)
    assert run.returncode == 0, run.stderr
    assert out.exists()


def test_ctrl_c_on_serve_ends_cleanly_with_130():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fields:\n  mem: {kind: flaot}\n", "fields.mem.kind: expected one of ['float', 'int', 'str', 'ts'], not"),
        (
            "fields:\n  a: {kind: ts}\n  b: {kind: ts}\n",
            "fields: one time field (kind ts) is allowed, not 2: ['a', 'b']",
        ),
        ("fields:\n  mem: {kind: float, max: lots}\n", "fields.mem.max: expected a number, not 'lots'"),
        (
            "fields:\n  cpu: {kind: float}\n  mem: {kind: float, from: cpu}\n",
            "fields.mem.from: 'cpu' is already a field",
        ),
        ("fields:\n  mem: {kind: float\n", "not valid YAML: line 3, column 1"),
        ("fields:\n  mem: {kind: float}\nentity: host\n", "entity: 'host' is not a field"),
        ("time: {field: at, format: epoch_min}\nfields:\n  x: int\n", "time.format: expected one of"),
        ("time: {field: at, naive: Mars/Base}\nfields:\n  x: int\n", "naive must be 'reject' or an IANA time zone"),
        ("fields:\n  x: int\nextras: drop\n", "extras: unknown key"),
    ],
)
def test_bad_schema_files_get_one_clear_message(text, message, tmp_path):
    path = _write(tmp_path, text)
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert str(info.value).startswith(f"schema file {path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_schema_file_on_the_command_line_is_one_line(tmp_path, servers):
    path = _write(tmp_path, "fields:\n  mem: {kind: flaot}\n")
    run = cli("replay", servers, "--schema", path, "--out", tmp_path / "o")
    assert run.returncode == 2
    assert run.stderr == f"workbench: error: schema file {path}: fields.mem.kind: expected one of " + (
        "['float', 'int', 'str', 'ts'], not 'flaot'\n"
    )


def _frame_pipeline(schema: wb.Schema, frame: pl.DataFrame, **kw) -> tuple[wb.Pipeline, list, list]:
    pipe = wb.Pipeline(FrameSource([frame]), name=f"own-{schema.name}")
    windows = pipe.collect(pipe.standard(schema, wb.Tumbling("1m"), **kw))
    dead = pipe.collect("dead_letter")
    pipe.run()
    return pipe, windows, dead


def test_a_notebook_loads_a_schema_file_and_nothing_repeats_the_time_field(tmp_path):
    path = tmp_path / "epoch.yaml"
    path.write_text(
        "time: {field: when, format: epoch_s}\nkey: hash\nentity: [dc, host]\nextra: drop\n"
        "fields:\n  dc: str\n  host: str\n  mem: {kind: float, unit: MB, from: memUsedMb}\n"
    )
    schema = wb.Schema.load(path)
    assert schema.by == ["dc", "host"] and schema.metrics == ["mem"]
    t = int(T0.timestamp())
    frame = pl.DataFrame(
        {
            "when": [t + 0.0, t + 1.5, t + 1.5, t + 61],
            "dc": ["a", "a", "a", "b"],
            "host": ["h", "h", "h", "h"],
            "memUsedMb": [1000.0, 2000.0, 2000.0, 5.0],
        }
    )
    pipe, windows, dead = _frame_pipeline(schema, frame)
    out = pl.concat(windows).sort("window_start")
    assert out.select("dc", "host", "count", "mem_mean", "mem_max").rows() == [
        ("a", "h", 2, 1500.0, 2000.0),
        ("b", "h", 1, 5.0, 5.0),
    ]
    assert pipe.counts()["duplicates"] == 1 and not dead


@pytest.mark.parametrize(
    ("fmt", "naive", "values", "ok"),
    [
        ("epoch_ms", "reject", [T0.timestamp() * 1000], True),
        ("epoch_us", "reject", [int(T0.timestamp()) * 1_000_000], True),
        ("epoch_ns", "reject", [int(T0.timestamp()) * 1_000_000_000], True),
        ("epoch_s", "reject", ["soon"], False),
        ("iso", "reject", ["2024-03-01T12:00:00"], False),
        ("iso", "Europe/Paris", ["2024-03-01T13:00:00"], True),
        ("iso", "UTC", ["2024-03-01 12:00:00.000"], True),
        ("iso", "reject", ["2024-03-01T13:00:00+01:00"], True),
    ],
)
def test_time_formats_and_the_naive_rule(fmt, naive, values, ok, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(f"time: {{field: t, format: {fmt}, naive: {naive}}}\nkey: none\nfields:\n  x: float\n")
    frame = pl.DataFrame({"t": [str(v) if isinstance(v, str) else v for v in values], "x": [1.0]})
    _, windows, dead = _frame_pipeline(wb.Schema.load(path), frame, aggs=[agg.count(), agg.min("t", "first")])
    if ok:
        assert pl.concat(windows)["first"].to_list() == [T0]
    else:
        reasons = pl.concat(dead)
        assert reasons["reason_code"].to_list() == ["naive_time" if fmt == "iso" else "bad_time"]
        assert reasons["field"].to_list() == ["t"]


def test_extra_fields_keep_numeric_drop_and_reject(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"ts": "2024-03-01T12:00:00Z", "x": 1.0, "disk_io": 2.5, "note": "n"}] * 3
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for extra, valid, columns in (("keep-numeric", 3, {"disk_io_mean"}), ("drop", 3, set()), ("reject", 0, set())):
        schema = tmp_path / f"{extra}.yaml"
        schema.write_text(f"key: none\nextra: {extra}\nfields:\n  x: float\n")
        summary = wb.replay(data, tmp_path / extra, schema=schema)
        assert summary["valid"] == valid, extra
        windows = wb.Lake(tmp_path / extra, partition=False).read("windows")
        assert columns <= set(windows.columns) and ("disk_io_mean" in windows.columns) == bool(columns)
    dead = wb.Lake(tmp_path / "reject", partition=False).read("dead_letter")
    assert dead["reason_code"].unique().to_list() == ["unknown_field"]


def test_export_of_an_unknown_metric_lists_the_known_ones_and_views_take_the_schema_entity(servers, tmp_path):
    schema = tmp_path / "s.yaml"
    assert cli("schema", "infer", servers, "--out", schema).returncode == 0
    out = tmp_path / "o"
    assert cli("replay", servers, "--schema", schema, "--out", out, "--window", "1m").returncode == 0
    run = cli(
        "export", "--lake", out, "--schema", schema, "--view", "series", "-p", "metric", "nope", "--out", "x.html"
    )
    assert run.returncode == 2
    assert run.stderr.startswith("workbench: error: export: -p metric 'nope' is not a metric of these windows")
    assert "mem_max" in run.stderr and "disk_io_p95" in run.stderr and run.stderr.count("\n") == 1
    page = tmp_path / "x.html"
    run = cli("export", "--lake", out, "--schema", schema, "--view", "series", "-p", "metric", "mem_max", "--out", page)
    assert run.returncode == 0, run.stderr
    assert "web-3" in unpack_scripts(page.read_text())  # in the compressed document


@pytest.mark.parametrize("form", ["aware.parquet", "naive.parquet", "epoch.csv"])
def test_infer_and_replay_csv_and_parquet(form, tmp_path):
    n = 600
    frame = pl.DataFrame(
        {
            "when": [T0 + timedelta(seconds=i) for i in range(n)],
            "host": [f"h{i % 3}" for i in range(n)],
            "temp_c": [20.0 + i % 7 for i in range(n)],
            "errors": [i % 5 for i in range(n)],
        }
    )
    path = tmp_path / form
    if form == "naive.parquet":
        frame.with_columns(pl.col("when").dt.replace_time_zone(None)).write_parquet(path)
    elif form == "aware.parquet":
        frame.write_parquet(path)
    else:
        frame.with_columns(pl.col("when").dt.epoch("s")).write_csv(path)
    schema = tmp_path / "s.yaml"
    assert cli("schema", "infer", path, "--out", schema).returncode == 0
    s = wb.Schema.load(schema)
    expected = {"aware.parquet": ("iso", "reject"), "naive.parquet": ("iso", "UTC"), "epoch.csv": ("epoch_s", "reject")}
    assert (s.time, s.time_format, s.naive, s.dedupe, s.by) == ("when", *expected[form], "hash", ["host"])
    summary = wb.replay(path, tmp_path / "o", schema=schema, spec=wb.Tumbling("1m"))
    assert summary["dead_lettered"] == 0 and summary["valid"] == n
    windows = wb.Lake(tmp_path / "o", partition=False).read("windows")
    assert windows["window_start"].min() == T0 and {"temp_c_p95", "errors_max"} <= set(windows.columns)


def test_flat_redis_stream_entries_are_typed_by_the_schema(tmp_path):
    """``XADD s * host h1 cpu 12.5 …``: every field is text in Redis; the schema's numbers decode as numbers."""
    import redis

    from workbench.pipeline.ingest import ingest

    port = free_port()
    server = subprocess.Popen(
        ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        r = redis.Redis("127.0.0.1", port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        t0 = int(T0.timestamp() * 1000)
        for i in range(300):
            fields = {"event_id": f"e{i}", "ts": t0 + i * 500, "host": f"h{i % 3}", "cpu": 10.5 + i % 7}
            fields |= {"mem": 40.0, "latency_ms": 120.0, "status": 200}
            r.xadd("flat", fields)
        r.xadd("flat", {"event_id": "bad", "ts": t0, "host": "h1", "cpu": "high", "mem": 1, "latency_ms": 1})
        url = f"redis://127.0.0.1:{port}/flat?group=wb&create=true"
        summary = ingest(url, tmp_path / "o", schema="server_metrics", seconds=4)
    finally:
        server.terminate()
        server.wait(10)
    assert summary["ingested"] == 301 and summary["valid"] == 300 and summary["dead_lettered"] == 1
    dead = wb.Lake(tmp_path / "o" / "lake").read("dead_letter")
    assert dead.select("reason_code", "field").rows() == [("wrong_type", "cpu")]


def test_detect_takes_the_time_column_from_a_schema(tmp_path):
    stamps = [f"2024-03-01T12:{i // 60:02d}:{i % 60:02d}Z" for i in range(120)]
    rows = ["observed_at,value"] + [f"{t},{1.0 + (i == 90) * 50}" for i, t in enumerate(stamps)]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "s.yaml").write_text("time: {field: observed_at, format: iso}\nfields:\n  value: float\n")
    schema = ["--schema", tmp_path / "s.yaml", "--detector", "robust_z"]
    run = cli("detect", tmp_path / "in.csv", *schema, "--out", tmp_path / "o.csv")
    assert run.returncode == 0, run.stderr
    assert "120 rows scored" in run.stdout
