"""Issue 16, items 4 and 7: rules in ``run``, ``replay`` and ``serve``; ``alerts check`` against a schema;
fired alerts in the backtest; ``detect`` on any file format, per column and per entity."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from workbench.config import Settings

from conftest import cli, line, metric

RULES = "evaluation_interval: 10s\nrules:\n  - {name: hot, kind: threshold, metric: cpu_mean, op: '>', value: 90}\n"


@pytest.fixture
def events(tmp_path: Path) -> Path:
    """Three hosts for 5 minutes, one event a second each; h2's cpu is 95 from 100 s to 200 s."""
    recs = []
    for i in range(300):
        for n, host in enumerate(("h1", "h2", "h3")):
            cpu = 95.0 if host == "h2" and 100 <= i < 200 else 20.0 + i % 10
            recs.append(metric(i, host=host, event_id=f"e{i}-{n}", cpu=cpu))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line(r) for r in recs))
    return path


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def _alerts(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(folder.glob("**/*.parquet")))


def test_run_with_rules_on_a_file_source_writes_alerts_to_the_lake(events, rules, tmp_path):
    out = tmp_path / "out"
    run = cli("run", "--source", f"file://{events}", "--out", out, "--rules", rules)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["alerts"] == 2
    alerts = _alerts(out / "lake" / "alerts")
    assert alerts.select("rule", "entity", "to_state").rows() == [("hot", "h2", "firing"), ("hot", "h2", "resolved")]


def test_replay_with_rules_and_a_bad_rules_file_is_one_line(events, rules, tmp_path):
    run = cli("replay", events, "--out", tmp_path / "r", "--rules", rules)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["alerts"] == 2
    assert set(_alerts(tmp_path / "r" / "alerts")["entity"]) == {"h2"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: hot, kind: threshold, metric: cpu_mean, value: high}\n")
    run = cli("run", "--source", f"file://{events}", "--out", tmp_path / "b", "--rules", bad)
    assert run.returncode == 2
    assert run.stderr.strip() == f"workbench: error: {bad}: rule 'hot': field 'value' must be a number, not 'high'"


def test_adding_rules_to_an_out_checkpointed_without_them_says_to_use_fresh(events, rules, tmp_path):
    for command, first in (("replay", [events]), ("run", ["--source", f"file://{events}"])):
        out = tmp_path / command
        assert cli(command, *first, "--out", out).returncode == 0
        run = cli(command, *first, "--out", out, "--rules", rules)
        assert run.returncode == 2, command
        assert run.stderr.startswith(f"workbench: error: checkpoint {out / 'checkpoint'}")
        assert "this run adds alerts" in run.stderr and "start over with --fresh" in run.stderr
        assert run.stderr.count("\n") == 1
        run = cli(command, *first, "--out", out, "--rules", rules, "--fresh")
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["alerts"] == 2, command


def test_rules_on_the_command_line_replace_a_projects(events, rules, tmp_path):
    project = tmp_path / "p.yaml"
    project.write_text(
        f"source: {events}\n"
        "alerts:\n  rules:\n    - {name: never, kind: threshold, metric: cpu_mean, op: '>', value: 1000}\n"
        "outputs: {out: o}\n"
    )
    run = cli("run", "--project", project, "--rules", rules)
    assert run.returncode == 0, run.stderr
    assert set(_alerts(tmp_path / "o" / "alerts")["rule"]) == {"hot"}


def test_the_rules_setting_reaches_the_live_pipeline(rules, tmp_path):
    from workbench.apps import live

    settings = Settings.from_env(
        {
            "WORKBENCH_RULES": str(rules),
            "WORKBENCH_HOSTS": "3",
            "WORKBENCH_RATE": "30",
            "WORKBENCH_CHECKPOINTS": str(tmp_path / "checkpoints"),
            "WORKBENCH_LAKE": str(tmp_path / "lake"),
        }
    )
    assert settings.rules == rules
    built = live.live_pipeline(settings)
    try:
        node = built.pipeline.outputs["alerts"]
        assert [r.name for r in node.manager.rules] == ["hot"]
    finally:
        built.pipeline.stop()
        built.pipeline.close()
        import panel as pn

        pn.state.cache.pop("workbench.live", None)


def test_serve_passes_the_rules_file_to_the_server(rules, tmp_path, monkeypatch):
    from workbench.apps import serve

    seen = {}
    monkeypatch.setattr(serve, "run_server", lambda cmd, env: seen.update(env) or 0)
    assert serve.serve(rules=str(rules)) == 0
    assert seen["WORKBENCH_RULES"] == str(rules.resolve())
    # a project's inline rules go through a file that lives as long as the server
    assert serve.serve(rules={"rules": [{"name": "x", "kind": "absence", "after": "1m"}]}) == 0
    assert not Path(seen["WORKBENCH_RULES"]).exists()


