"""Oracle tests: streaming windows == an offline computation, for any batching.

The oracle here is written in plain Python (loops over events), independent of the
engine's polars code; the aggregations are computed with numpy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.operators import aggregations as agg
from workbench.operators.windows import Session, Sliding, Tumbling, Windower
from workbench.testing import offline_windows, server_metrics_frames

AGGS = [
    agg.count(),
    agg.sum("cpu"),
    agg.mean("cpu"),
    agg.min("cpu"),
    agg.max("cpu"),
    agg.std("cpu"),
    agg.distinct("status"),
    agg.quantile("latency_ms", 0.5, "p50"),
    agg.quantile("latency_ms", 0.95, "p95"),
    agg.share(pl.col("status") >= 500, "error_rate"),
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _stats(rows: list[dict]) -> dict:
    cpu = np.array([r["cpu"] for r in rows])
    lat = np.array([r["latency_ms"] for r in rows])
    return {
        "count": len(rows),
        "cpu_sum": float(cpu.sum()),
        "cpu_mean": float(cpu.mean()),
        "cpu_min": float(cpu.min()),
        "cpu_max": float(cpu.max()),
        "cpu_std": float(cpu.std(ddof=1)) if len(rows) > 1 else None,
        "status_distinct": len({r["status"] for r in rows}),
        "p50": float(np.quantile(lat, 0.5)),
        "p95": float(np.quantile(lat, 0.95)),
        "error_rate": float(np.mean([r["status"] >= 500 for r in rows])),
    }


def python_oracle(frame: pl.DataFrame, spec, lateness_ms: int) -> tuple[list[dict], int]:
    """Windows by plain Python loops, and the number of late events."""
    rows = frame.to_dicts()
    newest, on_time, late = None, [], 0
    for r in rows:  # arrival order
        t = int((r["ts"] - EPOCH) / timedelta(milliseconds=1))
        if newest is not None and t < newest - lateness_ms:
            late += 1
            continue
        newest = t if newest is None else max(newest, t)
        on_time.append((t, r))
    groups: dict[tuple, list[dict]] = defaultdict(list)
    if isinstance(spec, Session):
        by_host: dict[str, list] = defaultdict(list)
        for t, r in on_time:
            by_host[r["host"]].append((t, r))
        for host, items in by_host.items():
            items.sort(key=lambda x: x[0])
            start = prev = None
            for t, r in items:
                if prev is None or t - prev >= spec.gap_ms:
                    start = t
                groups[(host, start)].append({**r, "_t": t})
                prev = t
        out = []
        for (host, start), rs in groups.items():
            end = max(x["_t"] for x in rs) + spec.gap_ms
            out.append({"host": host, "window_start": start, "window_end": end, **_stats(rs)})
        return out, late
    size, step = spec.size_ms, spec.step_ms
    for t, r in on_time:
        k = math.floor(t / step)
        while k * step + size > t:
            if k * step <= t:
                groups[(r["host"], k * step)].append(r)
            k -= 1
    out = [{"host": h, "window_start": s, "window_end": s + size, **_stats(rs)} for (h, s), rs in groups.items()]
    return out, late


def stream(frame: pl.DataFrame, cuts: list[int], spec, lateness="4s") -> tuple[pl.DataFrame, int, Windower]:
    w = Windower(spec, by="host", aggs=AGGS, lateness=lateness)
    outs, late = [], 0
    bounds = [0, *cuts, frame.height]
    for a, b in zip(bounds, bounds[1:], strict=False):
        out, lt = w.process(frame.slice(a, max(b - a, 0)))
        outs.append(out)
        late += lt.height
    outs.append(w.flush())
    outs = [o for o in outs if o.height]
    result = pl.concat(outs) if outs else pl.DataFrame()
    return result, late, w


def assert_same(result: pl.DataFrame, expected: list[dict]) -> None:
    assert result.height == len(expected)
    if not expected:
        return
    got = {(r["host"], int((r["window_start"] - EPOCH).total_seconds() * 1000)): r for r in result.to_dicts()}
    assert len(got) == result.height, "a window was emitted twice"
    for e in expected:
        g = got[(e["host"], e["window_start"])]
        assert int((g["window_end"] - EPOCH).total_seconds() * 1000) == e["window_end"]
        for k, v in e.items():
            if k in ("host", "window_start", "window_end"):
                continue
            if v is None or g[k] is None:
                assert v == g[k], k
            else:
                assert g[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


SPECS = [Tumbling("10s"), Tumbling("7s"), Sliding("20s", "5s"), Sliding("9s", "3s"), Session("6s")]


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@settings(max_examples=60, deadline=None)
@given(data=server_metrics_frames(max_disorder_s=4.0))
def test_streaming_equals_oracle_within_lateness(spec, data):
    frame, cuts = data
    result, late, _ = stream(frame, cuts, spec, lateness="4s")
    expected, expected_late = python_oracle(frame, spec, 4000)
    assert late == expected_late == 0  # disorder is within the lateness
    assert_same(result, expected)


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@settings(max_examples=60, deadline=None)
@given(data=server_metrics_frames(max_disorder_s=30.0))
def test_late_events_counted_and_windows_exact(spec, data):
    frame, cuts = data
    result, late, w = stream(frame, cuts, spec, lateness="4s")
    expected, expected_late = python_oracle(frame, spec, 4000)
    assert late == expected_late
    assert w.counters["late"] == expected_late
    assert_same(result, expected)
    # rows in == rows windowed + late: nothing silently lost
    assert sum(r["count"] for r in expected) + late >= frame.height if not isinstance(spec, Sliding) else True
    if isinstance(spec, Tumbling | Session):
        assert result["count"].sum() + late == frame.height if result.height else late == frame.height


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@settings(max_examples=30, deadline=None)
@given(data=server_metrics_frames(max_disorder_s=10.0))
def test_offline_helper_agrees_with_oracle(spec, data):
    frame, _ = data
    expected, _ = python_oracle(frame, spec, 4000)
    assert_same(offline_windows(frame, spec, by="host", aggs=AGGS, lateness="4s"), expected)


@settings(max_examples=40, deadline=None)
@given(data=server_metrics_frames(max_disorder_s=10.0), at=st.integers(0, 8))
def test_snapshot_restore_mid_stream_gives_same_result(data, at):
    frame, cuts = data
    spec = Sliding("20s", "5s")
    full, _, _ = stream(frame, cuts, spec)
    bounds = [0, *cuts, frame.height]
    at = min(at, len(bounds) - 1)
    w = Windower(spec, by="host", aggs=AGGS, lateness="4s")
    outs = []
    for a, b in zip(bounds[:at], bounds[1 : at + 1], strict=False):
        outs.append(w.process(frame.slice(a, max(b - a, 0)))[0])
    snap = w.snapshot()
    w2 = Windower(spec, by="host", aggs=AGGS, lateness="4s")
    w2.restore(snap)
    for a, b in zip(bounds[at:], bounds[at + 1 :], strict=False):
        outs.append(w2.process(frame.slice(a, max(b - a, 0)))[0])
    outs.append(w2.flush())
    outs = [o for o in outs if o.height]
    resumed = pl.concat(outs) if outs else pl.DataFrame()
    assert resumed.equals(full) if full.height else resumed.height == 0


def test_watermark_emits_once_when_passed():
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    w = Windower(Tumbling("10s"), by="host", aggs=[agg.count()], lateness="5s")
    mk = lambda secs: pl.DataFrame({"host": ["a"] * len(secs), "ts": [t0 + timedelta(seconds=s) for s in secs]})  # noqa: E731
    out, _ = w.process(mk([1, 2, 14]))
    assert out.height == 0  # watermark 9s < end 10s
    out, _ = w.process(mk([15]))
    assert out["count"].to_list() == [2]  # watermark 10s passes the first window's end
    out, late = w.process(mk([3]))
    assert out.height == 0 and late.height == 1  # 3s < 15s - 5s: late, not re-emitted
    assert w.watermark == t0 + timedelta(seconds=10)


def test_buffer_bound_forces_oldest_windows_and_stays_bounded():
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    w = Windower(Tumbling("1h"), by="host", aggs=[agg.count()], lateness="1h", max_rows=1000)
    for i in range(20):
        ts = [t0 + timedelta(seconds=i * 100 + j / 10) for j in range(500)]
        w.process(pl.DataFrame({"host": ["a"] * 500, "ts": ts}))
        assert w.state_size <= 1000
    assert w.counters["forced"] > 0


def test_buffer_holds_only_the_columns_the_windows_read():
    """Keys, aggregated columns and event time are buffered; ids and labels are not."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "event_id": ["a", "b", "c"],
            "host": ["h", "h", "g"],
            "cpu": [1.0, 2.0, 3.0],
            "ts": [t0, t0 + timedelta(seconds=1), t0 + timedelta(seconds=2)],
        }
    )
    w = Windower(Tumbling("10s"), by="host", aggs=[agg.count(), agg.mean("cpu")], lateness="5s")
    _, late = w.process(frame)
    assert set(w.snapshot()["buffer"].columns) == {"host", "cpu", "__t"}
    out = w.flush()
    assert out.sort("host").select("host", "count", "cpu_mean").rows() == [("g", 1, 3.0), ("h", 2, 1.5)]


