from __future__ import annotations

import io
import json
import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.clock import ManualClock
from workbench.errors import ConfigError, SourceError
from workbench.schema import SCHEMAS, get_schema
from workbench.sources.simulator import Simulator, write_simulation
from workbench.sources.simulator.chunks import CHUNK_EVENTS
from workbench.sources.simulator.faults import MALFORMED_CLASSES, Faults
from workbench.sources.simulator.incidents import Incident

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
ROW_FAULTS = ("duplicate", "late", "out_of_order")


def split(data: bytes) -> list[bytes]:
    assert data.endswith(b"\n")
    return data.split(b"\n")[:-1]


def event_ms(ts: object) -> int:
    """A valid wire timestamp as epoch ms."""
    if isinstance(ts, int):
        return ts
    moment = datetime.fromisoformat(str(ts))
    assert moment.tzinfo is not None, ts
    return round(moment.timestamp() * 1000)


def clean_frame(out, schema: str) -> pl.DataFrame:
    """The lines that are not malformed, decoded strictly, with their line number."""
    malformed = set(out.faults.filter(~pl.col("fault").is_in(ROW_FAULTS))["line"].to_list())
    keep = [line for i, line in enumerate(split(out.data)) if i not in malformed]
    numbers = [i for i in range(out.lines) if i not in malformed]
    frame = pl.read_ndjson(io.BytesIO(b"\n".join(keep) + b"\n"), schema=get_schema(schema).wire_schema)
    ts = [event_ms(int(t) if t.isdigit() else t) for t in frame["ts"].to_list()]
    return frame.with_columns(line=pl.Series(numbers), ts_ms=pl.Series(ts))


@pytest.fixture(scope="module", params=sorted(SCHEMAS))
def sample(request):
    schema = request.param
    return schema, Simulator(schema, seed=11, hosts=40).generate(120_000)


# --- determinism ------------------------------------------------------------------------


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_same_seed_same_bytes_other_seed_other_bytes(schema):
    one = Simulator(schema, seed=3).generate(20_000)
    two = Simulator(schema, seed=3).generate(20_000)
    assert one.data == two.data
    assert one.faults.equals(two.faults)
    assert one.labels.equals(two.labels)
    assert Simulator(schema, seed=4).generate(20_000).data != one.data


def test_generate_equals_the_batches_of_a_limited_stream():
    out = Simulator(seed=5).generate(150_000)
    sim = Simulator(seed=5, limit=150_000, max_rows=7_000)
    batches = list(sim.batches())
    assert b"".join(b.data for b in batches) == out.data
    assert sum(b.rows for b in batches) == out.lines
    assert all(b.rows <= 7_000 for b in batches)
    assert batches[-1].offset == sim.offset == 150_000
    assert sim.exhausted


# --- clean lines ------------------------------------------------------------------------


def test_clean_lines_decode_strictly_and_respect_bounds(sample):
    schema_name, out = sample
    schema = get_schema(schema_name)
    frame = clean_frame(out, schema_name)
    assert frame.height == out.lines - out.faults.filter(~pl.col("fault").is_in(ROW_FAULTS)).height
    for field in schema.fields:
        column = frame[field.name]
        assert column.null_count() == 0, field.name
        if field.kind == "float":
            assert not column.is_nan().any(), field.name
        if field.kind in ("float", "int"):
            assert field.min is None or column.min() >= field.min, field.name
            assert field.max is None or column.max() <= field.max, field.name
        elif field.kind == "str":
            assert column.cast(pl.String).str.len_chars().max() <= field.max_length, field.name
    assert frame["event_id"].n_unique() == frame.height - out.counts()["duplicates"]


