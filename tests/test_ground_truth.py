"""End to end on simulated data: the pipeline's accounting equals the simulator's ground truth."""

from __future__ import annotations

import json

import polars as pl
import pytest

from workbench.pipeline.replay import replay
from workbench.sources.simulator import write_simulation


@pytest.mark.parametrize("schema", ["server_metrics", "user_events", "network_flows"])
def test_every_injected_fault_is_accounted_for(tmp_path, schema):
    path = tmp_path / "events.jsonl"
    truth = write_simulation(path, events=60_000, seed=11, schema=schema)
    summary = replay(path, tmp_path / "out", schema=schema, max_rows=7_000)
    assert summary["ingested"] == truth["lines"]
    assert summary["dead_lettered"] == sum(truth["malformed"].values())
    assert summary["duplicates"] == truth["duplicates"]
    assert summary["late"] == truth["late"]
    assert summary["valid"] == truth["lines"] - sum(truth["malformed"].values()) - truth["duplicates"] - truth["late"]
    # every dead letter is one of the injected malformed lines, with a reason
    dead = pl.read_parquet(sorted((tmp_path / "out" / "dead_letter").glob("*.parquet")))
    faults = pl.read_parquet(tmp_path / "events.faults.parquet")
    malformed = faults.filter(~pl.col("fault").is_in(["duplicate", "late", "out_of_order"]))
    assert dead.height == malformed.height
    assert dead["reason"].str.len_chars().min() > 10
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["windows"] > 0