def test_alerts_check_refuses_a_misspelt_metric_listing_the_known_ones(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - {name: hot, kind: threshold, metric: cpu_avg, value: 90}\n")
    run = cli("alerts", "check", rules)
    assert run.returncode == 2
    assert run.stderr.startswith(f"workbench: error: {rules}: rule 'hot': metric 'cpu_avg' is not a window column;")
    assert "known metrics: count, cpu_mean, cpu_max, mem_mean" in run.stderr and len(run.stderr.splitlines()) == 1

    rules.write_text(
        "rules:\n  - {name: hot, kind: threshold, metric: cpu_mean, value: 90, matchers: ['host=\"web-1\"']}\n"
        "  - {name: silent, kind: absence, after: 5s}\n"
    )
    run = cli("alerts", "check", rules, "--window", "10s")
    assert run.returncode == 0, run.stderr
    assert "built-in default schema 'server_metrics'" in run.stdout and "no --schema or --project" in run.stdout
    assert "warning: rule 'silent': after 5s is not longer than the windows' period 10s" in run.stdout


def test_alerts_check_against_a_schema_file_and_a_project(tmp_path):
    schema = tmp_path / "s.yaml"
    schema.write_text("time: {field: at, format: iso}\nentity: server\nfields:\n  server: str\n  cpu: float\n")
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - {name: hot, kind: threshold, metric: cpu_mean, value: 90, by: server}\n")
    run = cli("alerts", "check", rules, "--schema", schema)
    assert run.returncode == 0, run.stderr
    assert "windows of schema 's': 4 metrics, labels server" in run.stdout
    # the project's aggregations decide: cpu_mean is not made when it asks for p99 only
    project = tmp_path / "p.yaml"
    project.write_text(f"source: x.jsonl\nschema: {schema}\naggregations: {{cpu: [p99]}}\n")
    run = cli("alerts", "check", rules, "--project", project)
    assert run.returncode == 2
    assert "metric 'cpu_mean' is not a window column; known metrics: count, cpu_p99" in run.stderr
    rules.write_text("rules:\n  - {name: hot, kind: threshold, metric: cpu_p99, value: 90, matchers: ['host=\"a\"']}\n")
    run = cli("alerts", "check", rules, "--project", project)
    assert run.returncode == 2 and "matcher label 'host' is not a window label; known labels: server" in run.stderr


def test_backtest_lists_the_alerts_it_fired(events, rules, tmp_path):
    out = tmp_path / "out"
    assert cli("replay", events, "--out", out).returncode == 0
    run = cli("alerts", "backtest", rules, "--lake", out)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "  fired: 1 (rule, labels, start, end, peak)" in lines
    fired = next(x for x in lines if x.startswith("  hot "))
    assert fired.split() == ["hot", "{host=h2,severity=warning}", "2024-01-01T00:01:50+00:00", *fired.split()[3:]]
    assert fired.split()[-1] == "95"
    report = json.loads(cli("alerts", "backtest", rules, "--lake", out, "--json").stdout)
    (alert,) = report["rules"]["fired"]
    assert alert["labels"] == {"alertname": "hot", "host": "h2", "severity": "warning"} and alert["peak"] == 95.0
    assert alert["start"] < alert["end"]


def _series(n: int = 240) -> pl.DataFrame:
    """Two hosts at very different levels, long format; host b spikes to 50 at step 180, two metrics."""
    rows = []
    for i in range(n):
        t = f"2024-03-01T12:{i // 60:02d}:{i % 60:02d}Z"
        rows.append({"ts": t, "host": "a", "cpu": 80.0 + i % 3, "mem": 40.0 + i % 2, "code": 200})
        rows.append({"ts": t, "host": "b", "cpu": 50.0 if i == 180 else 10.0 + i % 3, "mem": 40.0 + i % 2, "code": 200})
    return pl.DataFrame(rows)


@pytest.mark.parametrize("form", ["jsonl", "parquet"])
def test_detect_reads_jsonl_and_parquet_and_writes_by_extension(form, tmp_path):
    frame = _series().filter(pl.col("host") == "b").drop("host")
    src = tmp_path / f"in.{form}"
    frame.write_ndjson(src) if form == "jsonl" else frame.write_parquet(src)
    out = tmp_path / f"out.{form}"
    run = cli("detect", src, "--time-column", "ts", "--detector", "robust_z", "--columns", "cpu", "--out", out)
    assert run.returncode == 0, run.stderr
    assert "240 rows scored, 1 anomalies" in run.stdout
    scored = pl.read_ndjson(out) if form == "jsonl" else pl.read_parquet(out)
    assert scored.filter(pl.col("is_anomaly"))["ts"].to_list() == ["2024-03-01T12:03:00Z"]
    assert scored.columns == [*frame.columns, "anomaly_score", "is_anomaly"]
    assert "\r" not in run.stderr  # no progress bar when stderr is not a terminal


def test_detect_by_entity_gives_one_model_per_entity_and_metric(tmp_path):
    src = tmp_path / "long.jsonl"
    _series().write_ndjson(src)
    args = ["--time-column", "ts", "--detector", "robust_z", "--columns", "cpu,mem"]
    run = cli("detect", src, *args, "--by", "host", "--out", tmp_path / "o.csv")
    assert run.returncode == 0, run.stderr
    assert "480 rows scored (2 entities, one model per entity and column), 1 anomalies" in run.stdout
    scored = pl.read_csv(tmp_path / "o.csv")
    assert scored.filter(pl.col("is_anomaly")).select("ts", "host", "anomaly_metric").rows() == [
        ("2024-03-01T12:03:00Z", "b", "cpu")
    ]
    # one model over both hosts sees b's spike as ordinary (a's level is higher)
    run = cli("detect", src, *args, "--out", tmp_path / "one.csv")
    assert run.returncode == 0 and "0 anomalies" in run.stdout, run.stdout + run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--columns", "cpu,cpx"], "--columns 'cpx': no such column; numeric columns: cpu, mem, code"),
        (["--columns", "host"], "--columns 'host': not numeric; numeric columns: cpu, mem, code"),
        (["--by", "hots"], "no --by column 'hots'; columns: ts, host, cpu, mem, code"),
    ],
)
def test_detect_names_a_wrong_column(args, message, tmp_path):
    src = tmp_path / "long.jsonl"
    _series(10).write_ndjson(src)
    run = cli("detect", src, "--time-column", "ts", *args, "--out", tmp_path / "o.csv")
    assert run.returncode == 2 and message in run.stderr, run.stderr
    run = cli("detect", src, "--time-column", "ts", "--out", tmp_path / "o.xlsx")
    assert run.returncode == 2 and "unknown file type '.xlsx'; use .jsonl, .csv or .parquet" in run.stderr