def test_values_look_realistic():
    out = Simulator(seed=2).generate(100_000)
    frame = clean_frame(out, "server_metrics")
    assert frame["host"].cast(pl.String).str.contains(r"^[a-z]+-[a-z]+-[a-z]+-\d-\d{3}$").all()
    assert frame["host"].n_unique() == 300
    assert 0.9 < (frame["status"] == 200).mean() < 0.99
    assert 0.001 < (frame["status"] >= 500).mean() < 0.1
    latency = frame["latency_ms"]
    assert latency.quantile(0.999) > 5 * latency.median()  # a heavy tail
    flows = clean_frame(Simulator("network_flows", seed=2).generate(50_000), "network_flows")
    assert flows["src_ip"].cast(pl.String).str.starts_with("10.").mean() > 0.5
    assert set(flows["protocol"].cast(pl.String).unique()) == {"tcp", "udp", "icmp"}
    assert set(flows["action"].cast(pl.String).unique()) == {"accept", "reject"}
    assert {443, 80, 22, 5432} <= set(flows["dst_port"].to_list())
    users = clean_frame(Simulator("user_events", seed=2).generate(50_000), "user_events")
    assert set(users["kind"].cast(pl.String).unique()) == {
        "page_view", "login", "search", "checkout", "error", "logout"
    }  # fmt: skip
    assert users["path"].cast(pl.String).str.starts_with("/product/").mean() > 0.3
    assert users["session_id"].n_unique() < users["user_id"].n_unique() * 3


