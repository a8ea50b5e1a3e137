"""File source: formats, offsets and seek, tailing a growing file, and replay at a speed factor."""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest

from workbench import FileSource, ManualClock, Pipeline, Tumbling
from workbench.errors import ConfigError, SourceError
from workbench.operators import aggregations as agg

from conftest import line, metric


def test_jsonl_batches_respect_max_rows_and_offsets_resume(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"".join(line(metric(i)) for i in range(25)))
    src = FileSource(path, max_rows=10)
    batches = list(src.batches())
    assert [b.rows for b in batches] == [10, 10, 5]
    src.seek(batches[0].offset)
    assert b"".join(b.data for b in src.batches()) == path.read_bytes()[batches[0].offset :]


def test_last_line_without_newline_is_read(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(line(metric(1)) + line(metric(2)).rstrip(b"\n"))
    assert sum(b.rows for b in FileSource(path).batches()) == 2


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tabular_formats_decode_strictly(tmp_path, fmt):
    df = pl.DataFrame([metric(i) for i in range(30)])
    path = tmp_path / f"e.{fmt}"
    if fmt == "csv":
        df = df.with_columns(
            pl.when(pl.col("event_id") == "e3")
            .then(pl.lit("oops"))
            .otherwise(pl.col("cpu").cast(pl.String))
            .alias("cpu")
        )
        df.write_csv(path)
    else:
        df.write_parquet(path)
    pipe = Pipeline(FileSource(path, max_rows=7), name=f"tab-{fmt}")
    out = pipe.collect(pipe.standard("server_metrics", Tumbling("1m"), aggs=[agg.count()]))
    dead = pipe.collect("dead_letter")
    pipe.run()
    pipe.check_invariant()
    expected_dead = 1 if fmt == "csv" else 0
    assert sum(d.height for d in dead) == expected_dead
    assert pl.concat(out)["count"].sum() == 30 - expected_dead


def test_follow_reads_appended_lines_and_waits_for_whole_lines(tmp_path):
    path = tmp_path / "grow.jsonl"
    path.write_bytes(line(metric(0)))
    src = FileSource(path, follow=True, max_delay=0.05, poll=0.01)
    got: list[bytes] = []

    def consume():
        for b in src.batches():
            got.append(b.data)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    time.sleep(0.3)
    with open(path, "ab") as f:
        partial = line(metric(1))
        f.write(partial[:20])  # a partial line must wait for its newline
        f.flush()
        time.sleep(0.3)
        assert b"".join(got) == line(metric(0))
        f.write(partial[20:] + line(metric(2)))
    deadline = time.time() + 5
    while b"".join(got) != path.read_bytes() and time.time() < deadline:
        time.sleep(0.02)
    src.stop()
    t.join(2)
    assert b"".join(got) == path.read_bytes()


def test_speed_factor_paces_by_event_time_on_the_injected_clock(tmp_path):
    path = tmp_path / "e.jsonl"
    # 60 events one second apart: 59 s of event time
    path.write_bytes(b"".join(line(metric(i)) for i in range(60)))
    clock = ManualClock()
    src = FileSource(path, max_rows=10, speed=10.0, clock=clock)
    stamps = [clock.monotonic() for _ in src.batches()]
    assert stamps[-1] == pytest.approx(59 / 10, abs=0.01)  # 10x real time
    assert stamps == sorted(stamps)


def test_clear_errors_for_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="unknown format"):
        FileSource(tmp_path / "e.txt")
    with pytest.raises(ConfigError, match="speed must be > 0"):
        FileSource(tmp_path / "e.jsonl", speed=0)
    with pytest.raises(SourceError, match="does not exist"):
        list(FileSource(tmp_path / "missing.jsonl").batches())
    with pytest.raises(SourceError, match="offset must be an int"):
        FileSource(tmp_path / "e.jsonl").seek(-1)