def test_nab_reports_progress_per_file(tmp_path):
    from workbench.evaluate.run import run_nab

    (tmp_path / "data" / "realTest").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    ts = [f"2024-01-01 {h:02d}:{m:02d}:00" for h in range(5) for m in range(0, 60, 5)]
    windows = {}
    for k in range(2):
        lines = ["timestamp,value", *(f"{t},{10.0 + (i % 3)}" for i, t in enumerate(ts))]
        (tmp_path / "data" / "realTest" / f"s{k}.csv").write_text("\n".join(lines) + "\n")
        windows[f"realTest/s{k}.csv"] = [[ts[40] + ".000000", ts[50] + ".000000"]]
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    calls = []
    run_nab(tmp_path, detector="robust_z", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]


def test_a_projects_rules_file_goes_to_serve(rules, tmp_path):
    from workbench.project.cli import project_serve_options

    project = tmp_path / "p.yaml"
    project.write_text("source: mqtt://127.0.0.1:1883/metrics\nalerts: rules.yaml\n")
    assert project_serve_options(str(project))["rules"] == str(tmp_path / "rules.yaml")


def test_alerts_check_knows_a_files_undeclared_metrics_through_its_project(tmp_path):
    schema = tmp_path / "s.yaml"
    schema.write_text("time: {field: at, format: iso}\nentity: server\nextra: keep-numeric\nfields:\n  server: str\n")
    (tmp_path / "d.jsonl").write_text('{"at": "2024-01-01T00:00:00Z", "server": "a", "disk": 1.5}\n')
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - {name: d, kind: threshold, metric: disk_mean, value: 1}\n")
    run = cli("alerts", "check", rules, "--schema", schema)
    assert run.returncode == 2 and "keeps undeclared numeric fields found in the data" in run.stderr
    (tmp_path / "p.yaml").write_text("source: d.jsonl\nschema: s.yaml\n")
    run = cli("alerts", "check", rules, "--project", tmp_path / "p.yaml")
    assert run.returncode == 0, run.stderr
    assert f"project {tmp_path / 'p.yaml'} (schema 's')" in run.stdout