def test_daily_cycle_in_cpu():
    sim = Simulator(seed=1, hosts=10, rate=2.0, faults=Faults.none(), incidents=[])
    host = sim.fleet.hosts[int(np.argmax(sim.fleet.cpu_swing))]
    frame = clean_frame(sim.generate(2 * 86_400), "server_metrics").filter(pl.col("host") == host)
    hourly = frame.group_by(((pl.col("ts_ms") - T0_MS) // 3_600_000).alias("hour")).agg(pl.col("cpu").mean())
    assert hourly.height == 24  # one day
    assert hourly["cpu"].max() - hourly["cpu"].min() > 15


def test_timestamps_are_mostly_epoch_ms_with_some_iso():
    lines = split(Simulator(seed=1, faults=Faults.none()).generate(50_000).data)
    stamps = [json.loads(line)["ts"] for line in lines[:20_000]]
    iso = [t for t in stamps if isinstance(t, str)]
    assert 0.07 < len(iso) / len(stamps) < 0.13
    assert {t[-1] for t in iso} == {"Z", "0"}
    assert any(t.endswith("+02:00") for t in iso) and any(t.endswith("+00:00") for t in iso)


# --- faults -----------------------------------------------------------------------------


def detect(line: bytes, schema) -> str | None:
    """Which malformed class a line shows, found independently of the ground truth."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return "broken_json"
    for field in schema.fields:
        value = record.get(field.name)
        if field.required and value is None:
            return "missing_field"
        if field.kind in ("float", "int") and isinstance(value, str):
            return "wrong_type"
        if field.kind == "str" and value is not None and not isinstance(value, str):
            return "wrong_type"
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, str) and len(value) > 100_000:
            return "huge_string"
        if field.kind == "ts" and isinstance(value, str) and datetime.fromisoformat(value).tzinfo is None:
            return "naive_ts"
        below = field.min is not None and value is not None and value < field.min
        if field.kind in ("float", "int") and (below or (field.max is not None and value > field.max)):
            return "out_of_range"
    return None


def test_every_fault_class_matches_its_ground_truth(sample):
    schema_name, out = sample
    schema = get_schema(schema_name)
    truth = dict(out.faults.select("line", "fault").iter_rows())
    assert out.faults["line"].is_unique().all()  # one class per line
    seen: set[str] = set()
    for number, line in enumerate(split(out.data)):
        found = detect(line, schema)
        if found is None:
            event_id = json.loads(line)["event_id"]
            found = "duplicate" if event_id in seen else None
            seen.add(event_id)
        if found is not None or truth.get(number) not in (None, "late", "out_of_order"):
            assert found == truth.get(number), (number, line[:200])
    counts = out.counts()
    by_class = dict(out.faults.group_by("fault").len().iter_rows())
    assert set(by_class) == {*MALFORMED_CLASSES, *ROW_FAULTS}
    assert counts["malformed"] == {name: by_class[name] for name in MALFORMED_CLASSES}
    events = 120_000
    assert 0.003 < sum(counts["malformed"].values()) / events < 0.007
    assert 0.007 < counts["duplicates"] / events < 0.013
    assert 0.015 < counts["out_of_order"] / events < 0.025
    assert 0.001 < counts["late"] / events < 0.003
    assert out.lines == counts["events"] + counts["duplicates"]


def test_fault_rows_name_their_event_and_field(sample):
    _, out = sample
    faults = out.faults
    broken = faults.filter(pl.col("fault") == "broken_json")
    assert broken["event_id"].null_count() == broken.height
    assert faults.filter(pl.col("fault") != "broken_json")["event_id"].null_count() == 0
    malformed = faults.filter(~pl.col("fault").is_in([*ROW_FAULTS, "broken_json"]))
    assert malformed["field"].null_count() == 0
    # A malformed event is never also a duplicate, late or out-of-order one.
    others = set(faults.filter(pl.col("fault").is_in(ROW_FAULTS))["event_id"])
    assert not others & set(malformed["event_id"])


def test_delivery_order_disorder_and_lateness(sample):
    schema_name, out = sample
    frame = clean_frame(out, schema_name).join(out.faults.select("line", "fault", "lag_ms"), on="line", how="left")
    # How far each event is behind the newest event time delivered before it.
    valid = frame.filter(pl.col("fault").is_null() | pl.col("fault").is_in(["late", "out_of_order"]))
    valid = valid.with_columns(behind=pl.col("ts_ms").cum_max().shift(1) - pl.col("ts_ms"))
    assert valid.filter(pl.col("fault").is_null())["behind"].max() <= 0  # in order
    disorder = valid.filter(pl.col("fault") == "out_of_order")
    assert disorder.height and disorder["behind"].min() > 0 and disorder["behind"].max() < 4_000
    assert disorder["lag_ms"].min() >= 1 and disorder["lag_ms"].max() < 4_000
    late = valid.filter(pl.col("fault") == "late")["behind"]
    assert late.len() and late.min() > 5_000 and late.max() < 300_000
    assert (late > 25_000).mean() > 0.99
    # Duplicates follow their original closely.
    dups = out.faults.filter(pl.col("fault") == "duplicate")
    firsts = frame.filter(pl.col("fault").is_null()).select("event_id", "line")
    pairs = dups.join(firsts.with_columns(pl.col("event_id").cast(pl.String)), on="event_id", suffix="_first")
    assert pairs.height == dups.height
    assert (pairs["line"] > pairs["line_first"]).all()


def test_fault_rates_are_configurable():
    out = Simulator(seed=1, faults=Faults.none(), incidents=[]).generate(30_000)
    assert out.faults.height == 0
    assert out.lines == 30_000
    heavy = Simulator(seed=1, faults=Faults(malformed=0.1, malformed_classes=("nan",))).generate(30_000)
    assert set(heavy.faults.filter(pl.col("fault") != "duplicate")["fault"]) >= {"nan"}
    assert 2_500 < heavy.counts()["malformed"]["nan"] < 3_500


@pytest.mark.parametrize(
    "kwargs",
    [{"late": -0.1}, {"duplicates": 2.0}, {"max_disorder": 6.0}, {"late_min": 2.0}, {"malformed_classes": ("x",)}],
)
def test_faults_validate(kwargs):
    with pytest.raises(ConfigError):
        Faults(**kwargs)


# --- incidents --------------------------------------------------------------------------


def window(frame: pl.DataFrame, incident: dict) -> pl.Expr:
    start, end = (int(incident[k].timestamp() * 1000) for k in ("start", "end"))
    return pl.col("ts_ms").is_between(start, end, closed="left")


def test_server_incidents_are_visible():
    out = Simulator(seed=11, hosts=40).generate(400_000)
    frame = clean_frame(out, "server_metrics").with_columns(pl.col(pl.Categorical).cast(pl.String))
    labels = {row["kind"]: row for row in out.labels.iter_rows(named=True)}
    assert set(labels) == {"cpu_saturation", "memory_leak", "latency_degradation", "error_burst", "host_silent"}
    assert (out.labels["start"] >= T0).all() and (out.labels["end"] <= T0 + timedelta(seconds=200)).all()

    inc = labels["cpu_saturation"]
    host = frame.filter(pl.col("host") == inc["entity"])
    during, before = host.filter(window(host, inc))["cpu"], host.filter(~window(host, inc))["cpu"]
    assert during.len() > 20 and during.min() >= 95 and during.mean() > before.mean() + 40

    inc = labels["memory_leak"]
    host = frame.filter((pl.col("host") == inc["entity"]) & window(frame, inc)).sort("ts_ms")
    assert host.height > 20 and host["mem"].tail(5).mean() > 90 > host["mem"].head(5).mean() + 10

    inc = labels["latency_degradation"]
    service = frame.filter(pl.col("service") == inc["entity"])
    ratio = service.filter(window(service, inc))["latency_ms"].median() / service["latency_ms"].median()
    assert ratio > 4

    inc = labels["error_burst"]
    service = frame.filter((pl.col("service") == inc["entity"]) & window(frame, inc))
    assert 0.25 < (service["status"] == 500).mean() < 0.65

    inc = labels["host_silent"]
    assert frame.filter(pl.col("host") == inc["entity"]).height > 100
    assert frame.filter((pl.col("host") == inc["entity"]) & window(frame, inc)).height == 0


def test_user_and_network_incidents_are_visible():
    out = Simulator("user_events", seed=5).generate(300_000)
    frame = clean_frame(out, "user_events").with_columns(pl.col(pl.Categorical).cast(pl.String))
    for inc in out.labels.iter_rows(named=True):
        country = frame.filter(pl.col("country") == inc["entity"])
        inside = country.filter(window(country, inc))
        if inc["kind"] == "traffic_drop":
            others = frame.filter(window(frame, inc)).height / frame.height
            assert inside.height / country.height < 0.25 * others
        else:
            assert (inside["kind"] == "error").mean() > 0.25
            assert (country.filter(~window(country, inc))["kind"] == "error").mean() < 0.03

    out = Simulator("network_flows", seed=5).generate(300_000)
    frame = clean_frame(out, "network_flows").with_columns(pl.col(pl.Categorical).cast(pl.String))
    for inc in out.labels.iter_rows(named=True):
        if inc["kind"] == "port_scan":
            probes = frame.filter((pl.col("src_ip") == inc["entity"]) & window(frame, inc))
            assert probes["dst_port"].n_unique() > 200
            assert (probes["action"] == "reject").mean() > 0.6
        else:
            flows = frame.filter(pl.col("dst_ip") == inc["entity"])
            ratio = flows.filter(window(flows, inc))["bytes"].mean() / flows.filter(~window(flows, inc))["bytes"].mean()
            assert ratio > 5


def test_user_incidents_replace_the_schedule():
    sim = Simulator(seed=1, hosts=20)
    host = sim.fleet.hosts[3]
    inc = Incident(
        "mine", "cpu_saturation", "server_metrics", host, T0 + timedelta(seconds=5), T0 + timedelta(seconds=9)
    )
    out = Simulator(seed=1, hosts=20, incidents=[inc]).generate(40_000)
    assert out.labels["incident_id"].to_list() == ["mine"]
    frame = clean_frame(out, "server_metrics").with_columns(pl.col("host").cast(pl.String))
    during = frame.filter((pl.col("host") == host) & window(frame, {"start": inc.start, "end": inc.end}))
    assert during.height > 20 and during["cpu"].min() >= 95
    assert Simulator(incidents=[]).generate(1000).labels.height == 0


def test_incidents_are_validated():
    with pytest.raises(ConfigError, match="applies to"):
        Incident("x", "port_scan", "server_metrics", "h", T0, T0 + timedelta(seconds=1))
    with pytest.raises(ConfigError, match="aware"):
        Incident("x", "host_silent", "server_metrics", "h", T0.replace(tzinfo=None), T0)
    bad = Incident("x", "host_silent", "server_metrics", "nope", T0, T0 + timedelta(seconds=1))
    with pytest.raises(ConfigError, match="not in the fleet"):
        Simulator(incidents=[bad])
    other = Incident("y", "port_scan", "network_flows", "1.2.3.4", T0, T0 + timedelta(seconds=1))
    with pytest.raises(ConfigError):
        Simulator(incidents=[other])


def test_endless_streams_schedule_incidents_every_cycle():
    sim = Simulator(seed=2, rate=5.0)
    assert sim.labels.height == 5
    sim.seek(int(5.0 * 60 * 25))  # 25 minutes of event time
    labels = sim.labels
    assert labels.height == 15 and labels["incident_id"].is_unique().all()
    assert labels["start"].is_sorted()


# --- seek, replay, realtime -------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    sim = Simulator(seed=9, limit=3 * CHUNK_EVENTS, max_rows=9_000)
    batches = list(sim.batches())
    return batches, b"".join(b.data for b in batches)


def test_seek_to_a_batch_boundary_replays_the_rest(reference):
    batches, _ = reference
    for i in (0, 7, len(batches) - 2):
        sim = Simulator(seed=9, limit=3 * CHUNK_EVENTS, max_rows=4_000)
        sim.restore({"offset": batches[i].offset})
        assert b"".join(b.data for b in sim.batches()) == b"".join(b.data for b in batches[i + 1 :])


@pytest.fixture(scope="module")
def event_numbers(reference):
    """Per line of the reference: its event number, None for broken lines and copies."""
    numbers, seen = [], set()
    for line in split(reference[1]):
        try:
            number = int(json.loads(line)["event_id"].rsplit("-", 1)[1])
        except ValueError:  # broken JSON or UTF-8
            number = None
        numbers.append(None if number in seen else number)
        seen.add(number)
    return numbers


@settings(max_examples=12, deadline=None)
@given(offset=st.integers(0, 3 * CHUNK_EVENTS))
def test_seek_anywhere_continues_exactly(reference, event_numbers, offset):
    _, full = reference
    sim = Simulator(seed=9, limit=3 * CHUNK_EVENTS, max_rows=50_000)
    sim.seek(offset)
    rest = b"".join(b.data for b in sim.batches())
    assert full.endswith(rest)
    # The cut falls exactly between events offset - 1 and offset (a copy may sit on either side).
    cut = len(event_numbers) - rest.count(b"\n")
    assert max((n for n in event_numbers[:cut] if n is not None), default=-1) < offset
    assert min((n for n in event_numbers[cut:] if n is not None), default=offset) >= offset
    if offset < 3 * CHUNK_EVENTS - 10:
        assert offset in event_numbers[cut : cut + 10] or offset + 1 in event_numbers[cut : cut + 10]


def test_seek_rejects_bad_offsets():
    with pytest.raises(SourceError):
        Simulator().seek(-1)
    with pytest.raises(SourceError):
        Simulator().seek("3")


def test_endless_run_keeps_one_chunk():
    sim = Simulator(seed=1, max_rows=20_000)
    for i, _ in enumerate(sim.batches()):
        if i == 20:  # running: the one chunk it reads from
            assert sim._cached is not None and sim._cached.first == (sim.offset - 1) // CHUNK_EVENTS * CHUNK_EVENTS
            sim.stop()
    assert sim.offset > 5 * CHUNK_EVENTS
    assert sim._cached is None  # stopped: none


def test_realtime_paces_batches_by_the_clock():
    clock = ManualClock(T0)
    sim = Simulator(
        rate=200.0, realtime=True, max_delay=0.5, limit=2_000, clock=clock, faults=Faults.none(), incidents=[]
    )
    seen = []
    for batch in sim.batches():
        now = clock.monotonic()
        stamps = [event_ms(json.loads(line)["ts"]) for line in split(batch.data)]
        seen.append((now, batch.rows, min(stamps), max(stamps)))
    assert len(seen) == 20
    for i, (now, rows, low, high) in enumerate(seen):
        assert now == pytest.approx(0.5 * (i + 1))
        assert rows == pytest.approx(100, abs=1)
        assert T0_MS + (now - 0.5) * 1000 - 5 <= low <= high <= T0_MS + now * 1000


def test_realtime_emits_early_when_max_rows_is_reached_and_honours_speed():
    clock = ManualClock(T0)
    sim = Simulator(rate=10_000.0, speed=2.0, realtime=True, max_rows=1_000, limit=20_000, clock=clock)
    times, rows = [], []
    for batch in sim.batches():
        times.append(clock.monotonic())
        rows.append(batch.rows)
    assert max(rows) <= 1_000 and sum(rows) > 19_900
    assert times[-1] == pytest.approx(1.0, abs=0.06)  # 20,000 events at 2 x 10,000/s
    assert max(np.diff(times)) < 0.06


def test_simulator_validates_its_arguments():
    with pytest.raises(ConfigError):
        Simulator("nope")
    with pytest.raises(ConfigError):
        Simulator(rate=0)
    with pytest.raises(ConfigError):
        Simulator(start=datetime(2024, 1, 1))  # noqa: DTZ001 - naive on purpose


# --- write_simulation -------------------------------------------------------------------


def test_write_simulation_writes_data_labels_and_faults(tmp_path):
    path = tmp_path / "metrics.jsonl"
    counts = write_simulation(path, events=140_000, seed=4, hosts=50)
    data = path.read_bytes()
    assert data == Simulator(seed=4, hosts=50).generate(140_000).data
    assert counts["lines"] == data.count(b"\n")
    labels = json.loads((tmp_path / "metrics.labels.json").read_text())
    assert len(labels) == counts["incidents"] == 5
    assert all(datetime.fromisoformat(label["start"]).tzinfo is not None for label in labels)
    faults = pl.read_parquet(tmp_path / "metrics.faults.parquet")
    assert faults.height == counts["duplicates"] + counts["late"] + counts["out_of_order"] + sum(
        counts["malformed"].values()
    )
    assert counts["lines"] == counts["events"] + counts["duplicates"]
    lines = split(data)
    for row in faults.filter(pl.col("fault") == "duplicate").head(20).iter_rows(named=True):
        assert json.loads(lines[row["line"]])["event_id"] == row["event_id"]
    for row in faults.filter(pl.col("fault") == "huge_string").iter_rows(named=True):
        assert len(lines[row["line"]]) > 100_000


def test_source_verbs_and_start_from_the_clock():
    clock = ManualClock(T0 + timedelta(days=3))
    sim = Simulator(get_schema("server_metrics"), start=None, clock=clock, realtime=True, limit=100, rate=100.0)
    sim.stop()
    assert sim.stopped
    sim.start()
    assert not sim.stopped
    first = next(iter(sim.batches()))
    stamp = event_ms(json.loads(split(first.data)[0])["ts"])
    assert abs(stamp - (T0_MS + 3 * 86_400_000)) < 1_000
    assert sim.snapshot() == {"offset": first.offset}
    assert "start=None" in repr(sim)


def test_a_stopped_simulator_holds_no_chunk():
    """A notebook keeps each run's simulator (its output history): stopped, it keeps no chunk of lines."""
    import workbench as wb

    sim = Simulator(hosts=5, rate=1_000.0, seed=0, realtime=True, max_delay=0.05)
    pipe = wb.Pipeline(sim, name="held")
    pipe.standard("server_metrics", wb.Tumbling("1s"))
    pipe.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while sim.offset == 0 and datetime.now(UTC) < deadline:
            time.sleep(0.05)
        assert sim.offset > 0 and sim._cached is not None  # running: one chunk
    finally:
        pipe.stop()
    assert sim._cached is None
