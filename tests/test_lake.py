"""The Parquet lake: date partitions, atomic per-epoch files, SQL, and no overwrite across runs."""

from __future__ import annotations

import polars as pl

from workbench import FileSource, Lake, Pipeline, Tumbling

from conftest import line, metric


def _run(path, lake):
    pipe = Pipeline(FileSource(path, max_rows=50), name="lake-test")
    pipe.standard("server_metrics", Tumbling("10s"))
    pipe.to_lake(lake)
    pipe.run()
    return pipe


def test_pipeline_without_checkpoints_writes_the_lake_and_runs_append(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"".join(line(metric(i, seconds=i * 3)) for i in range(200)) + b"{broken\n")
    lake = Lake(tmp_path / "lake")
    _run(path, lake)
    first = lake.read("windows")
    assert first["count"].sum() == 200
    assert all(p.parent.name.startswith("date=") for p in (tmp_path / "lake" / "windows").rglob("*.parquet"))
    _run(path, lake)  # a second run adds files with newer epochs instead of overwriting
    assert lake.read("windows")["count"].sum() == 400
    assert lake.query("select count(*) as n from dead_letter").item() == 2
    assert set(lake.outputs()) >= {"windows", "dead_letter"}
    assert not list((tmp_path / "lake").rglob(".*tmp*"))  # no temp files left behind


def test_rollback_removes_only_newer_epochs(tmp_path):
    lake = Lake(tmp_path, partition=False)
    for epoch in (1, 2, 3):
        lake.write("w", pl.DataFrame({"x": [epoch]}), epoch=epoch)
    assert lake.rollback("w", 1) == 2
    assert lake.read("w")["x"].to_list() == [1]
    assert lake.last_epoch("w") == 1