def test_aggregations_by_selector_keep_every_column():
    """``pl.first()`` reads a column by position: nothing is dropped from the buffer."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    frame = pl.DataFrame({"event_id": ["a", "b"], "host": ["h", "h"], "ts": [t0, t0]})
    w = Windower(Tumbling("10s"), by="host", aggs=[pl.first().first().alias("first_id")], lateness="5s")
    w.process(frame)
    assert w.flush()["first_id"].to_list() == ["a"]


def test_restore_from_a_snapshot_with_every_column():
    """A snapshot taken before the buffer was narrowed (all columns) restores and goes on."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    mk = lambda secs: pl.DataFrame(  # noqa: E731
        {"event_id": [str(s) for s in secs], "host": ["h"] * len(secs), "ts": [t0 + timedelta(seconds=s) for s in secs]}
    )
    w = Windower(Tumbling("10s"), by="host", aggs=[agg.count()], lateness="5s")
    w.process(mk([1, 2]))
    snap = w.snapshot()
    wide = mk([1, 2]).with_columns(__t=pl.col("ts").dt.epoch("ms"))
    w2 = Windower(Tumbling("10s"), by="host", aggs=[agg.count()], lateness="5s")
    w2.restore({**snap, "buffer": wide})
    out, _ = w2.process(mk([3, 16]))
    assert out["count"].to_list() == [3]
