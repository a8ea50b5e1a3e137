"""A project file: ``workbench init``, ``--project`` on replay/run/serve/export, ``wb.Project`` in a notebook."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import workbench as wb
from workbench.errors import ConfigError
from workbench.reports.offline import unpack_scripts

from conftest import cli

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def servers(tmp_path: Path) -> Path:
    lines = []
    for i in range(1200):
        rec = {
            "id": f"m{i}",
            "observed_at": (T0 + timedelta(seconds=i / 2)).isoformat().replace("+00:00", "Z"),
            "server": f"web-{i % 3}",
            "cpu": 5.0 + i % 90,
            "memUsedMb": 8000.0 + (i * 37) % 8000,
        }
        lines.append(json.dumps(rec))
    path = tmp_path / "data" / "servers.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path


def _windows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(out.rglob("windows/*.parquet"))).sort("window_start", "server")


def test_init_writes_a_project_that_replays_and_a_notebook_builds_the_same_pipeline(servers, tmp_path):
    project = tmp_path / "proj" / "workbench.yaml"
    run = cli("init", servers, "--out", project)
    assert run.returncode == 0, run.stderr
    text = project.read_text()
    assert "source: ../data/servers.jsonl" in text and "schema: servers.schema.yaml" in text
    assert "  cpu: [mean, max, p95]" in text and "  memUsedMb: [mean, max, p95]" in text
    assert (project.parent / "servers.schema.yaml").exists()
    assert cli("init", servers, "--out", project).returncode == 2  # never overwrites silently

    run = cli("replay", "--project", project)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["dead_lettered"] == 0 and summary["valid"] == 1200
    windows = _windows(project.parent / "out" / "servers")
    for column in ("count", "cpu_mean", "cpu_max", "cpu_p95", "memUsedMb_mean", "memUsedMb_max", "memUsedMb_p95"):
        assert column in windows.columns
    assert windows["count"].sum() == 1200

    p = wb.Project.load(project)
    pipe = p.pipeline(name="notebook", checkpoints=False)
    rows = pipe.collect("windows")
    pipe.run()
    pipe.close()
    assert pl.concat(rows).sort("window_start", "server").equals(windows)


def test_a_project_with_detectors_and_inline_alerts(servers, tmp_path):
    schema = tmp_path / "s.yaml"
    assert cli("schema", "infer", servers, "--out", schema).returncode == 0
    project = tmp_path / "p.yaml"
    project.write_text(
        f"source: {servers}\nschema: s.yaml\n"
        "windows: {kind: sliding, size: 1m, slide: 30s}\n"
        "aggregations: {cpu: [mean, p99], memUsedMb: max}\n"
        "detectors: {cpu_mean: robust_z}\n"
        "alerts:\n  rules:\n    - {name: hot, kind: threshold, metric: cpu_p99, op: '>', value: 90}\n"
        "outputs: {out: o}\n"
    )
    run = cli("replay", "--project", project)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["outputs"] == ["alerts", "scores", "windows"]
    windows = _windows(tmp_path / "o")
    assert {"cpu_mean", "cpu_p99", "memUsedMb_max"} <= set(windows.columns)
    assert "cpu_max" not in windows.columns
    assert (tmp_path / "o" / "scores").exists() and (tmp_path / "o" / "alerts").exists()
    # the same project file run by `run` (a file source ends by itself)
    assert cli("run", "--project", project).returncode == 0
    # serve needs a live source
    run = cli("serve", "--project", project)
    assert run.returncode == 2 and "serve needs a live source URL" in run.stderr


def test_a_resumed_project_with_another_window_is_refused(servers, tmp_path):
    project = tmp_path / "p.yaml"
    project.write_text(f"source: {servers}\nschema: server_metrics\noutputs: {{out: o, max_dead_share: 1}}\n")
    assert cli("replay", "--project", project).returncode == 0
    project.write_text(project.read_text() + "windows: {size: 5m}\n")
    run = cli("replay", "--project", project)
    assert run.returncode == 2 and "window: Tumbling(size='10s', offset=0) then" in run.stderr
    assert cli("replay", "--project", project, "--fresh").returncode == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("windows: {size: 1m}\n", "source: missing"),
        ("source: x.jsonl\nwindow: {size: 1m}\n", "window: unknown key; expected one of ['source'"),
        ("source: x.jsonl\nwindows: {kind: tumblin}\n", "windows.kind: expected one of ['tumbling', 'sliding', "),
        ("source: x.jsonl\nwindows: {size: -5s}\n", "windows.size: "),
        ("source: x.jsonl\nwindows: {kind: session, size: 1m}\n", "windows.size: does not apply to session windows"),
        ("source: x.jsonl\naggregations: {cpu: [mean, median]}\n", "aggregations.cpu: expected names from"),
        ("source: x.jsonl\ndetectors: {cpu_mean: magic}\n", "detectors.cpu_mean: expected one of ['context'"),
        ("source: x.jsonl\nalerts: {rules: [{name: a, kind: threshold}]}\n", "alerts: alert config: rule 'a'"),
        ("source: x.jsonl\noutputs: {max_dead_share: 2}\n", "outputs.max_dead_share: expected a number within"),
        ("source: x.jsonl\nwindows: {size: 1m\n", "not valid YAML: line 3, column 1"),
    ],
)
def test_a_bad_project_file_gets_one_message_naming_file_key_and_value(text, message, tmp_path):
    path = tmp_path / "workbench.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        wb.Project.load(path)
    assert str(info.value).startswith(f"project file {path}: ")
    assert message in str(info.value)
    run = cli("replay", "--project", path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


def test_unknown_metric_in_aggregations_lists_the_fields(servers, tmp_path):
    path = tmp_path / "workbench.yaml"
    path.write_text(f"source: {servers}\nschema: server_metrics\naggregations: {{memory: [max]}}\n")
    run = cli("replay", "--project", path)
    assert run.returncode == 2
    assert "aggregations.memory: not a field of schema 'server_metrics'; fields: event_id, ts, host" in run.stderr


def test_export_reads_a_projects_lake_with_its_schema(servers, tmp_path):
    project = tmp_path / "proj" / "workbench.yaml"
    assert cli("init", servers, "--out", project).returncode == 0
    assert cli("replay", "--project", project).returncode == 0
    page = tmp_path / "x.html"
    run = cli("export", "--project", project, "--view", "series", "-p", "metric", "cpu_max", "--out", page)
    assert run.returncode == 0, run.stderr
    assert "web-2" in unpack_scripts(page.read_text())  # in the compressed document


def test_an_anomaly_rule_in_a_project_fires_on_the_detectors_scores(tmp_path):
    lines = []
    for i in range(3600):  # two quiet servers; web-1 jumps to 99 % CPU for five minutes
        at = (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        for server in ("web-0", "web-1"):
            cpu = 99.0 if server == "web-1" and 3000 <= i < 3300 else 20.0 + (i * 7 % 5) * 0.5
            lines.append(json.dumps({"id": f"{server}-{i}", "observed_at": at, "server": server, "cpu": cpu}))
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "s.yaml").write_text(
        "time: {field: observed_at, format: iso}\nkey: id\nentity: server\nfields:\n  id: str\n  server: str\n"
        "  cpu: float\n"
    )
    project = tmp_path / "p.yaml"
    project.write_text(
        "source: d.jsonl\nschema: s.yaml\nwindows: {size: 1m}\ndetectors: {cpu_mean: robust_z}\n"
        "alerts:\n  rules:\n    - {name: odd, kind: anomaly}\n"
        "    - {name: hot, kind: threshold, metric: cpu_mean, op: '>', value: 90}\n"
        "outputs: {out: o}\n"
    )
    for command in ("replay", "run"):
        run = cli(command, "--project", project, *(["--fresh"] if command == "replay" else []))
        assert run.returncode == 0, run.stderr
        alerts = pl.read_parquet(sorted((tmp_path / "o").rglob("alerts/*.parquet")))
        fired = alerts.filter(pl.col("to_state") == "firing")
        assert set(fired["rule"]) == {"odd", "hot"}, command
        odd = fired.filter(pl.col("rule") == "odd")
        assert odd["entity"].unique().to_list() == ["web-1"]
        assert odd["at"].min() == T0 + timedelta(minutes=51)  # the first window of the jump
        for part in ("checkpoint", "windows", "scores", "alerts", "dead_letter", "late"):
            target = tmp_path / "o" / part
            if target.exists():
                import shutil

                shutil.rmtree(target)
