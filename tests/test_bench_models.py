"""``workbench bench models`` on a small simulation: every incident class is detected."""

from __future__ import annotations

import json

import pytest

from workbench.bench.models import bench_models, format_table
from workbench.sources.simulator.incidents import KINDS

from conftest import cli


@pytest.mark.slow
def test_every_incident_class_of_every_schema_is_detected():
    report = bench_models(rate=300, hosts=8, cycles=1, seed=1)
    seen = {r["kind"] for r in report["classes"]}
    assert seen == set(KINDS)  # every class the simulator labels, over the three schemas
    missed = [r for r in report["classes"] if r["detected"] == 0]
    assert not missed, format_table(report)
    assert report["all_detected"]
    for r in report["classes"]:
        assert 0 < r["recall"] <= 1 and 0 < r["precision"] <= 1 and r["mean_ttd_s"] >= 0
    assert all(run["events_per_s"] > 0 and run["window_rows_scored"] > 0 for run in report["runs"])


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_the_report(tmp_path):
    out = tmp_path / "report.json"
    result = cli(
        "bench",
        "models",
        "--schemas",
        "server_metrics",
        "--rate",
        "100",
        "--hosts",
        "4",
        "--cycles",
        "1",
        "--param",
        "holdoff=10",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "| server_metrics | cpu_saturation | host | 1/1 |" in result.stdout
    assert json.loads(out.read_text())["params"] == {"holdoff": 10}


def test_cpu_per_value_times_the_default_detector_against_river_hst_in_one_run():
    from workbench.bench.models import cpu_per_value, format_cpu_table

    report = cpu_per_value(streams=(1, 3), warm=20, rows=5)
    cases = {(c["detector"], c["streams"]): c for c in report["cases"]}
    assert set(cases) == {(d, n) for d in ("context", "river_hst") for n in (1, 3)}
    assert all(c["us_per_value"] > 0 and c["values"] == 5 * c["streams"] for c in cases.values())
    assert cases[("river_hst", 3)]["ratio"] == 1.0
    assert cases[("context", 3)]["ratio"] == pytest.approx(
        cases[("context", 3)]["us_per_value"] / cases[("river_hst", 3)]["us_per_value"], rel=0.01
    )
    table = format_cpu_table(report)
    assert "| context | 3 | 15 |" in table and "fleet, context: 10,000 entities × 10 metrics" in table


def test_cpu_per_value_times_the_context_detectors_python_reference_beside_it():
    from workbench.bench.models import cpu_per_value
    from workbench.native import context as native_context

    report = cpu_per_value(detectors=("context", "context_python"), streams=(2,), warm=10, rows=3)
    assert [(c["detector"], c["values"]) for c in report["cases"]] == [("context", 6), ("context_python", 6)]
    assert all(c["us_per_value"] > 0 and c["ratio"] is None for c in report["cases"])
    assert native_context.status() != "python (native context kernel disabled in this block)"  # only while timed


def test_cli_cpu_only_prints_the_cpu_table(tmp_path):
    out = tmp_path / "cpu.json"
    result = cli(
        "bench", "models", "--cpu-only", "--cpu-streams", "2", "--cpu-warm", "5", "--cpu-rows", "3", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "| river_hst | 2 | 6 |" in result.stdout and "fleet, river_hst" in result.stdout
    assert {c["detector"] for c in json.loads(out.read_text())["cpu"]["cases"]} == {"context", "river_hst"}
